// UNIX-domain sockets with fd passing (SCM_RIGHTS), which Node's core lacks: the sd_notify
// datagram socket (systemd's fd store) and the SOCK_SEQPACKET handover channel. Messages are
// built in native memory (msghdr → iovec, sockaddr_un, cmsg) because the kernel follows the
// pointers in them; calls that may block run on libuv's threadpool.
// Layouts: x86-64 glibc <bits/socket.h> (msghdr 56 bytes, cmsghdr 16), man 7 unix, man 3 cmsg.
import * as ffi from './ffi';
import { check, SysError } from './errno';
import { Fd } from './fd';
import { fstat } from './libc';

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const SO_ACCEPTCONN = 30;
const SO_TYPE = 3;
const SO_PEERCRED = 17;
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;
/** fcntl F_GETFL / F_SETFL and O_NONBLOCK (<asm-generic/fcntl.h>). */
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const MSG_NOSIGNAL = 0x4000;
const MSG_CTRUNC = 0x8;
const MSG_TRUNC = 0x20;
const MSG_CMSG_CLOEXEC = 0x40000000;
/** The kernel's SCM_MAX_FD: at most this many fds ride on one message. */
export const MAX_FDS_PER_MESSAGE = 253;
/** sizeof(sun_path). */
const SUN_PATH_MAX = 108;
const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;

// struct msghdr { void *name; socklen_t namelen; struct iovec *iov; size_t iovlen;
//                 void *control; size_t controllen; int flags; }
const MSG = { name: 0, namelen: 8, iov: 16, iovlen: 24, control: 32, controllen: 40, flags: 48, size: 56 };
const IOVEC_SIZE = 16;
const CMSG_HDR = 16; // cmsg_len (size_t), cmsg_level (int), cmsg_type (int)
const align8 = (n: number): number => (n + 7) & ~7;

/** struct sockaddr_un for `path`; a leading '@' names the abstract namespace (NOTIFY_SOCKET's
 *  convention, sd_notify(3)). Returns the bytes and the address length to pass. */
export function sockaddrUn(path: string): { addr: Buffer; len: number } {
  const abstract = path.startsWith('@');
  const name = Buffer.from(abstract ? path.slice(1) : path);
  if (name.length + (abstract ? 1 : 0) >= SUN_PATH_MAX || name.length === 0) {
    throw new SysError(`sockaddr_un(${path})`, 36 /* ENAMETOOLONG */);
  }
  const addr = Buffer.alloc(2 + SUN_PATH_MAX);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, abstract ? 3 : 2);
  // Abstract names are exactly as long as given; paths end with their NUL.
  return { addr, len: abstract ? 2 + 1 + name.length : 2 + name.length + 1 };
}

export function socket(type: number): Fd {
  return new Fd(check('socket', ffi.socket(AF_UNIX, type | SOCK_CLOEXEC, 0)));
}

export function socketPair(type: number): [Fd, Fd] {
  const sv = Buffer.alloc(8);
  check('socketpair', ffi.socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv));
  return [new Fd(sv.readInt32LE(0)), new Fd(sv.readInt32LE(4))];
}

export function bind(sock: Fd, path: string): void {
  const { addr, len } = sockaddrUn(path);
  check('bind', ffi.bind(sock.raw('bind'), addr, len));
}

export function listen(sock: Fd, backlog = 16): void {
  check('listen', ffi.listen(sock.raw('listen'), backlog));
}

export function connect(sock: Fd, path: string): void {
  const { addr, len } = sockaddrUn(path);
  check('connect', ffi.connect(sock.raw('connect'), addr, len));
}

/** connect(2) that never waits: with O_NONBLOCK, a listener whose backlog is full answers
 *  EAGAIN at once instead of blocking the caller until someone accepts (man 7 unix) — the
 *  event loop must not hang on a socket another user controls. The socket is blocking again
 *  afterwards (its sends and receives run on the threadpool). */
export function connectNow(sock: Fd, path: string): void {
  const { addr, len } = sockaddrUn(path);
  const fd = sock.raw('connect');
  const flags = check('fcntl(F_GETFL)', ffi.fcntl(fd, F_GETFL, 0));
  check('fcntl(F_SETFL)', ffi.fcntl(fd, F_SETFL, flags | O_NONBLOCK));
  check('connect', ffi.connect(fd, addr, len));
  check('fcntl(F_SETFL)', ffi.fcntl(fd, F_SETFL, flags & ~O_NONBLOCK));
}

/** Who is at the other end of a connected UNIX socket (SO_PEERCRED, struct ucred): the
 *  process's pid and effective uid/gid when it called connect(2) — or listen(2), seen from
 *  the connecting side (man 7 unix). The kernel fills it in; the peer cannot forge it. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export function peerCredentials(sock: Fd | number): PeerCredentials {
  const val = Buffer.alloc(12); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
  const len = Buffer.alloc(4);
  len.writeUInt32LE(val.length, 0);
  const fd = typeof sock === 'number' ? sock : sock.raw('getsockopt');
  check('getsockopt(SO_PEERCRED)', ffi.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, val, len));
  return { pid: val.readInt32LE(0), uid: val.readUInt32LE(4), gid: val.readUInt32LE(8) };
}

/** SO_SNDTIMEO and SO_RCVTIMEO: a send or receive that waits longer than `ms` fails with
 *  EAGAIN, so a peer that stops reading or writing cannot hold a threadpool thread for ever.
 *  0 waits without limit (the default). */
export function setWaitLimit(sock: Fd, ms: number): void {
  const whole = Math.max(0, Math.ceil(ms));
  const tv = Buffer.alloc(16); // struct timeval { time_t tv_sec; suseconds_t tv_usec; }
  tv.writeBigInt64LE(BigInt(Math.floor(whole / 1000)), 0);
  tv.writeBigInt64LE(BigInt((whole % 1000) * 1000), 8);
  for (const opt of [SO_SNDTIMEO, SO_RCVTIMEO]) check('setsockopt', ffi.setsockopt(sock.raw('setsockopt'), SOL_SOCKET, opt, tv));
}

/** shutdown(2) both directions: wakes a recvmsg blocked on another thread (close would not). */
export function shutdown(sock: Fd): void {
  check('shutdown', ffi.shutdown(sock.raw('shutdown'), 2 /* SHUT_RDWR */));
}

/** accept4(2) off the event loop; the new fd is close-on-exec. */
export async function accept(sock: Fd): Promise<Fd> {
  const { rc, errno } = await ffi.accept4Async(sock.raw('accept4'), SOCK_CLOEXEC);
  if (rc < 0) throw new SysError('accept4', errno);
  return new Fd(rc);
}

/** The path a UNIX socket is bound to ('@name' for abstract names, '' if unbound). */
export function localPath(sock: Fd): string {
  const addr = Buffer.alloc(2 + SUN_PATH_MAX);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(addr.length, 0);
  check('getsockname', ffi.getsockname(sock.raw('getsockname'), addr, len));
  const n = Math.min(len.readUInt32LE(0), addr.length);
  if (n <= 2) return '';
  if (addr[2] === 0) return '@' + addr.subarray(3, n).toString();
  const end = addr.indexOf(0, 2);
  return addr.subarray(2, end < 0 || end > n ? n : end).toString();
}

function sockoptInt(sock: Fd, name: number): number {
  const val = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4, 0);
  check('getsockopt', ffi.getsockopt(sock.raw('getsockopt'), SOL_SOCKET, name, val, len));
  return val.readInt32LE(0);
}

/** What an inherited fd is: a listening socket (socket activation), another socket, or a file
 *  (a stored backend fd). sd_is_socket(3) makes the same checks. */
export function classifyFd(fd: Fd): { kind: 'listening-socket' | 'socket' | 'file'; socketType?: number } {
  if ((fstat(fd).mode & S_IFMT) !== S_IFSOCK) return { kind: 'file' };
  const socketType = sockoptInt(fd, SO_TYPE);
  return { kind: sockoptInt(fd, SO_ACCEPTCONN) !== 0 ? 'listening-socket' : 'socket', socketType };
}

/** A msghdr with one data buffer, an optional destination and room for `maxFds` fds. */
function buildMessage(dataLen: number, maxFds: number, dest?: { addr: Buffer; len: number }): { block: ffi.NativeBlock; data: number; control: number; controlLen: number } {
  const controlLen = maxFds > 0 ? CMSG_HDR + align8(4 * maxFds) : 0;
  const nameOff = MSG.size + IOVEC_SIZE;
  const controlOff = align8(nameOff + (dest ? dest.addr.length : 0));
  const dataOff = controlOff + controlLen;
  const block = ffi.nativeAlloc(dataOff + Math.max(dataLen, 1));
  const b = block.bytes;
  const at = (off: number): bigint => block.addr + BigInt(off);
  if (dest) {
    dest.addr.copy(b, nameOff);
    b.writeBigUInt64LE(at(nameOff), MSG.name);
    b.writeUInt32LE(dest.len, MSG.namelen);
  }
  b.writeBigUInt64LE(at(MSG.size), MSG.iov);
  b.writeBigUInt64LE(1n, MSG.iovlen);
  b.writeBigUInt64LE(at(dataOff), MSG.size); // iov_base
  b.writeBigUInt64LE(BigInt(dataLen), MSG.size + 8); // iov_len
  if (controlLen > 0) {
    b.writeBigUInt64LE(at(controlOff), MSG.control);
    b.writeBigUInt64LE(BigInt(controlLen), MSG.controllen);
  }
  return { block, data: dataOff, control: controlOff, controlLen };
}

function fillRights(b: Buffer, control: number, fds: readonly Fd[]): void {
  b.writeBigUInt64LE(BigInt(CMSG_HDR + 4 * fds.length), control); // cmsg_len = CMSG_LEN(n)
  b.writeInt32LE(SOL_SOCKET, control + 8);
  b.writeInt32LE(SCM_RIGHTS, control + 12);
  fds.forEach((fd, i) => b.writeInt32LE(fd.raw('sendmsg'), control + CMSG_HDR + 4 * i));
}

function prepareSend(data: Buffer, fds: readonly Fd[], dest?: string): { block: ffi.NativeBlock } {
  if (fds.length > MAX_FDS_PER_MESSAGE) throw new RangeError(`at most ${MAX_FDS_PER_MESSAGE} fds per message`);
  const m = buildMessage(data.length, fds.length, dest === undefined ? undefined : sockaddrUn(dest));
  data.copy(m.block.bytes, m.data);
  if (fds.length > 0) {
    try {
      fillRights(m.block.bytes, m.control, fds);
    } catch (e) {
      m.block.free();
      throw e;
    }
  }
  return m;
}

/** sendmsg(2) of one message with `fds` as SCM_RIGHTS, to `dest` for unconnected datagram
 *  sockets. Synchronous: for datagrams to systemd, which never block for long. */
export function sendWithFds(sock: Fd, data: Buffer, fds: readonly Fd[] = [], dest?: string): number {
  const { block } = prepareSend(data, fds, dest);
  try {
    return check('sendmsg', ffi.sendmsg(sock.raw('sendmsg'), block.addr, MSG_NOSIGNAL));
  } finally {
    block.free();
  }
}

/** sendmsg(2) on the threadpool: for stream/seqpacket peers that may be slow to read. */
export async function sendWithFdsAsync(sock: Fd, data: Buffer, fds: readonly Fd[] = []): Promise<number> {
  const { block } = prepareSend(data, fds);
  try {
    const { rc, errno } = await ffi.sendmsgAsync(sock.raw('sendmsg'), block.addr, MSG_NOSIGNAL);
    if (rc < 0) throw new SysError('sendmsg', errno);
    return rc;
  } finally {
    block.free();
  }
}

export interface Received {
  data: Buffer;
  fds: Fd[];
}

/** The fds of the SCM_RIGHTS control messages recvmsg(2) filled in (control area at
 *  `control` of the message block `b`). */
function receivedFds(b: Buffer, control: number): Fd[] {
  const fds: Fd[] = [];
  const controlLen = Number(b.readBigUInt64LE(MSG.controllen));
  let off = control;
  while (off + CMSG_HDR <= control + controlLen) {
    const len = Number(b.readBigUInt64LE(off));
    if (len < CMSG_HDR) break;
    if (b.readInt32LE(off + 8) === SOL_SOCKET && b.readInt32LE(off + 12) === SCM_RIGHTS) {
      for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(new Fd(b.readInt32LE(p)));
    }
    off += align8(len);
  }
  return fds;
}

/** recvmsg(2) of one message on the threadpool, taking up to `maxFds` fds (close-on-exec). A
 *  message or fd list that did not fit is an error (EMSGSIZE), never silently cut; fds that did
 *  arrive with it are closed. Zero bytes and no fds means the peer closed. */
export async function receiveWithFds(sock: Fd, maxData: number, maxFds = MAX_FDS_PER_MESSAGE): Promise<Received> {
  const m = buildMessage(maxData, maxFds);
  try {
    const { rc, errno } = await ffi.recvmsgAsync(sock.raw('recvmsg'), m.block.addr, MSG_CMSG_CLOEXEC);
    if (rc < 0) throw new SysError('recvmsg', errno);
    const b = m.block.bytes;
    const fds = receivedFds(b, m.control);
    const flags = b.readInt32LE(MSG.flags);
    if (flags & (MSG_CTRUNC | MSG_TRUNC)) {
      for (const fd of fds) fd.close();
      throw new SysError('recvmsg', 90 /* EMSGSIZE */);
    }
    return { data: Buffer.from(b.subarray(m.data, m.data + rc)), fds };
  } finally {
    m.block.free();
  }
}

/** MSG_DONTWAIT: this one call does not block, whatever the socket's mode. */
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;

/** One nonblocking sendmsg(2) of `data` with `fds` as SCM_RIGHTS on a connected stream socket
 *  this process does not own as an Fd (a Node socket's handle: `sock` is its number). Returns
 *  the bytes the kernel took (the fds travel with the first of them), or 0 when the socket
 *  buffer is full (EAGAIN: nothing and no fd was sent). Never blocks the event loop. */
export function sendNow(sock: number, data: Buffer, fds: readonly Fd[]): number {
  const { block } = prepareSend(data, fds);
  try {
    const rc = ffi.sendmsg(sock, block.addr, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (rc < 0) {
      const e = ffi.errno();
      if (e === EAGAIN) return 0;
      throw new SysError('sendmsg', e);
    }
    return rc;
  } finally {
    block.free();
  }
}

/** What one nonblocking receive got. `bytes` empty and no fds: the peer closed its side. */
export interface Incoming {
  bytes: Buffer;
  fds: Fd[];
  /** MSG_CTRUNC: more fds came than `maxFds`; the kernel closed those that did not fit. */
  fdsCut: boolean;
}

/** A receive buffer reused by every receiveNow call (they run one at a time, on the event loop). */
let rx: { m: ReturnType<typeof buildMessage>; size: number; maxFds: number } | undefined;

/** One nonblocking recvmsg(2) (MSG_DONTWAIT, fds close-on-exec) of at most `maxBytes` and
 *  `maxFds` fds on a stream socket this process does not own as an Fd (a Node socket's).
 *  Returns undefined when nothing is there (EAGAIN). Never blocks the event loop. */
export function receiveNow(sock: number, maxBytes: number, maxFds: number): Incoming | undefined {
  if (!rx || rx.size !== maxBytes || rx.maxFds !== maxFds) {
    rx?.m.block.free();
    rx = { m: buildMessage(maxBytes, maxFds), size: maxBytes, maxFds };
  }
  const m = rx.m;
  const b = m.block.bytes;
  // The kernel rewrites controllen and flags: restore them before each call.
  b.writeBigUInt64LE(BigInt(m.controlLen), MSG.controllen);
  b.writeInt32LE(0, MSG.flags);
  const rc = ffi.recvmsg(sock, m.block.addr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (rc < 0) {
    const e = ffi.errno();
    if (e === EAGAIN) return undefined;
    throw new SysError('recvmsg', e);
  }
  const fds = receivedFds(b, m.control);
  const flags = b.readInt32LE(MSG.flags);
  return { bytes: Buffer.from(b.subarray(m.data, m.data + rc)), fds, fdsCut: (flags & MSG_CTRUNC) !== 0 };
}
