// libc and KVM through koffi: the only module in hostmemd that imports koffi. Every wrapper
// reads errno right after its call and throws SysError; fds and mappings come back as objects
// with idempotent close()/unmap(); 64-bit sizes are bigint; raw pointers never leave this file.
// Long calls (MADV_POPULATE_WRITE over gigabytes) run on libuv's threadpool via koffi's async.
// Facts: ../shared/reference/guest-memfd-facts.md §3, §4, §8, §10; man pages as cited.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

const c = {
  strerror: libc.func('const char *strerror(int errnum)'),
  close: libc.func('int close(int fd)'),
  open: libc.func('int open(const char *path, int flags, ...)'),
  memfd_create: libc.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: libc.func('int ftruncate(int fd, int64_t length)'),
  fcntl: libc.func('int fcntl(int fd, int cmd, ...)'),
  shm_open: libc.func('int shm_open(const char *name, int oflag, uint32_t mode)'),
  shm_unlink: libc.func('int shm_unlink(const char *name)'),
  mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)'),
  munmap: libc.func('int munmap(void *addr, size_t len)'),
  madvise: libc.func('int madvise(void *addr, size_t len, int advice)'),
  mincore: libc.func('int mincore(void *addr, size_t len, _Out_ uint8_t *vec)'),
  syscall: libc.func('long syscall(long number, ...)'),
  fallocate: libc.func('int fallocate(int fd, int mode, int64_t off, int64_t len)'),
  fstat: libc.func('int fstat(int fd, _Out_ uint8_t *buf)'),
  fstatfs: libc.func('int fstatfs(int fd, _Out_ uint8_t *buf)'),
  getpagesize: libc.func('int getpagesize()'),
  ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
  memcpyOut: libc.func('void *memcpy(_Out_ uint8_t *dst, void *src, size_t n)'),
  memcpyIn: libc.func('void *memcpy(void *dst, const uint8_t *src, size_t n)'),
};

const MAP_FAILED = 0xffffffffffffffffn;

/** A failed system call: errno, its name, the call, and glibc's strerror text (used verbatim in
 *  QEMU-compatible messages such as "...: Invalid argument"). */
export class SysError extends Error {
  constructor(
    readonly syscall: string,
    readonly errno: number,
  ) {
    const text = strerror(errno);
    super(`${syscall}: ${text}`);
    this.name = 'SysError';
    this.strerror = text;
    this.code = ERRNO_NAMES[errno] ?? `E${errno}`;
  }
  readonly strerror: string;
  readonly code: string;
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 9: 'EBADF', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST',
  19: 'ENODEV', 22: 'EINVAL', 23: 'ENFILE', 24: 'EMFILE', 25: 'ENOTTY', 27: 'EFBIG', 28: 'ENOSPC', 38: 'ENOSYS', 95: 'EOPNOTSUPP',
};

function strerror(errno: number): string {
  return c.strerror(errno) as string;
}

/** Throws SysError if rc < 0; errno is read before any other FFI call (facts §10.21). */
function check(syscall: string, rc: number): number {
  if (rc < 0) throw new SysError(syscall, koffi.errno());
  return rc;
}

/** An owned file descriptor. close() is idempotent. */
export class Fd {
  private open = true;
  constructor(readonly fd: number) {}
  get isOpen(): boolean {
    return this.open;
  }
  close(): void {
    if (!this.open) return;
    this.open = false;
    c.close(this.fd);
  }
}

// Constants (linux uapi headers; man 2 memfd_create, mmap, madvise, fcntl, mbind).
export const O_RDONLY = 0, O_RDWR = 2, O_CREAT = 0o100, O_EXCL = 0o200, O_CLOEXEC = 0o2000000;
export const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2, MFD_HUGETLB = 4, MFD_HUGE_SHIFT = 26;
export const F_ADD_SEALS = 1033, F_GET_SEALS = 1034;
export const F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
export const PROT_READ = 1, PROT_WRITE = 2;
export const MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
export const MADV_REMOVE = 9, MADV_MERGEABLE = 12, MADV_UNMERGEABLE = 13, MADV_DONTDUMP = 16, MADV_DODUMP = 17, MADV_POPULATE_WRITE = 23;
export const MPOL_MF_STRICT = 1, MPOL_MF_MOVE = 2;
export const FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;
const SYS_mbind = 237; // x86-64
const HUGETLBFS_MAGIC = 0x958458f6;

const PAGE_SIZE = c.getpagesize() as number;
export function pageSize(): number {
  return PAGE_SIZE;
}

export function memfdCreate(name: string, flags: number): Fd {
  return new Fd(check('memfd_create', c.memfd_create(name, flags) as number));
}

export function ftruncate(fd: Fd, size: bigint): void {
  check('ftruncate', c.ftruncate(fd.fd, size) as number);
}

export function addSeals(fd: Fd, seals: number): void {
  check('fcntl', c.fcntl(fd.fd, F_ADD_SEALS, 'int', seals) as number);
}

export function getSeals(fd: Fd): number {
  return check('fcntl', c.fcntl(fd.fd, F_GET_SEALS, 'int', 0) as number);
}

export function shmOpen(name: string, oflag: number, mode: number): Fd {
  return new Fd(check('shm_open', c.shm_open(name, oflag | O_CLOEXEC, mode) as number));
}

export function shmUnlink(name: string): void {
  check('shm_unlink', c.shm_unlink(name) as number);
}

export function openFile(path: string, flags: number, mode: number): Fd {
  return new Fd(check('open', c.open(path, flags, 'uint32_t', mode) as number));
}

/** fstat: st_mode, st_size, st_blksize (x86-64 struct stat, 144 bytes). */
export function fstat(fd: Fd): { mode: number; size: bigint; blksize: number } {
  const buf = Buffer.alloc(144);
  check('fstat', c.fstat(fd.fd, buf) as number);
  return { mode: buf.readUInt32LE(24), size: buf.readBigInt64LE(48), blksize: Number(buf.readBigInt64LE(56)) };
}

/** The memory page size behind an fd: the huge page size on hugetlbfs, else the base page. */
export function fdPageSize(fd: Fd): number {
  const buf = Buffer.alloc(120);
  check('fstatfs', c.fstatfs(fd.fd, buf) as number);
  const type = Number(buf.readBigInt64LE(0));
  return type === HUGETLBFS_MAGIC ? Number(buf.readBigInt64LE(8)) : PAGE_SIZE;
}

/** st_blksize of a hugetlb memfd is its huge page size. */
export function fstatBlockSize(fd: Fd): number {
  return fstat(fd).blksize;
}

export function fallocatePunchHole(fd: Fd, offset: bigint, len: bigint): void {
  check('fallocate', c.fallocate(fd.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len) as number);
}

/** A memory mapping. The address stays inside native/; unmap() is idempotent. */
export class Mapping {
  private mapped = true;
  constructor(
    private readonly addr: bigint,
    readonly length: bigint,
  ) {}

  get isMapped(): boolean {
    return this.mapped;
  }

  private ensure(): void {
    if (!this.mapped) throw new Error('mapping already unmapped');
  }

  madvise(advice: number, offset = 0n, len = this.length - offset): void {
    this.ensure();
    check('madvise', c.madvise(this.addr + offset, len, advice) as number);
  }

  /** mbind(2) through syscall(2): libc has no wrapper. `mask` holds node bits 0..127. */
  mbind(mode: number, mask: bigint, maxnode: number, flags: number): void {
    this.ensure();
    const nodemask = Buffer.alloc(16);
    nodemask.writeBigUInt64LE(mask & 0xffffffffffffffffn, 0);
    nodemask.writeBigUInt64LE(mask >> 64n, 8);
    const rc = c.syscall(SYS_mbind, 'void *', this.addr, 'size_t', this.length, 'int', mode, 'uint8_t *', nodemask, 'unsigned long', maxnode, 'unsigned int', flags) as number | bigint;
    check('mbind', Number(rc));
  }

  /** Resident bytes, from mincore(2). */
  residentBytes(): bigint {
    this.ensure();
    const pages = Number(this.length / BigInt(PAGE_SIZE));
    const vec = Buffer.alloc(pages);
    check('mincore', c.mincore(this.addr, this.length, vec) as number);
    let n = 0;
    for (let i = 0; i < pages; i++) n += vec[i] & 1;
    return BigInt(n) * BigInt(PAGE_SIZE);
  }

  read(offset: number, len: number): Buffer {
    this.ensure();
    if (BigInt(offset + len) > this.length) throw new RangeError('read beyond the mapping');
    const out = Buffer.alloc(len);
    c.memcpyOut(out, this.addr + BigInt(offset), len);
    return out;
  }

  write(offset: number, data: Buffer): void {
    this.ensure();
    if (BigInt(offset + data.length) > this.length) throw new RangeError('write beyond the mapping');
    c.memcpyIn(this.addr + BigInt(offset), data, data.length);
  }

  /** MADV_POPULATE_WRITE on a range, on the threadpool: the event loop stays free. */
  populateWrite(offset: bigint, len: bigint): Promise<void> {
    this.ensure();
    return new Promise((resolve, reject) => {
      madviseAsync.async(this.addr + offset, len, MADV_POPULATE_WRITE, (err: unknown, rc: number) => {
        if (err) return reject(err);
        // errno is valid inside the callback only (facts §10.21).
        if (rc < 0) return reject(new SysError('madvise', koffi.errno()));
        resolve();
      });
    });
  }

  unmap(): void {
    if (!this.mapped) return;
    this.mapped = false;
    c.munmap(this.addr, this.length);
  }
}

const madviseAsync = libc.func('int madvise(void *addr, size_t len, int advice)');

export function mmap(len: bigint, prot: number, flags: number, fd: Fd | undefined, offset: bigint): Mapping {
  const p = c.mmap(null, len, prot, flags, fd ? fd.fd : -1, offset) as bigint;
  if (p === MAP_FAILED || p === null) throw new SysError('mmap', koffi.errno());
  return new Mapping(BigInt(p), len);
}

/** Chunk of work per threadpool call: progress granularity and fairness between jobs. */
export const PREALLOC_CHUNK = 256n << 20n;

/** Faults the whole mapping in with MADV_POPULATE_WRITE: `threads` contiguous shares run
 *  concurrently on libuv's threadpool (UV_THREADPOOL_SIZE bounds real parallelism), each in
 *  PREALLOC_CHUNK pieces so progress is reported as it goes. */
export async function preallocate(m: Mapping, threads: number, onProgress?: (done: bigint) => void): Promise<void> {
  const page = BigInt(PAGE_SIZE);
  const pages = m.length / page;
  const n = BigInt(Math.max(1, threads));
  let done = 0n;
  const shares: Promise<void>[] = [];
  for (let i = 0n; i < n; i++) {
    const start = ((pages * i) / n) * page;
    const end = ((pages * (i + 1n)) / n) * page;
    shares.push(
      (async () => {
        for (let off = start; off < end; off += PREALLOC_CHUNK) {
          const len = end - off < PREALLOC_CHUNK ? end - off : PREALLOC_CHUNK;
          await m.populateWrite(off, len);
          done += len;
          onProgress?.(done);
        }
      })(),
    );
  }
  const results = await Promise.allSettled(shares);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

// ---- KVM (linux/kvm.h) ----
const KVMIO = 0xae;
const IOC_WRITE = 1, IOC_READ = 2;
/** _IOC(dir, type, nr, size) from <asm-generic/ioctl.h>. */
function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
export const _IO = (type: number, nr: number): number => ioc(0, type, nr, 0);
export const _IOW = (type: number, nr: number, size: number): number => ioc(IOC_WRITE, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, type, nr, size);

// Anonymous struct type: koffi's named types are process-global and this module may be loaded
// more than once (test runners), which a name would make fail.
const kvmCreateGuestMemfdStruct = koffi.struct({ size: 'uint64_t', flags: 'uint64_t', reserved: koffi.array('uint64_t', 6) });
const kvmCreateGuestMemfdPtr = koffi.pointer(kvmCreateGuestMemfdStruct);
export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
export const KVM_CREATE_VM = _IO(KVMIO, 0x01);
export const KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
/** _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd) = 0xc040aed4 (64-byte struct). */
export const KVM_CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, koffi.sizeof(kvmCreateGuestMemfdStruct));
export const KVM_CAP_USER_MEMORY2 = 231, KVM_CAP_MEMORY_ATTRIBUTES = 233, KVM_CAP_GUEST_MEMFD = 234, KVM_CAP_VM_TYPES = 235, KVM_CAP_GUEST_MEMFD_FLAGS = 244;
export const GUEST_MEMFD_FLAG_MMAP = 1, GUEST_MEMFD_FLAG_INIT_SHARED = 2;

export function kvmOpen(device = '/dev/kvm'): Fd {
  return new Fd(check('open', c.open(device, O_RDWR | O_CLOEXEC, 'int', 0) as number));
}

export function kvmGetApiVersion(kvm: Fd): number {
  return check('ioctl(KVM_GET_API_VERSION)', c.ioctl(kvm.fd, KVM_GET_API_VERSION, 'int', 0) as number);
}

export function kvmCreateVm(kvm: Fd, type: number): Fd {
  return new Fd(check('ioctl(KVM_CREATE_VM)', c.ioctl(kvm.fd, KVM_CREATE_VM, 'unsigned long', type) as number));
}

/** KVM_CHECK_EXTENSION on the VM fd, falling back to /dev/kvm like QEMU (qemu-facts §6.1). */
export function kvmCheckExtension(vm: Fd, cap: number, kvm?: Fd): number {
  const rc = c.ioctl(vm.fd, KVM_CHECK_EXTENSION, 'unsigned long', cap) as number;
  if (rc >= 0 || !kvm) return Math.max(rc, 0);
  return Math.max(c.ioctl(kvm.fd, KVM_CHECK_EXTENSION, 'unsigned long', cap) as number, 0);
}

export function kvmCreateGuestMemfd(vm: Fd, size: bigint, flags: number): Fd {
  const rc = c.ioctl(vm.fd, KVM_CREATE_GUEST_MEMFD, kvmCreateGuestMemfdPtr, { size, flags: BigInt(flags), reserved: [0n, 0n, 0n, 0n, 0n, 0n] }) as number;
  return new Fd(check('ioctl(KVM_CREATE_GUEST_MEMFD)', rc));
}
