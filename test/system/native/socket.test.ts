// UNIX sockets with fd passing through koffi: what sd_notify and the handover rely on. fds
// arrive as the same open files (same inode, shared contents), close-on-exec; a message whose
// fds do not fit is an error, never a silent loss; abstract addresses work for NOTIFY_SOCKET.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../../src/native';
import { tmpDir } from '../../helpers/daemon';
import { sysError } from '../../helpers/native';

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
