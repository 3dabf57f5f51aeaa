// hostmemd launched the way tools launch QEMU 7.2 (the real process from dist/): exactly as
// qemu.machine.QEMUMachine does (a socketpair whose end the child gets as fd 3, `-chardev
// socket,id=mon,fd=3 -mon chardev=mon,mode=control -display none -vga none`, negotiate,
// commands, `quit`, wait for exit 0; and 7.2's own variant, which listens on a path that the
// child connects to); a harness that listens and passes `-qmp unix:PATH`; a
// libvirt-style listening fd; reconnect; wait=on with pretty=on; and command-line errors
// compared live with qemu-system-x86_64's stderr and exit status.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import * as native from '../../src/native';
import { RawQmpClient } from '../helpers/qmp-client';
import { ROOT, tmpDir, killAndWait } from '../helpers/daemon';
import { QEMU_BIN, announceSkip, qemuAvailable } from '../helpers/qemu';

const BIN = path.join(ROOT, 'bin', 'hostmemd');

interface Launched {
  proc: ChildProcess;
  stderr(): string;
  exited: Promise<number | null>;
}

/** Starts bin/hostmemd with `args`; `fd3` becomes the child's fd 3 (as pass_fds does). */
function launch(args: string[], fd3?: native.Fd): Launched {
  const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe', ...(fd3 ? [fd3.fd] : [])] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, stderr: () => err, exited };
}

/** Accepts one connection on a listening net.Server. */
function accepted(server: net.Server, timeoutMs = 10000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('nobody connected')), timeoutMs);
    server.once('connection', (s) => {
      clearTimeout(t);
      resolve(s);
    });
  });
}

const dirs: string[] = [];
const procs: ChildProcess[] = [];
function dir(): string {
  const d = tmpDir();
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const p of procs.splice(0)) await killAndWait(p);
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

test('launched exactly as qemu.machine.QEMUMachine launches QEMU: fd 3, negotiate, commands, quit, exit 0', async () => {
  const state = dir();
  // QEMUMachine: socket.socketpair(); the child's end is inherited, the launcher keeps the other.
  const [child, ours] = native.sockets.socketPair(native.sockets.SOCK_STREAM);
  const args = ['-display', 'none', '-vga', 'none', '-chardev', 'socket,id=mon,fd=3', '-mon', 'chardev=mon,mode=control', '--state-dir', state, '--accel', 'none', '-pidfile', path.join(state, 'pid')];
  const h = launch(args, child);
  procs.push(h.proc);
  child.close(); // _post_launch closes the child's end in the launcher
  const qmp = RawQmpClient.over(new net.Socket({ fd: ours.fd, readable: true, writable: true }));
  try {
    const greeting = await qmp.json(10000);
    expect(greeting).toMatchObject({ QMP: { capabilities: ['oob'] } });
    qmp.send('{"execute": "qmp_capabilities"}');
    expect(await qmp.line()).toBe('{"return": {}}');
    expect(fs.readFileSync(path.join(state, 'pid'), 'utf8')).toBe(`${h.proc.pid}\n`);
    expect(await qmp.execute('query-version')).toMatchObject({ return: { package: 'hostmemd 0.1.0' } });
    expect(await qmp.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm0', size: 1048576 })).toEqual({ return: {} });
    expect(await qmp.execute('qom-get', { path: '/objects/m0', property: 'size' })).toEqual({ return: 1048576 });
    // shutdown(): qmp('quit'), then wait for the process.
    qmp.send('{"execute": "quit"}');
    expect(await qmp.json()).toMatchObject({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    expect(await qmp.line()).toBe('{"return": {}}');
    await qmp.waitClosed();
    expect(await h.exited).toBe(0);
    expect(fs.existsSync(path.join(state, 'pid'))).toBe(false);
  } finally {
    qmp.close();
  }
}, 30000);

test("launched as QEMU 7.2's QEMUMachine does with a monitor path: it listens, -chardev socket,id=mon,path=P connects, quit, exit 0", async () => {
  const d = dir();
  const sock = path.join(d, 'machine.qmp');
  const server = net.createServer(); // QEMUMonitorProtocol(address, server=True)
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    const h = launch(['-display', 'none', '-vga', 'none', '-chardev', `socket,id=mon,path=${sock}`, '-mon', 'chardev=mon,mode=control', '--state-dir', d, '--accel', 'none']);
    procs.push(h.proc);
    const qmp = RawQmpClient.over(await accepted(server));
    await qmp.negotiate();
    expect(await qmp.execute('query-version')).toHaveProperty('return');
    qmp.send('{"execute": "quit"}');
    expect(await qmp.json()).toMatchObject({ event: 'SHUTDOWN' });
    expect(await qmp.line()).toBe('{"return": {}}');
    await qmp.waitClosed();
    expect(await h.exited).toBe(0);
  } finally {
    await new Promise((r) => server.close(r));
  }
}, 30000);

test("an fd monitor's peer going away ends that monitor, not hostmemd (as in QEMU)", async () => {
  const d = dir();
  const [child, ours] = native.sockets.socketPair(native.sockets.SOCK_STREAM);
  const h = launch(['-chardev', 'socket,id=mon,fd=3', '-mon', 'chardev=mon,mode=control', '--qmp', `unix:${path.join(d, 'other.sock')}`, '--state-dir', d, '--accel', 'none'], child);
  procs.push(h.proc);
  child.close();
  const qmp = RawQmpClient.over(new net.Socket({ fd: ours.fd, readable: true, writable: true }));
  await qmp.negotiate();
  qmp.close();
  const deadline = Date.now() + 10000;
  while (!h.stderr().includes('this monitor is gone')) {
    if (Date.now() > deadline || h.proc.exitCode !== null) throw new Error(`no notice: ${h.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  // Still serving on its other socket.
  const other = await RawQmpClient.negotiated(path.join(d, 'other.sock'));
  expect(await other.execute('query-version')).toHaveProperty('return');
  other.close();
  expect(h.proc.exitCode).toBeNull();
}, 30000);

test('a harness that listens and passes -qmp unix:PATH gets the greeting on its own socket; hostmemd outlives the peer', async () => {
  const d = dir();
  const sock = path.join(d, 'harness.sock');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    const h = launch(['-qmp', `unix:${sock}`, '--state-dir', d, '--accel', 'none']);
    procs.push(h.proc);
    const qmp = RawQmpClient.over(await accepted(server));
    await qmp.negotiate();
    expect(await qmp.execute('query-kvm')).toMatchObject({ return: { present: true } });
    // QEMU: the monitor is gone with its peer, the process keeps running.
    qmp.close();
    await new Promise((r) => setTimeout(r, 300));
    expect(h.proc.exitCode).toBeNull();
    h.proc.kill('SIGTERM');
    expect(await h.exited).toBe(0);
  } finally {
    await new Promise((r) => server.close(r));
  }
}, 30000);

test('reconnect=1: started before the harness listens, it connects when it can and again after the peer leaves', async () => {
  const d = dir();
  const sock = path.join(d, 'late.sock');
  const h = launch(['-qmp', `unix:${sock},reconnect=1`, '--state-dir', d, '--accel', 'none']);
  procs.push(h.proc);
  const deadline = Date.now() + 10000;
  while (!h.stderr().includes('Unable to connect character device')) {
    if (Date.now() > deadline || h.proc.exitCode !== null) throw new Error(`no connect failure reported: ${h.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(h.stderr()).toContain(`hostmemd: Unable to connect character device compat_monitor0: Failed to connect to '${sock}': No such file or directory\n`);
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    for (let i = 0; i < 2; i++) {
      const qmp = RawQmpClient.over(await accepted(server));
      await qmp.negotiate();
      expect(await qmp.execute('query-version')).toHaveProperty('return');
      qmp.close();
    }
  } finally {
    await new Promise((r) => server.close(r));
  }
}, 30000);

test('a listening fd given as -chardev socket,fd=N,server=on,wait=off (libvirt) is served', async () => {
  const d = dir();
  const sock = path.join(d, 'libvirt.sock');
  const listener = native.sockets.socket(native.sockets.SOCK_STREAM);
  native.sockets.bind(listener, sock);
  native.sockets.listen(listener, 16);
  const h = launch(['-chardev', 'socket,id=charmonitor,fd=3,server=on,wait=off', '-mon', 'chardev=charmonitor,id=monitor,mode=control', '--state-dir', d, '--accel', 'none'], listener);
  procs.push(h.proc);
  listener.close();
  // The kernel queues connections before hostmemd accepts: two clients, one after the other.
  for (let i = 0; i < 2; i++) {
    const qmp = await RawQmpClient.negotiated(sock);
    expect(await qmp.execute('query-version')).toHaveProperty('return');
    qmp.close();
  }
  h.proc.kill('SIGTERM');
  expect(await h.exited).toBe(0);
}, 30000);

test('-qmp-pretty unix:PATH,server=on waits for its first client (wait=on) and answers in pretty form', async () => {
  const d = dir();
  const sock = path.join(d, 'pretty.sock');
  const h = launch(['-qmp-pretty', `unix:${sock},server=on`, '--state-dir', d, '--accel', 'none']);
  procs.push(h.proc);
  const deadline = Date.now() + 10000;
  while (!h.stderr().includes('waiting for connection')) {
    if (Date.now() > deadline || h.proc.exitCode !== null) throw new Error(`no waiting notice: ${h.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(h.stderr()).toContain(`hostmemd: -qmp-pretty unix:${sock},server=on: info: hostmemd waiting for connection on: disconnected:unix:${sock},server=on\n`);
  const c = net.connect(sock);
  let got = '';
  c.on('data', (b) => (got += b.toString('latin1')));
  c.write('{"execute":"qmp_capabilities"}\n{"execute":"query-commands","id":[1,{}]}\n');
  while (!got.includes('"id": [')) await new Promise((r) => setTimeout(r, 20));
  expect(got).toMatch(/^\{\r\n {4}"QMP": \{\r\n {8}"version": \{\r\n/);
  expect(got).toContain('}\r\n{\r\n    "return": {\r\n    }\r\n}\r\n{\r\n    "return": [\r\n        {\r\n            "name": ');
  expect(got).toMatch(/\r\n {4}\],\r\n {4}"id": \[\r\n {8}1,\r\n {8}\{\r\n {8}\}\r\n {4}\]\r\n\}\r\n$/);
  c.destroy();
}, 30000);

test('TCP with --qmp-allow-tcp on loopback: a listening monitor, and one connecting out (reconnect=1) that quit ends', async () => {
  const d = dir();
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const listenPort = (free.address() as net.AddressInfo).port;
  await new Promise((r) => free.close(r));
  const harness = net.createServer();
  await new Promise<void>((r) => harness.listen(0, '127.0.0.1', r));
  const harnessPort = (harness.address() as net.AddressInfo).port;
  try {
    const h = launch(['--qmp-allow-tcp', '-qmp', `tcp:127.0.0.1:${listenPort},server=on,wait=off`, '-chardev', `socket,id=out,host=127.0.0.1,port=${harnessPort},reconnect=1`, '-mon', 'chardev=out,mode=control', '--state-dir', d, '--accel', 'none']);
    procs.push(h.proc);
    const out = RawQmpClient.over(await accepted(harness));
    await out.negotiate();
    const inbound = RawQmpClient.over(net.connect(listenPort, '127.0.0.1'));
    await inbound.negotiate();
    expect(await inbound.execute('query-version')).toHaveProperty('return');
    out.send('{"execute": "quit"}');
    expect(await out.json()).toMatchObject({ event: 'SHUTDOWN' });
    expect(await out.line()).toBe('{"return": {}}');
    await out.waitClosed();
    await inbound.waitClosed();
    expect(await h.exited).toBe(0);
  } finally {
    await new Promise((r) => harness.close(r));
  }
}, 30000);

describe('command-line errors as qemu-system-x86_64 7.2 prints them (live comparison)', () => {
  const have = qemuAvailable();
  if (!have) announceSkip('qemu-launch CLI differential', `${QEMU_BIN} not found`);
  const cases: string[][] = [
    ['--bogus'],
    ['-bogus', 'x'],
    ['-qmp'],
    ['-pidfile'],
    ['-name'],
    ['-chardev', 'socket,id=x', '-mon', 'chardev=x,mode=control'],
    ['-chardev', 'socket,id=x,path=/s,server=on,wait=off,foo=1'],
    ['-chardev', 'socket,id=x,path=/s,server=on,wait=off', '-mon', 'chardev=x,mode=control,foo=1'],
    ['-chardev', 'bogus,id=x'],
    ['-chardev', 'socket'],
    ['-chardev', 'socket,id=x,path=/s,fd=3'],
    ['-chardev', 'socket,id=x,fd=abc'],
    ['-chardev', 'socket,id=1x,path=/s'],
    ['-chardev', 'socket,id=x,path=/s', '-chardev', 'socket,id=x,path=/t'],
    ['-chardev', 'socket,id=x,path=/s,server=on,wait=off,reconnect=1'],
    ['-chardev', 'socket,id=x,path=/s,server=off,wait=off'],
    ['-chardev', 'socket,id=x,host=127.0.0.1'],
    ['-chardev', 'socket,id=x,reconnect=abc,path=/s'],
    ['-chardev', 'socket,id=x,path=/s,server=on,wait=off,bogus'],
    ['-qmp', 'bogus:foo'],
    ['-qmp', 'unix:/s,server=maybe'],
    ['-qmp', 'unix:/s,server=on,wait=on,foo'],
    ['-qmp-pretty', 'bad'],
    ['-mon', 'chardev=x'],
    ['-name', 'foo,bogus=1'],
    // Failing when the monitor is opened (hostmemd gets a state dir, QEMU ignores none).
    ['-qmp', 'unix:/nonexistent/qmp.sock'],
    ['-chardev', 'socket,id=mon,path=/nonexistent/qmp.sock', '-mon', 'chardev=mon,mode=control'],
    ['-chardev', 'socket,id=x,fd=99,server=on,wait=off', '-mon', 'chardev=x,mode=control'],
  ];
  (have ? test.each(cases) : test.skip.each(cases))('%s', (...argv: string[]) => {
    const d = dir();
    const q = spawnSync(QEMU_BIN, ['-machine', 'none', '-nodefaults', '-display', 'none', ...argv], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'ignore', 'pipe'] });
    const h = spawnSync(process.execPath, [BIN, '--state-dir', d, '--accel', 'none', '--log-level', 'silent', '-machine', 'none', '-nodefaults', '-display', 'none', ...argv], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'ignore', 'pipe'] });
    expect(q.status).toBe(1);
    expect({ status: h.status, stderr: h.stderr }).toEqual({ status: q.status, stderr: q.stderr.replaceAll(`${QEMU_BIN}:`, 'hostmemd:') });
  });
});

test('--help lists every QEMU option hostmemd accepts, and each is accepted', () => {
  const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  for (const o of ['-chardev', '-mon', '-qmp ', '-qmp-pretty', '-object', '-pidfile', '-name', '-S ', '-display none', '-vga none', '-machine none', '-M none', '-nodefaults', '-nographic', '-no-shutdown', '-no-user-config']) {
    expect(r.stdout).toContain(o);
  }
});
