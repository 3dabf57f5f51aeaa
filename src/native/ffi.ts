// The koffi adapter: the one file in hostmemd that imports koffi. It declares each libc entry
// point once and gives it a typed TypeScript signature, so koffi's `any` stops here. Nothing
// in this file checks errors or owns resources; errno.ts, fd.ts, mapping.ts and libc.ts do.
// Facts: guest-memfd-facts.md §8 (koffi 3.3.4 on node 20) and §10.20-24 (koffi pitfalls).
import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';

const libc = koffi.load('libc.so.6');

type KoffiFunction = ReturnType<LibraryHandle['func']>;

/** The functions of `lib` named by their C prototypes, each declared on first use: koffi parses
 *  a prototype in tens of microseconds, and a start that greets first (issue 16) calls only a
 *  few of these before its greeting. */
function declareLazily<K extends string>(lib: LibraryHandle, protos: Record<K, string>): Record<K, KoffiFunction> {
  const fns = {} as Record<K, KoffiFunction>;
  for (const name of Object.keys(protos) as K[]) {
    Object.defineProperty(fns, name, {
      configurable: true,
      enumerable: true,
      get: () => {
        const fn = lib.func(protos[name]);
        Object.defineProperty(fns, name, { value: fn, enumerable: true });
        return fn;
      },
    });
  }
  return fns;
}

/** A raw address. koffi 3 represents every pointer as a BigInt (facts §10.20). */
export type Address = bigint;

/** mmap's failure value, (void *)-1: a BigInt, not null (facts §10.20, probes/out/koffi_fail.out). */
export const MAP_FAILED: Address = 0xffffffffffffffffn;

/** Memory koffi may pass straight to C as a pointer: a Buffer's bytes, or a raw address. */
export type PointerArg = Buffer | Address | null;

// Prototypes follow the glibc declarations on x86-64 (off_t is 64-bit, so int64_t; size_t is
// 64-bit). Variadic functions are declared variadic and called with (type, value) pairs; they
// have no .async (facts §8, probes/out/koffi_async.out), which only madvise needs here.
const f = declareLazily(libc, {
  close: 'int close(int fd)',
  open: 'int open(const char *path, int flags, ...)',
  openat: 'int openat(int dirfd, const char *path, int flags, ...)',
  unlinkat: 'int unlinkat(int dirfd, const char *path, int flags)',
  fcntl: 'int fcntl(int fd, int cmd, ...)',
  ioctl: 'int ioctl(int fd, unsigned long request, ...)',
  memfdCreate: 'int memfd_create(const char *name, unsigned int flags)',
  ftruncate: 'int ftruncate(int fd, int64_t length)',
  fallocate: 'int fallocate(int fd, int mode, int64_t offset, int64_t len)',
  fstat: 'int fstat(int fd, void *statbuf)',
  fstatfs: 'int fstatfs(int fd, void *buf)',
  shmOpen: 'int shm_open(const char *name, int oflag, uint32_t mode)',
  shmUnlink: 'int shm_unlink(const char *name)',
  mkfifo: 'int mkfifo(const char *path, uint32_t mode)',
  mmap: 'void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)',
  munmap: 'int munmap(void *addr, size_t length)',
  madvise: 'int madvise(void *addr, size_t length, int advice)',
  mincore: 'int mincore(void *addr, size_t length, void *vec)',
  syscall: 'long syscall(long number, ...)',
  memcpy: 'void *memcpy(void *dest, const void *src, size_t n)',
  getpagesize: 'int getpagesize()',
  sysconf: 'long sysconf(int name)',
  getrlimit: 'int getrlimit(int resource, void *rlim)',
  prctl: 'int prctl(int option, ...)',
  getppid: 'int getppid()',
  setrlimit: 'int setrlimit(int resource, const void *rlim)',
  dup2: 'int dup2(int oldfd, int newfd)',
  close_range: 'int close_range(unsigned int first, unsigned int last, int flags)',
  execve: 'int execve(const char *path, const char **argv, const char **envp)',
  exit: 'void _exit(int status)',
  signal: 'void *signal(int sig, void *handler)',
  strerror: 'const char *strerror(int errnum)',
  socket: 'int socket(int domain, int type, int protocol)',
  socketpair: 'int socketpair(int domain, int type, int protocol, void *sv)',
  bind: 'int bind(int fd, const void *addr, uint32_t addrlen)',
  listen: 'int listen(int fd, int backlog)',
  connect: 'int connect(int fd, const void *addr, uint32_t addrlen)',
  accept4: 'int accept4(int fd, void *addr, void *addrlen, int flags)',
  sendmsg: 'long sendmsg(int fd, void *msg, int flags)',
  recvmsg: 'long recvmsg(int fd, void *msg, int flags)',
  shutdown: 'int shutdown(int fd, int how)',
  getsockname: 'int getsockname(int fd, void *addr, void *addrlen)',
  getsockopt: 'int getsockopt(int fd, int level, int optname, void *optval, void *optlen)',
  setsockopt: 'int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)',
  newlocale: 'void *newlocale(int category_mask, const char *locale, void *base)',
  strerrorL: 'const char *strerror_l(int errnum, void *locale)',
});

/** errno of the calling thread. Read it right after the failing call, before any other FFI call
 *  (facts §10.21); inside an .async callback koffi restores the worker's errno. */
export function errno(): number {
  return koffi.errno();
}

/** Sets errno (tests only need it to make "errno was stale" visible). */
export function setErrno(value: number): void {
  koffi.errno(value);
}

export const close = (fd: number): number => f.close(fd);
export const open = (path: string, flags: number, mode: number): number => f.open(path, flags, 'uint32_t', mode);
export const openat = (dirfd: number, path: string, flags: number, mode: number): number => f.openat(dirfd, path, flags, 'uint32_t', mode);
export const unlinkat = (dirfd: number, path: string, flags: number): number => f.unlinkat(dirfd, path, flags);
/** openat2(2) through syscall(2) (glibc 2.36 has no wrapper): `how` is a struct open_how of
 *  OPEN_HOW_SIZE bytes, passed in place. */
export function openat2(dirfd: number, path: string, how: Buffer): number {
  const rc: number | bigint = f.syscall(SYS_OPENAT2, 'int', dirfd, 'const char *', path, 'void *', how, 'size_t', how.length);
  return Number(rc);
}
/** x86-64 syscall number of openat2 (syscall_64.tbl: 437 common openat2). */
const SYS_OPENAT2 = 437;
/** fcntl(fd, cmd, int arg): every command used here takes an int (or ignores the argument). */
export const fcntl = (fd: number, cmd: number, arg: number): number => f.fcntl(fd, cmd, 'int', arg);
/** ioctl with an integer argument (KVM_CREATE_VM type, KVM_CHECK_EXTENSION cap). Request numbers
 *  above 2^31 (0xc040aed4) need `unsigned long` (facts §10.22). */
export const ioctlInt = (fd: number, request: number, arg: number | bigint): number => f.ioctl(fd, request, 'unsigned long', arg);
/** ioctl with a pointer argument. A Buffer is passed in place, so the kernel's writes (_IOWR)
 *  land in it (facts §10.23: never a JS object for in/out structs). */
export const ioctlPtr = (fd: number, request: number, arg: PointerArg): number => f.ioctl(fd, request, 'void *', arg);
export const memfdCreate = (name: string, flags: number): number => f.memfdCreate(name, flags);
export const mkfifo = (path: string, mode: number): number => f.mkfifo(path, mode);
export const ftruncate = (fd: number, length: bigint): number => f.ftruncate(fd, length);
export const fallocate = (fd: number, mode: number, offset: bigint, len: bigint): number => f.fallocate(fd, mode, offset, len);
export const fstat = (fd: number, buf: Buffer): number => f.fstat(fd, buf);
export const fstatfs = (fd: number, buf: Buffer): number => f.fstatfs(fd, buf);
export const shmOpen = (name: string, oflag: number, mode: number): number => f.shmOpen(name, oflag, mode);
export const shmUnlink = (name: string): number => f.shmUnlink(name);

/** mmap(NULL, ...). Returns MAP_FAILED on failure; koffi gives null only for address 0. */
export function mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): Address {
  const p: Address | null = f.mmap(null, length, prot, flags, fd, offset);
  return p === null ? 0n : BigInt(p);
}
export const munmap = (addr: Address, length: bigint): number => f.munmap(addr, length);
export const madvise = (addr: Address, length: bigint, advice: number): number => f.madvise(addr, length, advice);
export const mincore = (addr: Address, length: bigint, vec: Buffer): number => f.mincore(addr, length, vec);

/** madvise(2) on libuv's threadpool (napi async work, koffi src/call.cc). Resolves with the
 *  return value and the worker thread's errno, captured by koffi right after the call. */
export function madviseAsync(addr: Address, length: bigint, advice: number): Promise<{ rc: number; errno: number }> {
  return new Promise((resolve, reject) => {
    try {
      f.madvise.async(addr, length, advice, (err: unknown, rc: number) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve({ rc, errno: rc < 0 ? koffi.errno() : 0 });
      });
    } catch (e) {
      // koffi throws synchronously when more than max_async_calls (256) are queued.
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}

/** mbind(2) through syscall(2): glibc has no wrapper (it is in libnuma). */
export function mbind(addr: Address, length: bigint, mode: number, nodemask: Buffer | null, maxnode: bigint, flags: number): number {
  const rc: number | bigint = f.syscall(SYS_MBIND, 'void *', addr, 'unsigned long', length, 'int', mode, 'void *', nodemask, 'unsigned long', maxnode, 'unsigned int', flags);
  return Number(rc);
}
/** x86-64 syscall number of mbind (arch/x86/entry/syscalls/syscall_64.tbl: 237 common mbind). */
const SYS_MBIND = 237;

/** memcpy between a Buffer and raw memory (either direction). No 4 GiB view limit (facts §10.24). */
export const memcpy = (dest: PointerArg, src: PointerArg, n: number): void => {
  f.memcpy(dest, src, n);
};
export const getpagesize = (): number => f.getpagesize();
export const sysconf = (name: number): number => Number(f.sysconf(name));
export const getrlimit = (resource: number, buf: Buffer): number => f.getrlimit(resource, buf);
/** prctl(option, unsigned long arg2): the options used here take one integer argument. */
export const prctl = (option: number, arg: number): number => f.prctl(option, 'unsigned long', arg);
/** prctl(PR_GET_PDEATHSIG, int *sig). */
export const prctlPtr = (option: number, arg: Buffer): number => f.prctl(option, 'void *', arg);
export const getppid = (): number => f.getppid();
export const setrlimit = (resource: number, buf: Buffer): number => f.setrlimit(resource, buf);

// ---- exec (hostmemd-run: native/exec.ts) ------------------------------------------------------
export const dup2 = (oldfd: number, newfd: number): number => f.dup2(oldfd, newfd);
/** close_range(2) (Linux 5.9; CLOSE_RANGE_CLOEXEC 5.11): one call over a whole range of fd
 *  numbers, so an fd another thread opens meanwhile cannot slip through. */
export const closeRange = (first: number, last: number, flags: number): number => f.close_range(first, last, flags);
/** execve(2). koffi turns each JS array into a C array of C strings; the arrays end with null,
 *  which becomes the NULL terminator execve needs. Returns only on failure (-1). */
export const execve = (path: string, argv: (string | null)[], envp: (string | null)[]): number => f.execve(path, argv, envp);
/** _exit(2): ends the process at once, without atexit handlers or Node's teardown. */
export const exitNow = (status: number): void => {
  f.exit(status);
};
/** signal(sig, SIG_DFL): SIG_DFL is the null handler. */
export const signalDefault = (sig: number): void => {
  f.signal(sig, null);
};

// ---- sockets (sd_notify, fd passing: guest-memfd-facts §6.10) -------------------------------
export const socket = (domain: number, type: number, protocol: number): number => f.socket(domain, type, protocol);
export const socketpair = (domain: number, type: number, protocol: number, sv: Buffer): number => f.socketpair(domain, type, protocol, sv);
export const bind = (fd: number, addr: Buffer, len: number): number => f.bind(fd, addr, len);
export const listen = (fd: number, backlog: number): number => f.listen(fd, backlog);
export const connect = (fd: number, addr: Buffer, len: number): number => f.connect(fd, addr, len);
export const shutdown = (fd: number, how: number): number => f.shutdown(fd, how);
export const getsockname = (fd: number, addr: Buffer, len: Buffer): number => f.getsockname(fd, addr, len);
export const getsockopt = (fd: number, level: number, name: number, val: Buffer, len: Buffer): number => f.getsockopt(fd, level, name, val, len);
export const setsockopt = (fd: number, level: number, name: number, val: Buffer): number => f.setsockopt(fd, level, name, val, val.length);
/** sendmsg/recvmsg take a msghdr whose pointers the kernel follows, so it lives in native memory
 *  (a NativeBlock), never in a koffi temporary (facts §10.23). */
export const sendmsg = (fd: number, msg: Address, flags: number): number => Number(f.sendmsg(fd, msg, flags));
export const recvmsg = (fd: number, msg: Address, flags: number): number => Number(f.recvmsg(fd, msg, flags));

/** Runs a fixed-prototype call on libuv's threadpool (it may block: accept, recvmsg, sendmsg on
 *  a full socket), resolving with the return value and that worker's errno. */
function onPool(fn: { async: (...a: unknown[]) => void }, args: unknown[]): Promise<{ rc: number; errno: number }> {
  return new Promise((resolve, reject) => {
    try {
      fn.async(...args, (err: unknown, rc: number | bigint) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve({ rc: Number(rc), errno: Number(rc) < 0 ? koffi.errno() : 0 });
      });
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}
// ---- readiness in Node's own event loop (the UNIX transport's reader: poller.ts) -----------
// libuv's uv_poll, called in the node binary itself (it exports libuv for addons): the main
// loop's epoll watches a socket for input without reading it, and calls back on the loop
// thread, as it does for Node's own sockets. No thread is involved.
const node = koffi.load(null);
const uv = declareLazily(node, {
  defaultLoop: 'void *uv_default_loop()',
  handleSize: 'size_t uv_handle_size(int type)',
  pollInit: 'int uv_poll_init(void *loop, void *handle, int fd)',
  pollStart: 'int uv_poll_start(void *handle, int events, void *cb)',
  pollStop: 'int uv_poll_stop(void *handle)',
  close: 'void uv_close(void *handle, void *cb)',
  strerror: 'const char *uv_strerror(int err)',
});
/** uv_handle_type UV_POLL (uv.h). */
const UV_POLL = 8;
/** uv_poll_event: UV_READABLE | UV_DISCONNECT. */
export const UV_READABLE = 1;
export const UV_DISCONNECT = 4;

type PollCallback = (status: number, events: number) => void;
const pollCallbacks = new Map<Address, PollCallback>();
const closeCallbacks = new Map<Address, () => void>();
// One registered callback of each kind for all handles: they find theirs by address. A throw
// must not unwind through libuv's C frames: it is rethrown on the next turn instead.
const rethrow = (e: unknown): void => {
  setImmediate(() => {
    throw e;
  });
};
type Registered = ReturnType<typeof koffi.register>;
// Registered when the first handle is started, not at load (a start greets first, issue 16).
let onPollCb: Registered | undefined;
let onCloseCb: Registered | undefined;
const onPoll = (): Registered =>
  (onPollCb ??= koffi.register(
    (handle: Address, status: number, events: number) => {
      try {
        pollCallbacks.get(BigInt(handle))?.(status, events);
      } catch (e) {
        rethrow(e);
      }
    },
    koffi.pointer(koffi.proto('void (void *handle, int status, int events)')),
  ));
const onClose = (): Registered =>
  (onCloseCb ??= koffi.register(
    (handle: Address) => {
      const key = BigInt(handle);
      const then = closeCallbacks.get(key);
      closeCallbacks.delete(key);
      koffi.free(key);
      try {
        then?.();
      } catch (e) {
        rethrow(e);
      }
    },
    koffi.pointer(koffi.proto('void (void *handle)')),
  ));

/** A uv_poll handle on `fd` in Node's main loop; its memory lives until uvPollClose's callback. */
export function uvPollOpen(fd: number, cb: PollCallback): { handle: Address; rc: number } {
  const handle = BigInt(koffi.alloc('uint8_t', Number(uv.handleSize(UV_POLL))) as bigint);
  const rc: number = uv.pollInit(uv.defaultLoop(), handle, fd);
  if (rc < 0) {
    koffi.free(handle);
    return { handle: 0n, rc };
  }
  pollCallbacks.set(handle, cb);
  return { handle, rc };
}
export const uvPollStart = (handle: Address, events: number): number => uv.pollStart(handle, events, onPoll());
export const uvPollStop = (handle: Address): number => uv.pollStop(handle);
/** Stops and closes the handle; `then` runs once libuv is done with it (its fd may be closed
 *  then, not before). */
export function uvPollClose(handle: Address, then: () => void): void {
  pollCallbacks.delete(handle);
  closeCallbacks.set(handle, then);
  uv.close(handle, onClose());
}
/** libuv's text for a negative UV_E* code. */
export const uvStrerror = (err: number): string => uv.strerror(err) ?? `libuv error ${err}`;

export const accept4Async = (fd: number, flags: number): Promise<{ rc: number; errno: number }> => onPool(f.accept4, [fd, null, null, flags]);
export const sendmsgAsync = (fd: number, msg: Address, flags: number): Promise<{ rc: number; errno: number }> => onPool(f.sendmsg, [fd, msg, flags]);
export const recvmsgAsync = (fd: number, msg: Address, flags: number): Promise<{ rc: number; errno: number }> => onPool(f.recvmsg, [fd, msg, flags]);

/** Native memory with a Buffer alias over it (the alias must not be used after free()). */
export interface NativeBlock {
  readonly addr: Address;
  readonly bytes: Buffer;
  free(): void;
}
export function nativeAlloc(size: number): NativeBlock {
  const addr = BigInt(koffi.alloc('uint8_t', size) as bigint);
  const bytes = Buffer.from(koffi.view(addr, size) as ArrayBuffer);
  bytes.fill(0);
  let freed = false;
  return {
    addr,
    bytes,
    free: () => {
      if (!freed) koffi.free(addr);
      freed = true;
    },
  };
}

/** glibc's message for `errnum` in the C locale (English, as QEMU prints it under LANG=C), so
 *  the daemon's texts do not depend on the environment's locale. */
export function strerrorC(errnum: number): string {
  if (cLocale === undefined) {
    // LC_MESSAGES_MASK = 1 << LC_MESSAGES (5) in glibc's <locale.h>.
    const loc: Address | null = f.newlocale(1 << 5, 'C', null);
    cLocale = loc === null ? null : loc;
  }
  const text: string | null = cLocale === null ? f.strerror(errnum) : f.strerrorL(errnum, cLocale);
  return text ?? `Unknown error ${errnum}`;
}
let cLocale: Address | null | undefined;

/** Byte layout of a C struct, computed by koffi from its member types (the koffi struct is
 *  anonymous: named koffi types are process-global and jest loads this module once per file). */
export interface Layout {
  size: number;
  offset(member: string): number;
}

/** Member types are koffi type strings, or [type, count] for fixed arrays. */
export function layout(members: Record<string, string | [string, number]>): Layout {
  const def: Parameters<typeof koffi.struct>[0] = {};
  for (const [name, t] of Object.entries(members)) def[name] = typeof t === 'string' ? t : koffi.array(t[0], t[1]);
  const type = koffi.struct(def);
  return { size: koffi.sizeof(type), offset: (m) => koffi.offsetof(type, m) };
}
