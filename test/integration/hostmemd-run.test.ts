// hostmemd-run against a stand-in daemon (test/helpers/fake-export-server.ts): the exec'd program
// keeps the launcher's pid and has exactly fds 0-2, the memdev fds at the numbers asked for (with
// collisions between received fds and targets), and what its parent passed on; every refusal
// comes before exec with a clear text and a nonzero status (the argument checks themselves:
// test/unit/launcher/args.test.ts); fetchMemdevFds as a library; and against the real daemon,
// the program reads the daemon's bytes and the daemon's refusals reach the user.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { ROOT, InProcess, killAndWait, startInProcess, tmpDir } from '../helpers/daemon';
import { FakeExportServer } from '../helpers/fake-export-server';
import { fdCount } from '../helpers/proc';
import { fetchMemdevFds, closeExports, memoryFd } from '../../src/client/memdev-export';
import * as native from '../../src/native';
import { ClientError } from '../../src/client/qmp-fd-client';

const RUN = path.join(ROOT, 'bin', 'hostmemd-run');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function launch(args: string[], extraStdio: 'pipe'[] = []): ChildProcess {
  return spawn(process.execPath, [RUN, ...args], { stdio: ['ignore', 'pipe', 'pipe', ...extraStdio] });
}

async function run(args: string[]): Promise<Ran> {
  const p = launch(args);
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  return { code, stdout, stderr };
}

/** Waits until the launcher has exec'd `sleep` and sleep sits in clock_nanosleep (before that
 *  it may hold a locale file open for a moment), then returns its fds as number → readlink
 *  target, their close-on-exec flags, and its HOSTMEMD_FDS. */
/** x86-64 clock_nanosleep, where an idle sleep(1) waits (/proc/PID/syscall's first field). */
const SYS_CLOCK_NANOSLEEP = '230';

function sleeping(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ')[0] === SYS_CLOCK_NANOSLEEP;
  } catch {
    return false;
  }
}

async function afterExec(p: ChildProcess, comm: string): Promise<{ fds: Map<number, string>; cloexec: Map<number, boolean>; env: string | undefined }> {
  const deadline = Date.now() + 15000;
  for (;;) {
    let now = '';
    try {
      now = fs.readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim();
    } catch {
      /* not yet, or gone */
    }
    if (now === comm && sleeping(p.pid!)) break;
    if (p.exitCode !== null || Date.now() > deadline) throw new Error(`the launcher did not exec ${comm} (comm ${now}, exit ${p.exitCode})`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const fds = new Map<number, string>();
  const cloexec = new Map<number, boolean>();
  for (const f of fs.readdirSync(`/proc/${p.pid}/fd`)) {
    fds.set(Number(f), fs.readlinkSync(`/proc/${p.pid}/fd/${f}`));
    const flags = /flags:\s*([0-7]+)/.exec(fs.readFileSync(`/proc/${p.pid}/fdinfo/${f}`, 'utf8'))![1];
    cloexec.set(Number(f), (parseInt(flags, 8) & 0o2000000) !== 0);
  }
  const env = fs
    .readFileSync(`/proc/${p.pid}/environ`, 'utf8')
    .split('\0')
    .find((e) => e.startsWith('HOSTMEMD_FDS='));
  return { fds, cloexec, env: env?.slice('HOSTMEMD_FDS='.length) };
}

/** This process's fd count once it equals `n` (the stand-in server closes its end of a
 *  connection a moment after the client did), or whatever it is after 2 s. */
async function fdCountSettles(n: number): Promise<number> {
  const deadline = Date.now() + 2000;
  while (fdCount() !== n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return fdCount();
}

/** The fd numbers the exec'd program must have: stdio and `asked`, nothing else (not even
 *  what the launcher's parent passed on: see native/exec.ts). */
/** This process's fd count once it has not moved for 150 ms (a connection just closed by a
 *  client is closed by the daemon's side a moment later). */
async function steadyFdCount(): Promise<number> {
  let last = fdCount();
  for (let same = 0; same < 3; ) {
    await new Promise((r) => setTimeout(r, 50));
    const now = fdCount();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

function expectedFds(asked: number[]): number[] {
  return [0, 1, 2, ...asked].sort((a, b) => a - b);
}

describe('hostmemd-run', () => {
  let server: FakeExportServer;
  beforeAll(() => {
    server = new FakeExportServer();
    server.addMemfd('ram0');
    server.addMemfd('ram1');
    server.addMemfd('gmem0', 1 << 20, ['kvm-vm']);
    server.memdevs.set('private0', { error: { class: 'GenericError', desc: "Memory backend 'private0' has share=off: private memory cannot be exported" } });
  });
  afterAll(async () => {
    await server.close();
  });

  test('--help', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: hostmemd-run --qmp unix:PATH --memdev ID[:FD]');
  });

  test('the exec\'d program keeps the pid and has exactly stdio and the fds asked for, where asked', async () => {
    // ram0 to 4 and ram1 to 3: the received fds land on each other's targets first.
    const p = launch(['--qmp', `unix:${server.sock}`, '--memdev', 'ram0:4', '--memdev', 'ram1:3', '--', 'sleep', '30']);
    try {
      const { fds, cloexec, env } = await afterExec(p, 'sleep');
      expect([...fds.keys()].sort((a, b) => a - b)).toEqual(expectedFds([3, 4]));
      expect(fds.get(4)).toBe('/memfd:fake-ram0 (deleted)');
      expect(fds.get(3)).toBe('/memfd:fake-ram1 (deleted)');
      expect([...cloexec.values()].every((c) => !c)).toBe(true);
      // Node ignores SIGPIPE and SIGXFSZ; the program starts with no signal ignored or blocked.
      expect(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8')).toMatch(/^SigBlk:\s*0+$[\s\S]*^SigIgn:\s*0+$/m);
      expect(env).toBe('ram0:memory=4,ram1:memory=3');
    } finally {
      await killAndWait(p);
    }
  });

  test('default numbers: the next free from 3 past explicit ones, extra fds after; fds of the parent stay behind', async () => {
    // fd 3 comes from the launcher's parent: the program does not get it.
    const p = launch(['--qmp', `unix:${server.sock}`, '--memdev', 'gmem0', '--memdev', 'ram0:4', '--memdev', 'ram1', '--', 'sleep', '30'], ['pipe']);
    try {
      const { fds, env } = await afterExec(p, 'sleep');
      expect([...fds.keys()].sort((a, b) => a - b)).toEqual(expectedFds([3, 4, 5, 6]));
      expect(fds.get(3)).toBe('/memfd:fake-gmem0 (deleted)');
      expect(fds.get(4)).toBe('/memfd:fake-ram0 (deleted)');
      expect(fds.get(5)).toBe('/memfd:fake-ram1 (deleted)');
      expect(fds.get(6)).toBe('/memfd:fake-gmem0-extra (deleted)');
      expect(env).toBe('gmem0:memory=3,ram0:memory=4,ram1:memory=5,gmem0:kvm-vm=6');
    } finally {
      await killAndWait(p);
    }
  });

  test('a high fd number and PATH lookup of the command', async () => {
    const p = launch(['--qmp', `unix:${server.sock}`, '--memdev=ram0:200', '--', 'sleep', '30']);
    try {
      const { fds } = await afterExec(p, 'sleep');
      expect([...fds.keys()].sort((a, b) => a - b)).toEqual(expectedFds([200]));
    } finally {
      await killAndWait(p);
    }
  });

  test.each([
    [['--qmp', 'tcp:localhost:4444', '--memdev', 'ram0', '--', 'true'], "--qmp 'tcp:localhost:4444': only a unix:PATH socket can carry fds"],
    [['--qmp', 'unix:/x', '--memdev', 'ram0:1', '--', 'true'], "--memdev 'ram0:1': fd 1 is standard output; memory fds go at 3 or above"],
    [['--qmp', 'unix:/x', '--memdev', 'a:99999999', '--', 'true'], "--memdev 'a:99999999': fd 99999999 is not below the open-files limit"],
  ])('refuses %j', async (args, text) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`hostmemd-run: ${text}`);
  });

  test('an unreachable daemon, an unknown backend, a refused export, a missing command: status and text, no exec', async () => {
    const dir = tmpDir();
    try {
      const gone = await run(['--qmp', `unix:${path.join(dir, 'nothing.sock')}`, '--memdev', 'ram0:3', '--', 'true']);
      expect(gone).toMatchObject({ code: 1, stderr: `hostmemd-run: cannot connect to ${path.join(dir, 'nothing.sock')}: No such file or directory\n` });
      const notSock = path.join(dir, 'file');
      fs.writeFileSync(notSock, '');
      const refused = await run(['--qmp', `unix:${notSock}`, '--memdev', 'ram0:3', '--', 'true']);
      expect(refused).toMatchObject({ code: 1, stderr: `hostmemd-run: cannot connect to ${notSock}: Connection refused\n` });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const unknown = await run(['--qmp', `unix:${server.sock}`, '--memdev', 'ram0:3', '--memdev', 'nope:4', '--', 'true']);
    expect(unknown).toMatchObject({ code: 1, stderr: "hostmemd-run: memdev-export nope: Memory backend 'nope' not found\n" });
    const priv = await run(['--qmp', `unix:${server.sock}`, '--memdev', 'private0', '--', 'true']);
    expect(priv).toMatchObject({ code: 1, stderr: "hostmemd-run: memdev-export private0: Memory backend 'private0' has share=off: private memory cannot be exported\n" });
    const missing = await run(['--qmp', `unix:${server.sock}`, '--memdev', 'ram0:3', '--', 'no-such-command-hostmemd']);
    expect(missing).toMatchObject({ code: 127, stderr: 'hostmemd-run: no-such-command-hostmemd: command not found\n' });
    const notExec = await run(['--qmp', `unix:${server.sock}`, '--memdev', 'ram0:3', '--', '/etc/hostname']);
    expect(notExec.code).toBe(126);
  });

  test('a target at the very top of the open-files limit: refused before anything is placed', async () => {
    const top = native.openFilesLimit() - 1;
    const r = await run(['--qmp', `unix:${server.sock}`, '--memdev', `ram0:${top}`, '--', 'true']);
    expect(r).toMatchObject({ code: 2, stderr: `hostmemd-run: fd ${top} leaves too little room below the open-files limit (${top + 1}) to place 1 fds\n` });
  });

  test('exit status of the exec\'d program is its own', async () => {
    const r = await run(['--qmp', `unix:${server.sock}`, '--memdev', 'ram0:3', '--', 'sh', '-c', 'test -e /proc/self/fd/3 && exit 7']);
    expect(r).toMatchObject({ code: 7, stderr: '' });
  });

  test('a daemon that does not answer: the wait is bounded (--timeout)', async () => {
    const silent = new FakeExportServer({ silent: true });
    try {
      const t0 = Date.now();
      const r = await run(['--qmp', `unix:${silent.sock}`, '--memdev', 'ram0:3', '--timeout', '0.5', '--', 'true']);
      expect(r).toMatchObject({ code: 1, stderr: `hostmemd-run: no answer from ${silent.sock} within 0.5 s\n` });
      expect(Date.now() - t0).toBeLessThan(10000);
    } finally {
      await silent.close();
    }
  });

  test('fetchMemdevFds as a library: fds in the reply\'s order; all or nothing, no fd leaked', async () => {
    const before = fdCount();
    const got = await fetchMemdevFds(server.sock, ['gmem0', 'ram1']);
    expect(got.map((m) => [m.id, m.size, m.fds.map((f) => f.name)])).toEqual([
      ['gmem0', 1048576n, ['memory', 'kvm-vm']],
      ['ram1', 1048576n, ['memory']],
    ]);
    expect(fs.readlinkSync(`/proc/self/fd/${got[1].fds[0].fd.fd}`)).toBe('/memfd:fake-ram1 (deleted)');
    closeExports(got);
    expect(await fdCountSettles(before)).toBe(before);
    const e = await fetchMemdevFds(server.sock, ['ram0', 'gmem0', 'nope']).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ClientError);
    expect((e as ClientError).qmp).toEqual({ class: 'GenericError', desc: "Memory backend 'nope' not found" });
    expect(await fdCountSettles(before)).toBe(before);
  });

  test('a reply whose fd list does not match the fds that came is refused, its fds closed', async () => {
    server.memdevs.set('liar', { body: { id: 'liar', type: 'memory-backend-memfd', size: 4096, offset: 0, 'page-size': 4096, share: true, readonly: false, fds: ['memory', 'kvm-vm'] }, fds: [server.addMemfd('liar-real')] });
    const before = fdCount();
    const e = await fetchMemdevFds(server.sock, ['liar']).catch((x: unknown) => x);
    expect((e as Error).message).toBe('memdev-export liar: unexpected reply (it names 2 fds, 1 arrived)');
    expect(await fdCountSettles(before)).toBe(before);
  });
});

describe('hostmemd-run with the real daemon', () => {
  let d: InProcess;
  beforeAll(async () => {
    d = await startInProcess(['--object', 'memory-backend-memfd,id=ram0,size=1M', '--object', 'memory-backend-ram,id=priv0,size=1M', '--object', 'memory-backend-memfd,id=ram1,size=2M']);
  });
  afterAll(async () => {
    await d.stop();
  });

  test('the exec\'d program reads the bytes hostmemd holds, at the fds asked for; the daemon keeps no fd per run', async () => {
    const mark = Buffer.from('hostmemd-run-e2e');
    const [ram0] = await fetchMemdevFds(d.sock, ['ram0']);
    const m = native.mmap(ram0.size, native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, memoryFd(ram0), 0n);
    m.write(4096, mark);
    m.unmap();
    closeExports([ram0]);
    const before = await steadyFdCount();
    for (let i = 0; i < 3; i++) {
      const r = await run(['--qmp', `unix:${d.sock}`, '--memdev', 'ram1:3', '--memdev', 'ram0:7', '--', 'sh', '-c', 'stat -L -c %s /proc/self/fd/3; tail -c +4097 /proc/self/fd/7 | head -c 16']);
      expect(r).toEqual({ code: 0, stdout: `2097152\n${mark.toString()}`, stderr: '' });
    }
    expect(await fdCountSettles(before)).toBe(before);
  });

  test('the daemon\'s refusals reach the user as its own texts, before exec', async () => {
    const unknown = await run(['--qmp', `unix:${d.sock}`, '--memdev', 'ram0:3', '--memdev', 'nope', '--', 'true']);
    expect(unknown).toEqual({ code: 1, stdout: '', stderr: "hostmemd-run: memdev-export nope: object 'nope' not found\n" });
    const priv = await run(['--qmp', `unix:${d.sock}`, '--memdev', 'priv0', '--', 'true']);
    expect(priv.code).toBe(1);
    expect(priv.stderr).toMatch(/^hostmemd-run: memdev-export priv0: .*share=off.*\n$/);
  });
});

describe('native execWithFds (the launcher\'s last step)', () => {
  test('fds that sit on each other\'s targets are swapped, one already on its target loses close-on-exec, nothing else passes', async () => {
    // In a child node (execWithFds replaces the process): three memfds, close-on-exec, at the
    // numbers the kernel gave (A < B < C); A goes to B, B to A, C stays at C.
    const script = `
      const n = require(${JSON.stringify(path.join(ROOT, 'dist', 'native'))});
      const [a, b, c] = ['fa', 'fb', 'fc'].map((x) => n.memfdCreate(x, n.MFD_CLOEXEC));
      const f = n.execWithFds('/bin/sh', ['sh', '-c', 'for f in ' + [a.fd, b.fd, c.fd].join(' ') + '; do echo "$f $(readlink /proc/$$/fd/$f) $(grep flags /proc/$$/fdinfo/$f | cut -f2)"; done; ls /proc/$$/fd | sort -n | tr "\\\\n" " "'], [],
        [{ fd: a, target: b.fd }, { fd: b, target: a.fd }, { fd: c, target: c.fd }]);
      process.stderr.write('exec failed: ' + f.error.message);
    `;
    const p = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => p.on('exit', (x) => r(x)));
    expect({ code, err }).toEqual({ code: 0, err: '' });
    const lines = out.trim().split('\n');
    const [a, b, c] = lines.slice(0, 3).map((l) => l.split(' '));
    expect(a[1]).toBe('/memfd:fb'); // fd number A now holds B's file
    expect(b[1]).toBe('/memfd:fa');
    expect(c[1]).toBe('/memfd:fc');
    for (const x of [a, b, c]) expect(parseInt(x[3], 8) & 0o2000000).toBe(0);
    expect(lines[3].trim().split(' ').map(Number)).toEqual(expectedFds([Number(a[0]), Number(b[0]), Number(c[0])]));
  });
});
