// Typed libc wrappers for the memory backends: each makes one call, reads errno at once and
// throws SysError, takes and returns Fd/Mapping objects, and passes 64-bit sizes and offsets
// as bigint with C's own conversions (off_t wraps like a C cast, so QEMU's errnos reproduce).
// The numeric constants live in constants.ts and are re-exported from here.
import * as ffi from './ffi';
import { check, SysError } from './errno';
import { Fd } from './fd';
import { adoptMapping, Mapping, NodeMask } from './mapping';
import { HUGETLBFS_MAGIC, F_ADD_SEALS, F_GET_SEALS, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, PR_GET_PDEATHSIG, PR_SET_PDEATHSIG, _SC_NPROCESSORS_ONLN } from './constants';

export * from './constants';

/** off_t and loff_t arguments: a C cast to a signed 64-bit value. */
const off = (v: bigint): bigint => BigInt.asIntN(64, v);
/** size_t arguments: a C cast to an unsigned 64-bit value. */
const size = (v: bigint): bigint => BigInt.asUintN(64, v);

// ---- file descriptors -------------------------------------------------------------------------

/** memfd_create(2): an anonymous file shown as "/memfd:NAME (deleted)". */
export function memfdCreate(name: string, flags: number): Fd {
  return new Fd(check('memfd_create', ffi.memfdCreate(name, flags)));
}

/** open(2). `mode` is used with O_CREAT (and O_TMPFILE). */
export function open(path: string, flags: number, mode = 0): Fd {
  return new Fd(check('open', ffi.open(path, flags, mode)));
}
/** The name the backends use for open(2). */
export const openFile = open;

/** Same as fd.close(): idempotent. */
export function close(fd: Fd): void {
  fd.close();
}

/** shm_open(3). glibc opens /dev/shm/NAME with O_NOFOLLOW|O_CLOEXEC added (man 3 shm_open:
 *  "The FD_CLOEXEC flag is set for the file descriptor"). */
export function shmOpen(name: string, oflag: number, mode: number): Fd {
  return new Fd(check('shm_open', ffi.shmOpen(name, oflag, mode)));
}

export function shmUnlink(name: string): void {
  check('shm_unlink', ffi.shmUnlink(name));
}

/** mkfifo(3): Node has no way to make a FIFO. Used by the tests that plant one where hostmemd
 *  must never block on it (journal entries, mem-path). */
export function mkfifo(path: string, mode: number): void {
  check('mkfifo', ffi.mkfifo(path, mode));
}

export function ftruncate(fd: Fd, length: bigint): void {
  check('ftruncate', ffi.ftruncate(fd.raw('ftruncate'), off(length)));
}

/** fcntl(F_ADD_SEALS): needs a memfd created with MFD_ALLOW_SEALING (else EPERM). */
export function addSeals(fd: Fd, seals: number): void {
  check('fcntl(F_ADD_SEALS)', ffi.fcntl(fd.raw('fcntl(F_ADD_SEALS)'), F_ADD_SEALS, seals));
}

export function getSeals(fd: Fd): number {
  return check('fcntl(F_GET_SEALS)', ffi.fcntl(fd.raw('fcntl(F_GET_SEALS)'), F_GET_SEALS, 0));
}

/** fallocate(2) with any mode (FALLOC_FL_*). guest_memfd needs FALLOC_FL_KEEP_SIZE (facts §6.3). */
export function fallocate(fd: Fd, mode: number, offset: bigint, len: bigint): void {
  check('fallocate', ffi.fallocate(fd.raw('fallocate'), mode, off(offset), off(len)));
}

/** Frees [offset, offset+len) of the file, keeping its size (QEMU's discard-data, ballooning). */
export function fallocatePunchHole(fd: Fd, offset: bigint, len: bigint): void {
  fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
}

/** struct stat on x86-64 (<asm/stat.h>): 144 bytes. */
const STAT = ffi.layout({
  st_dev: 'uint64_t', st_ino: 'uint64_t', st_nlink: 'uint64_t', st_mode: 'uint32_t', st_uid: 'uint32_t', st_gid: 'uint32_t', __pad0: 'int',
  st_rdev: 'uint64_t', st_size: 'int64_t', st_blksize: 'int64_t', st_blocks: 'int64_t', st_times: ['int64_t', 6], __unused: ['int64_t', 3],
});

export interface Stat {
  dev: bigint;
  ino: bigint;
  /** File type and permission bits (S_IFMT, 0o7777). */
  mode: number;
  nlink: bigint;
  uid: number;
  gid: number;
  size: bigint;
  blksize: number;
  /** 512-byte blocks allocated; always 0 for guest_memfd (facts §6.2). */
  blocks: bigint;
}

export function fstat(fd: Fd): Stat {
  const b = Buffer.alloc(STAT.size);
  check('fstat', ffi.fstat(fd.raw('fstat'), b));
  return {
    dev: b.readBigUInt64LE(STAT.offset('st_dev')),
    ino: b.readBigUInt64LE(STAT.offset('st_ino')),
    mode: b.readUInt32LE(STAT.offset('st_mode')),
    nlink: b.readBigUInt64LE(STAT.offset('st_nlink')),
    uid: b.readUInt32LE(STAT.offset('st_uid')),
    gid: b.readUInt32LE(STAT.offset('st_gid')),
    size: b.readBigInt64LE(STAT.offset('st_size')),
    blksize: Number(b.readBigInt64LE(STAT.offset('st_blksize'))),
    blocks: b.readBigInt64LE(STAT.offset('st_blocks')),
  };
}

/** st_blksize; for a hugetlb memfd it is the huge page size (QEMU's qemu_fd_getpagesize). */
export function fstatBlockSize(fd: Fd): number {
  return fstat(fd).blksize;
}

/** struct statfs on x86-64 (<asm-generic/statfs.h> with 64-bit longs): 120 bytes. */
const STATFS = ffi.layout({
  f_type: 'int64_t', f_bsize: 'int64_t', f_blocks: 'uint64_t', f_bfree: 'uint64_t', f_bavail: 'uint64_t', f_files: 'uint64_t', f_ffree: 'uint64_t',
  f_fsid: ['int32_t', 2], f_namelen: 'int64_t', f_frsize: 'int64_t', f_flags: 'int64_t', f_spare: ['int64_t', 4],
});

/** fstatfs(2): the filesystem type (f_type, <linux/magic.h>) and its block size. */
export function fstatfs(fd: Fd): { type: number; bsize: number } {
  const b = Buffer.alloc(STATFS.size);
  check('fstatfs', ffi.fstatfs(fd.raw('fstatfs'), b));
  return { type: Number(b.readBigInt64LE(STATFS.offset('f_type'))), bsize: Number(b.readBigInt64LE(STATFS.offset('f_bsize'))) };
}

/** The page size of the memory behind `fd`: f_bsize on hugetlbfs, else the base page size
 *  (QEMU's qemu_fd_getpagesize, util/oslib-posix.c). */
export function fdPageSize(fd: Fd): number {
  const s = fstatfs(fd);
  return s.type === HUGETLBFS_MAGIC ? s.bsize : PAGE_SIZE;
}

// ---- memory -----------------------------------------------------------------------------------

/** mmap(2) at an address the kernel picks. `fd` undefined means MAP_ANONYMOUS memory (pass
 *  MAP_ANONYMOUS in `flags` too). MAP_FAILED becomes a SysError. */
export function mmap(length: bigint, prot: number, flags: number, fd?: Fd | null, offset = 0n): Mapping {
  const n = fd ? fd.raw('mmap') : -1;
  const addr = ffi.mmap(size(length), prot, flags, n, off(offset));
  if (addr === ffi.MAP_FAILED) throw new SysError('mmap', ffi.errno());
  return adoptMapping(addr, length, prot, flags);
}

/** Same as m.unmap(): idempotent. */
export function munmap(m: Mapping): void {
  m.unmap();
}

/** Same as m.madvise(). */
export function madvise(m: Mapping, advice: number, offset?: bigint, len?: bigint): void {
  m.madvise(advice, offset, len);
}

/** Same as m.mbind(). */
export function mbind(m: Mapping, mode: number, nodemask: NodeMask, maxnode: number, flags: number, offset?: bigint, len?: bigint): void {
  m.mbind(mode, nodemask, maxnode, flags, offset, len);
}

const PAGE_SIZE = ffi.getpagesize();

/** getpagesize(2): the base page size (4096 on x86-64). */
export function getpagesize(): number {
  return PAGE_SIZE;
}
/** The name the backends use for getpagesize(). */
export const pageSize = getpagesize;

// ---- process ----------------------------------------------------------------------------------

/** sysconf(3). -1 means an invalid name (EINVAL) or, with errno untouched, "no limit"; both are
 *  told apart by clearing errno first (man 3 sysconf, RETURN VALUE). */
export function sysconf(name: number): number {
  ffi.setErrno(0);
  const v = ffi.sysconf(name);
  if (v === -1 && ffi.errno() !== 0) throw new SysError('sysconf', ffi.errno());
  return v;
}

/** CPUs online now: QEMU's preallocation thread cap (qemu-facts §5.6). */
export function onlineCpus(): number {
  return Math.max(1, sysconf(_SC_NPROCESSORS_ONLN));
}

/** A resource limit; RLIM_INFINITY is 2^64-1. */
export interface RLimit {
  cur: bigint;
  max: bigint;
}

/** struct rlimit (<asm-generic/resource.h>): two unsigned longs. */
const RLIMIT = ffi.layout({ rlim_cur: 'uint64_t', rlim_max: 'uint64_t' });

export function getrlimit(resource: number): RLimit {
  const b = Buffer.alloc(RLIMIT.size);
  check('getrlimit', ffi.getrlimit(resource, b));
  return { cur: b.readBigUInt64LE(RLIMIT.offset('rlim_cur')), max: b.readBigUInt64LE(RLIMIT.offset('rlim_max')) };
}

export function setrlimit(resource: number, limit: RLimit): void {
  const b = Buffer.alloc(RLIMIT.size);
  b.writeBigUInt64LE(size(limit.cur), RLIMIT.offset('rlim_cur'));
  b.writeBigUInt64LE(size(limit.max), RLIMIT.offset('rlim_max'));
  check('setrlimit', ffi.setrlimit(resource, b));
}

/** prctl(PR_SET_PDEATHSIG): the kernel sends `signal` to this process when the thread that
 *  forked it dies (man 2 prctl). Set after the fork, so a parent already gone is missed:
 *  compare getppid() afterwards. */
export function setParentDeathSignal(signal: number): void {
  check('prctl(PR_SET_PDEATHSIG)', ffi.prctl(PR_SET_PDEATHSIG, signal));
}

/** prctl(PR_GET_PDEATHSIG): the signal set, 0 for none. */
export function parentDeathSignal(): number {
  const b = Buffer.alloc(4);
  check('prctl(PR_GET_PDEATHSIG)', ffi.prctlPtr(PR_GET_PDEATHSIG, b));
  return b.readInt32LE(0);
}

/** getppid(2), asked of the kernel each time (Node's process.ppid is read once at start). */
export function getppid(): number {
  return ffi.getppid();
}
