// The unit files pass `systemd-analyze verify` (and keep the settings the daemon relies on), and
// the daemon works under `systemd-socket-activate`: the first connection starts it on the passed
// socket, it binds no socket of its own, and answers QMP.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, killAndWait, tmpDir, waitForFile } from '../../helpers/daemon';
import { RawQmpClient } from '../../helpers/qmp-client';
import { announceSkip } from '../../helpers/qemu';

const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const UNITS = ['hostmemd.service', 'hostmemd.socket'].map((u) => path.join(ROOT, 'systemd', u));

const verifyWhy = has('systemd-analyze') ? undefined : 'systemd-analyze is not installed';
if (verifyWhy) announceSkip('systemd-analyze verify/security/syscall-filter of systemd/*', verifyWhy);
const withAnalyze = verifyWhy ? test.skip : test;

/** `systemd-analyze verify` of `units` (paths); its status and everything it printed. */
const verify = (units: string[], root?: string): { status: number | null; out: string } => {
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...(root ? [`--root=${root}`] : []), ...units], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
};

/** A root directory holding this machine's system units, a stand-in /usr/bin/node and copies of
 *  `files` (name -> text) in /etc/systemd/system: verify then checks ExecStart= against the
 *  stand-in, so it does not depend on where Node is installed here. */
const verifyRoot = (files: Record<string, string>): { root: string; units: string[] } => {
  const root = tmpDir('hostmemd-verify-');
  fs.mkdirSync(path.join(root, 'usr/bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'usr/lib/systemd'), { recursive: true });
  fs.mkdirSync(path.join(root, 'etc/systemd/system'), { recursive: true });
  fs.cpSync('/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  fs.writeFileSync(path.join(root, 'usr/bin/node'), '#!/bin/sh\n', { mode: 0o755 });
  const units = Object.entries(files).map(([name, text]) => {
    const to = path.join(root, 'etc/systemd/system', name);
    fs.writeFileSync(to, text);
    return to;
  });
  return { root, units };
};
const shipped = (): Record<string, string> => Object.fromEntries(UNITS.map((u) => [path.basename(u), fs.readFileSync(u, 'utf8')]));

const nodeHere = ((): boolean => {
  try {
    fs.accessSync('/usr/bin/node', fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
})();
if (!verifyWhy && !nodeHere) announceSkip('systemd-analyze verify against this machine (ExecStart=/usr/bin/node)', '/usr/bin/node is not here; the test under a prepared root still runs');
(verifyWhy || !nodeHere ? test.skip : test)('systemd-analyze verify passes on both units with no warning, on this machine', () => {
  expect(verify(UNITS)).toEqual({ status: 0, out: '' });
});

withAnalyze('systemd-analyze verify passes on both units with no warning, under a root with /usr/bin/node', () => {
  const { root, units } = verifyRoot(shipped());
  // The check has teeth: a misspelt setting and a missing executable are both reported.
  const bad = verifyRoot({ ...shipped(), 'hostmemd.service': shipped()['hostmemd.service'].replace('WatchdogSec=', 'WatchdogSecs=') });
  try {
    expect(verify(units, root)).toEqual({ status: 0, out: '' });
    expect(verify(bad.units, bad.root).out).toMatch(/Unknown key 'WatchdogSecs'/);
    fs.rmSync(path.join(bad.root, 'usr/bin/node'));
    expect(verify(bad.units, bad.root)).toMatchObject({ status: 1, out: expect.stringMatching(/Command \/usr\/bin\/node is not executable/) });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(bad.root, { recursive: true, force: true });
  }
});

withAnalyze('systemd-analyze security --offline rates the sandbox OK (exposure below 2.5)', () => {
  const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNITS[0]], { encoding: 'utf8' });
  const m = /Overall exposure level for hostmemd\.service: (\d+\.\d+)/.exec(r.stdout);
  expect(m).not.toBeNull();
  expect(Number(m![1])).toBeLessThan(2.5);
});

/** The system calls behind each libc function the daemon calls through koffi (src/native/ffi.ts),
 *  on x86-64/aarch64 glibc. A function added there must be added here too. */
const LIBC_SYSCALLS: Record<string, string[]> = {
  accept4: ['accept4'],
  bind: ['bind'],
  close: ['close'],
  connect: ['connect'],
  fallocate: ['fallocate'],
  fcntl: ['fcntl'],
  fstat: ['newfstatat', 'fstat'],
  fstatfs: ['fstatfs'],
  ftruncate: ['ftruncate'],
  getpagesize: [],
  getppid: ['getppid'],
  getrlimit: ['prlimit64'],
  getsockname: ['getsockname'],
  getsockopt: ['getsockopt'],
  ioctl: ['ioctl'],
  listen: ['listen'],
  madvise: ['madvise'],
  memcpy: [],
  memfd_create: ['memfd_create'],
  mincore: ['mincore'],
  // Tests only (planting FIFOs); glibc's mkfifo is mknodat.
  mkfifo: ['mknodat'],
  mmap: ['mmap'],
  munmap: ['munmap'],
  newlocale: ['openat', 'read', 'close'],
  open: ['openat'],
  openat: ['openat'],
  prctl: ['prctl'],
  recvmsg: ['recvmsg'],
  sendmsg: ['sendmsg'],
  setsockopt: ['setsockopt'],
  setrlimit: ['prlimit64'],
  shm_open: ['openat'],
  shm_unlink: ['unlink'],
  shutdown: ['shutdown'],
  socket: ['socket'],
  socketpair: ['socketpair'],
  strerror: [],
  strerror_l: [],
  sysconf: ['openat', 'read', 'sched_getaffinity'],
  unlinkat: ['unlinkat'],
  syscall: [], // the numbers it is called with: SYS_* constants, below
  // hostmemd-run's exec (the launcher, not the daemon; listed so that the table is complete).
  dup2: ['dup2', 'dup3'],
  close_range: ['close_range'],
  execve: ['execve'],
  _exit: ['exit_group'],
  signal: ['rt_sigaction'],
  // libuv's poll handle in Node's own loop (the UNIX transport's readiness for recvmsg).
  uv_default_loop: [],
  uv_handle_size: [],
  uv_poll_init: ['ioctl', 'fcntl'],
  uv_poll_start: ['epoll_ctl'],
  uv_poll_stop: ['epoll_ctl'],
  uv_close: ['epoll_ctl'],
  uv_strerror: [],
};

/** Every system call a SystemCallFilter= allow list lets through (groups expanded). */
const expandFilter = (items: string[]): Set<string> => {
  const out = new Set<string>();
  const seen = new Set<string>();
  const walk = (item: string): void => {
    if (!item.startsWith('@')) return void out.add(item);
    if (seen.has(item)) return;
    seen.add(item);
    const text = spawnSync('systemd-analyze', ['syscall-filter', '--no-pager', item], { encoding: 'utf8' }).stdout;
    const lines = text.split('\n');
    const start = lines.indexOf(item);
    expect(start).toBeGreaterThanOrEqual(0);
    for (const l of lines.slice(start + 1)) {
      if (l.trim() === '') break;
      const name = l.trim();
      if (!name.startsWith('#')) walk(name);
    }
  };
  items.forEach(walk);
  return out;
};

withAnalyze("the service's SystemCallFilter= lets through every system call the daemon makes through koffi", () => {
  const ffi = fs.readFileSync(path.join(ROOT, 'src/native/ffi.ts'), 'utf8');
  // Prototypes as ffi.ts declares them: `name: 'int close(int fd)',` (declareLazily).
  const funcs = [...ffi.matchAll(/^\s+\w+: '[^(']*?[ *]([a-z_0-9]+)\(/gm)].map((m) => m[1]);
  expect(funcs.length).toBeGreaterThan(10);
  expect(funcs.filter((f) => !(f in LIBC_SYSCALLS))).toEqual([]);
  const direct = [...ffi.matchAll(/const SYS_([A-Z_0-9]+) = \d+/g)].map((m) => m[1].toLowerCase());
  expect(direct).toContain('mbind');
  const needed = new Set([...funcs.flatMap((f) => LIBC_SYSCALLS[f]), ...direct]);
  const unit = fs.readFileSync(UNITS[0], 'utf8');
  const filters = [...unit.matchAll(/^SystemCallFilter=(.*)$/gm)].map((m) => m[1].trim());
  // One allow list (a "~" deny list would need another check).
  expect(filters.every((f) => !f.startsWith('~'))).toBe(true);
  const allowed = expandFilter(filters.flatMap((f) => f.split(/\s+/)));
  expect([...needed].filter((c) => !allowed.has(c))).toEqual([]);
});

test('the service keeps what the daemon relies on', () => {
  const unit = fs.readFileSync(UNITS[0], 'utf8');
  for (const line of [
    'Type=notify',
    'NotifyAccess=main',
    'FileDescriptorStoreMax=65536',
    'Restart=on-failure',
    'StateDirectory=hostmemd',
    'RuntimeDirectory=hostmemd',
    'RuntimeDirectoryPreserve=yes',
    'DeviceAllow=/dev/kvm rw',
    'DevicePolicy=closed',
    'ProtectSystem=strict',
    'NoNewPrivileges=yes',
    'CapabilityBoundingSet=',
    'User=hostmemd',
    'SupplementaryGroups=kvm',
  ]) {
    expect(unit.split('\n')).toContain(line);
  }
  expect(unit).toMatch(/^WatchdogSec=\d+s$/m);
  // No object may be acknowledged whose fd the store would refuse.
  const storeMax = Number(/^FileDescriptorStoreMax=(\d+)$/m.exec(unit)![1]);
  const maxObjects = Number(/^ExecStart=.* --max-objects (\d+)(\s|$)/m.exec(unit)?.[1]);
  expect(maxObjects).toBeGreaterThan(0);
  expect(maxObjects).toBeLessThanOrEqual(storeMax);
  // V8's JIT needs W+X memory: this would kill the daemon at start.
  expect(unit).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
  const socket = fs.readFileSync(UNITS[1], 'utf8');
  expect(socket).toMatch(/^ListenStream=\/run\/hostmemd\/qmp\.sock$/m);
  expect(socket).toMatch(/^FileDescriptorName=qmp$/m);
});

const saWhy = has('systemd-socket-activate') ? undefined : 'systemd-socket-activate is not installed';
if (saWhy) announceSkip('socket activation with systemd-socket-activate', saWhy);
(saWhy ? test.skip : test)('systemd-socket-activate: the first connect starts the daemon on the passed socket', async () => {
  const dir = tmpDir('hostmemd-sa-');
  const sock = path.join(dir, 'activated.sock');
  const sa = spawn('systemd-socket-activate', ['-l', sock, '--fdname=qmp', process.execPath, path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  sa.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await waitForFile(sock, sa, () => err);
    // Nothing runs yet: the connection itself starts hostmemd, which greets on it. (The file
    // appears at bind(), a moment before listen(): until then a connect is refused, and a
    // refused connect starts nothing.)
    let c: RawQmpClient | undefined;
    for (let i = 0; !c; i++) {
      try {
        c = await RawQmpClient.negotiated(sock);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || i >= 100) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    expect(await c.execute('query-version')).toMatchObject({ return: { package: expect.stringMatching(/^hostmemd /) } });
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1 << 20 })).toEqual({ return: {} });
    const c2 = await RawQmpClient.negotiated(sock);
    expect(await c2.execute('query-memdev')).toMatchObject({ return: [{ id: 'm' }] });
    // It used the passed socket and made none of its own.
    expect(fs.existsSync(path.join(dir, 'qmp.sock'))).toBe(false);
    expect(err).toMatch(/"sockets":\[".*activated\.sock"\]/);
    c.close();
    c2.close();
  } finally {
    await killAndWait(sa, 'SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
