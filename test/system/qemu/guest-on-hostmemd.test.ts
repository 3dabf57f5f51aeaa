// A real QEMU 7.2 guest (TCG, -M pc, SeaBIOS, no disk) runs with its RAM from a hostmemd memfd
// through hostmemd-run: the guest's own writes (the interrupt vector table SeaBIOS writes at
// guest-physical 0) appear in hostmemd's memory, and what hostmemd's side writes is what QEMU's
// `xp` shows. The memory outlives QEMU and a SIGKILLed daemon (under hostmemd-supervise and
// under a service manager with a fd store), and a running guest keeps sharing its pages with a
// daemon that was SIGKILLed and restored under it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { ROOT, killAndWait, tmpDir, waitConnectable, waitForFile } from '../../helpers/daemon';
import { QEMU_BIN, announceSkip, qemuAvailable } from '../../helpers/qemu';
import { RawQmpClient } from '../../helpers/qmp-client';
import { ServiceManager } from '../../helpers/service-manager';
import { fetchMemdevFds, closeExports, memoryFd } from '../../../src/client/memdev-export';
import * as native from '../../../src/native';

const SIZE = 64 * 1024 * 1024;
/** Where hostmemd's side writes its pattern: 1 MiB, plain RAM SeaBIOS leaves alone. */
const PATTERN_AT = 0x100000;
/** A TCG guest writes its IVT in well under a second on an idle host; a loaded CI runner is
 *  given much longer. */
const IVT_WAIT_MS = 30000;
const RUN = path.join(ROOT, 'bin', 'hostmemd-run');

const haveQemu = qemuAvailable();
if (!haveQemu) announceSkip('QEMU guest on hostmemd memory', `${QEMU_BIN} is not installed (CI installs qemu-system-x86)`);
const maybe = haveQemu ? describe : describe.skip;
jest.setTimeout(180000);

/** QEMU's command line for a guest whose RAM is the memdev at fd 3. */
function qemuArgs(qmpSock: string, paused: boolean): string[] {
  return [
    ...['-M', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-m', '64M'],
    ...['-object', `memory-backend-file,id=ram0,mem-path=/proc/self/fd/3,share=on,size=64M`, '-machine', 'memory-backend=ram0'],
    ...['-qmp', `unix:${qmpSock},server=on,wait=off`],
    ...(paused ? ['-S'] : []),
  ];
}

interface Guest {
  proc: ChildProcess;
  qmp: RawQmpClient;
  stderr(): string;
  stop(): Promise<void>;
}

/** hostmemd-run --memdev ram0:3 -- qemu-system-x86_64 ...; resolves once QEMU's QMP answers. */
async function startGuest(daemonSock: string, paused = false): Promise<Guest> {
  const dir = tmpDir('hostmemd-guest-');
  const qsock = path.join(dir, 'qemu.sock');
  const proc = spawn(process.execPath, [RUN, '--qmp', `unix:${daemonSock}`, '--memdev', 'ram0:3', '--', QEMU_BIN, ...qemuArgs(qsock, paused)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await waitForFile(qsock, proc, () => err);
    await waitConnectable(qsock);
  } catch (e) {
    await killAndWait(proc);
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const qmp = await RawQmpClient.negotiated(qsock);
  return {
    proc,
    qmp,
    stderr: () => err,
    stop: async () => {
      qmp.close();
      await killAndWait(proc);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `xp /Nxb ADDR` through human-monitor-command, as bytes. */
async function xp(g: Guest, addr: number, n: number): Promise<Buffer> {
  const r = await g.qmp.execute('human-monitor-command', { 'command-line': `xp /${n}xb 0x${addr.toString(16)}` });
  const text = r.return as string;
  const bytes = text
    .split('\n')
    .filter((l) => l.includes(':'))
    .flatMap((l) => l.slice(l.indexOf(':') + 1).trim().split(/\s+/))
    .filter((t) => t.startsWith('0x'))
    .map((t) => parseInt(t, 16));
  return Buffer.from(bytes);
}

/** Runs `fn` on a shared, writable mapping of backend ram0 as hostmemd exports it now. */
async function withHostmemdMemory<T>(sock: string, fn: (m: native.Mapping) => T | Promise<T>): Promise<T> {
  const [ram0] = await fetchMemdevFds(sock, ['ram0']);
  try {
    expect(ram0.size).toBe(BigInt(SIZE));
    const m = native.mmap(ram0.size, native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, memoryFd(ram0), ram0.offset);
    try {
      return await fn(m);
    } finally {
      m.unmap();
    }
  } finally {
    closeExports([ram0]);
  }
}

/** How long the first IVT entries must stay the same before the test takes them as written:
 *  SeaBIOS fills every vector with a default handler and then sets some (NMI) to their own, and
 *  under load its vCPU thread may be descheduled in between. */
const IVT_SETTLE_MS = 500;

/** Waits until the guest has written its IVT into hostmemd's memory: returns how long after
 *  `since` the first 16 bytes became non-zero, and those bytes once all four vectors are set
 *  and have not changed for IVT_SETTLE_MS. */
async function guestWroteIvt(sock: string, since: number): Promise<{ ivt: Buffer; ms: number }> {
  return withHostmemdMemory(sock, async (m) => {
    const deadline = Date.now() + IVT_WAIT_MS;
    let ms: number | undefined;
    let last: Buffer = Buffer.alloc(16);
    let stableSince = Date.now();
    for (;;) {
      const ivt = m.read(0, 16);
      if (ms === undefined && ivt.some((b) => b !== 0)) ms = Date.now() - since;
      if (!ivt.equals(last)) {
        last = ivt;
        stableSince = Date.now();
      }
      const allSet = [0, 4, 8, 12].every((o) => ivt.readUInt32LE(o) !== 0);
      if (allSet && Date.now() - stableSince >= IVT_SETTLE_MS) return { ivt, ms: ms! };
      if (Date.now() > deadline) throw new Error(`the guest wrote no complete IVT into hostmemd memory (last: ${ivt.toString('hex')})`);
      await new Promise((r) => setTimeout(r, 5));
    }
  });
}

function pattern(tag: string): Buffer {
  return Buffer.from(`${tag}-0123456789abcdef`.slice(0, 16));
}

/** A daemon under a manager that restarts it with its memory: the test's view of it. */
interface Host {
  sock: string;
  /** SIGKILLs the daemon and resolves once a restarted one serves ram0 again. */
  crash(): Promise<void>;
  close(): Promise<void>;
}

async function addRam0(sock: string): Promise<void> {
  const c = await RawQmpClient.negotiated(sock);
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'ram0', size: SIZE, share: true })).toEqual({ return: {} });
  c.close();
}

/** After a restart: ram0 is back with its memory (reattached, not re-created empty). */
async function expectRestored(sock: string): Promise<void> {
  const c = await RawQmpClient.negotiated(sock);
  const objects = ((await c.execute('query-cpr')).return as { objects: { id: string; preserved: boolean; origin: string }[] }).objects;
  c.close();
  expect(objects).toEqual([expect.objectContaining({ id: 'ram0', preserved: true, origin: 'reattached' })]);
}

async function superviseHost(): Promise<Host> {
  const dir = tmpDir('hostmemd-sup-');
  const sock = path.join(dir, 'qmp.sock');
  const sup = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd-supervise'), '--state-dir', dir], { stdio: ['ignore', 'ignore', 'ignore'] });
  await waitForFile(sock, sup);
  await waitConnectable(sock);
  const child = (): number | undefined => {
    const kids = fs.readFileSync(`/proc/${sup.pid}/task/${sup.pid}/children`, 'utf8').trim();
    return kids ? Number(kids.split(/\s+/)[0]) : undefined;
  };
  return {
    sock,
    crash: async () => {
      const pid = child()!;
      process.kill(pid, 'SIGKILL');
      const deadline = Date.now() + 30000;
      while (child() === undefined || child() === pid) {
        if (Date.now() > deadline) throw new Error('hostmemd-supervise did not restart the daemon');
        await new Promise((r) => setTimeout(r, 20));
      }
      await expectRestored(sock); // queued on the supervisor's socket until the new daemon greets
    },
    close: async () => {
      await killAndWait(sup, 'SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function serviceManagerHost(): Promise<Host> {
  const sm = new ServiceManager();
  const sock = sm.listen('qmp');
  await sm.start();
  return {
    sock,
    crash: async () => {
      await sm.kill();
      await sm.start();
      await expectRestored(sock);
    },
    close: () => sm.close(),
  };
}

maybe.each([
  ['hostmemd-supervise', superviseHost],
  ['the service manager (fd store)', serviceManagerHost],
])('a QEMU guest on hostmemd memory, under %s', (_name, makeHost) => {
  let host: Host;
  const guests: Guest[] = [];
  beforeEach(async () => {
    host = await makeHost();
    await addRam0(host.sock);
  });
  afterEach(async () => {
    for (const g of guests.splice(0)) await g.stop();
    await host.close();
  });

  test('guest writes reach hostmemd, hostmemd writes reach the guest; the memory outlives QEMU and a SIGKILLed daemon', async () => {
    const t0 = Date.now();
    const g1 = await startGuest(host.sock);
    guests.push(g1);
    const { ivt, ms } = await guestWroteIvt(host.sock, t0);
    console.log(`guest IVT in hostmemd memory ${ms} ms after QEMU started: ${ivt.toString('hex')}`);
    const mark = pattern('hostmemd');
    await withHostmemdMemory(host.sock, (m) => m.write(PATTERN_AT, mark));
    expect(await xp(g1, PATTERN_AT, 16)).toEqual(mark);
    expect(await xp(g1, 0, 16)).toEqual(ivt);

    // QEMU goes (SIGKILL: no clean-up of its own), then the daemon is SIGKILLed and restored.
    await killAndWait(g1.proc);
    await host.crash();
    // A second QEMU on the same backend, paused (-S): it runs no guest code, so what it shows
    // at 0 is what the first guest wrote.
    const g2 = await startGuest(host.sock, true);
    guests.push(g2);
    expect((await g2.qmp.execute('query-status')).return).toMatchObject({ running: false, status: 'prelaunch' });
    expect(await xp(g2, 0, 16)).toEqual(ivt);
    expect(await xp(g2, PATTERN_AT, 16)).toEqual(mark);
  });

  test('a running guest keeps its RAM while the daemon is SIGKILLed and restored, and both still share the same pages', async () => {
    const t0 = Date.now();
    const g = await startGuest(host.sock);
    guests.push(g);
    const { ivt } = await guestWroteIvt(host.sock, t0);
    const before = pattern('before-crash');
    await withHostmemdMemory(host.sock, (m) => m.write(PATTERN_AT, before));

    await host.crash();
    // QEMU did not notice: still running, its RAM intact.
    expect((await g.qmp.execute('query-status')).return).toMatchObject({ running: true, status: 'running' });
    expect(await xp(g, 0, 16)).toEqual(ivt);
    expect(await xp(g, PATTERN_AT, 16)).toEqual(before);

    // hostmemd's side → QEMU: with the guest stopped (an IVT of zeros under a running guest
    // would crash it), the restored daemon clears the IVT and writes a new pattern.
    expect(await g.qmp.execute('stop')).toEqual({ return: {} });
    const after = pattern('after-restore');
    await withHostmemdMemory(host.sock, (m) => {
      m.write(0, Buffer.alloc(16));
      m.write(PATTERN_AT, after);
    });
    expect(await xp(g, 0, 16)).toEqual(Buffer.alloc(16));
    expect(await xp(g, PATTERN_AT, 16)).toEqual(after);
    // QEMU → hostmemd's side: the guest boots again and writes its IVT anew.
    const t1 = Date.now();
    expect(await g.qmp.execute('system_reset')).toEqual({ return: {} });
    expect(await g.qmp.execute('cont')).toEqual({ return: {} });
    expect((await guestWroteIvt(host.sock, t1)).ivt).toEqual(ivt);
  });
});
