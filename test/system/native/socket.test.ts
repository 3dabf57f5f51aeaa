// UNIX sockets with fd passing through koffi: what sd_notify and the handover rely on. fds
// arrive as the same open files (same inode, shared contents), close-on-exec; a message whose
// fds do not fit is an error, never a silent loss; abstract addresses work for NOTIFY_SOCKET.
// SO_PEERCRED tells who is at the other end (what the handover trusts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../../src/native';
import { tmpDir } from '../../helpers/daemon';
import { spawn } from 'node:child_process';
import { sysError } from '../../helpers/native';
import { announceSkip } from '../../helpers/qemu';

const S = native.sockets;
const open = (): number => fs.readdirSync('/proc/self/fd').length;

test('a memfd sent over a seqpacket pair arrives as the same file, close-on-exec, with its bytes', async () => {
  const [a, b] = S.socketPair(S.SOCK_SEQPACKET);
  const m = native.memfdCreate('sock-test', native.MFD_CLOEXEC);
  native.ftruncate(m, 4096n);
  const map = native.mmap(4096n, native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, m);
  map.write(0, Buffer.from('shared bytes'));
  await S.sendWithFdsAsync(a, Buffer.from('hello'), [m]);
  const r = await S.receiveWithFds(b, 100, 4);
  expect(r.data.toString()).toBe('hello');
  expect(r.fds).toHaveLength(1);
  expect(native.fstat(r.fds[0]).ino).toBe(native.fstat(m).ino);
  expect(r.fds[0].cloexec).toBe(true);
  const map2 = native.mmap(4096n, native.PROT_READ, native.MAP_SHARED, r.fds[0]);
  expect(map2.read(0, 12).toString()).toBe('shared bytes');
  for (const x of [map, map2]) x.unmap();
  for (const f of [a, b, m, ...r.fds]) f.close();
});

test('more fds than the receiver takes: EMSGSIZE, and the ones that arrived are closed', async () => {
  const [a, b] = S.socketPair(S.SOCK_SEQPACKET);
  const m = native.memfdCreate('sock-test', native.MFD_CLOEXEC);
  const before = open();
  await S.sendWithFdsAsync(a, Buffer.from('x'), [m, m, m]);
  await expect(S.receiveWithFds(b, 100, 1)).rejects.toMatchObject({ code: 'EMSGSIZE', syscall: 'recvmsg' });
  expect(open()).toBe(before);
  expect(() => S.sendWithFds(a, Buffer.from('x'), new Array(S.MAX_FDS_PER_MESSAGE + 1).fill(m))).toThrow(RangeError);
  for (const f of [a, b, m]) f.close();
});

test('datagrams to a path and to an abstract address (NOTIFY_SOCKET forms); classification of fds', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'notify');
  const abstract = `@hostmemd-test-${process.pid}`;
  for (const addr of [file, abstract]) {
    const srv = S.socket(S.SOCK_DGRAM);
    S.bind(srv, addr);
    expect(S.localPath(srv)).toBe(addr);
    const cli = S.socket(S.SOCK_DGRAM);
    S.sendWithFds(cli, Buffer.from('READY=1'), [], addr);
    expect((await S.receiveWithFds(srv, 100, 0)).data.toString()).toBe('READY=1');
    expect(S.classifyFd(srv)).toEqual({ kind: 'socket', socketType: S.SOCK_DGRAM });
    srv.close();
    cli.close();
  }
  const l = S.socket(S.SOCK_STREAM);
  S.bind(l, path.join(dir, 'l'));
  S.listen(l);
  expect(S.classifyFd(l)).toEqual({ kind: 'listening-socket', socketType: S.SOCK_STREAM });
  const m = native.memfdCreate('x', native.MFD_CLOEXEC);
  expect(S.classifyFd(m)).toEqual({ kind: 'file' });
  expect(sysError(() => S.connect(S.socket(S.SOCK_STREAM), path.join(dir, 'nobody'))).code).toBe('ENOENT');
  expect(sysError(() => S.sockaddrUn('/x'.repeat(60))).code).toBe('ENAMETOOLONG');
  for (const f of [l, m]) f.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('shutdown wakes a receive blocked on another thread', async () => {
  const [a, b] = S.socketPair(S.SOCK_SEQPACKET);
  const pending = S.receiveWithFds(b, 100, 1);
  setTimeout(() => S.shutdown(b), 50);
  expect((await pending).data.length).toBe(0);
  a.close();
  b.close();
});

test('SO_PEERCRED names the process at the other end: ourselves on a pair, another uid across a listener', async () => {
  const [a, b] = S.socketPair(S.SOCK_SEQPACKET);
  expect(S.peerCredentials(a)).toEqual({ pid: process.pid, uid: process.geteuid!(), gid: process.getegid!() });
  a.close();
  b.close();
  if (process.geteuid!() !== 0) return announceSkip('SO_PEERCRED of another uid', 'needs root to start a process as nobody');
  // A process running as nobody (65534) connects to our listener: the kernel, not the peer,
  // says who it is.
  const dir = tmpDir();
  fs.chmodSync(dir, 0o755);
  const sockPath = path.join(dir, 'l');
  const l = S.socket(S.SOCK_STREAM);
  S.bind(l, sockPath);
  fs.chmodSync(sockPath, 0o777);
  S.listen(l, 1);
  const child = spawn(process.execPath, ['-e', `require('node:net').connect(${JSON.stringify(sockPath)}); setTimeout(() => {}, 10000)`], { uid: 65534, gid: 65534, stdio: 'ignore' });
  try {
    const c = await S.accept(l);
    expect(S.peerCredentials(c)).toEqual({ pid: child.pid, uid: 65534, gid: 65534 });
    c.close();
  } finally {
    child.kill('SIGKILL');
    l.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('connectNow to a full backlog fails at once (EAGAIN) instead of blocking; the socket blocks again after; a wait limit ends a silent receive', async () => {
  const dir = tmpDir();
  const sockPath = path.join(dir, 'l');
  const l = S.socket(S.SOCK_SEQPACKET);
  S.bind(l, sockPath);
  S.listen(l, 0);
  const first = S.socket(S.SOCK_SEQPACKET);
  S.connectNow(first, sockPath); // waits in the backlog, never accepted
  const second = S.socket(S.SOCK_SEQPACKET);
  const t = Date.now();
  expect(sysError(() => S.connectNow(second, sockPath)).code).toBe('EAGAIN');
  expect(Date.now() - t).toBeLessThan(500);
  // Blocking again: a receive waits (on the pool) until the limit, then EAGAIN.
  S.setWaitLimit(first, 200);
  const t0 = Date.now();
  await expect(S.receiveWithFds(first, 100, 1)).rejects.toMatchObject({ code: 'EAGAIN', syscall: 'recvmsg' });
  expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
  expect(Date.now() - t0).toBeLessThan(2000);
  for (const f of [l, first, second]) f.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
