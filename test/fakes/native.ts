// An in-memory fake of src/native (the public face of the koffi layer), for unit tests that
// run backends, QOM and command handlers without processes, sockets, root, memfd or mmap.
//
// Use: at the top of a test file (jest hoists it above the imports), with the paths relative to
// that test file:
//
//     jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
//     import * as fake from '../../fakes/native';
//
// Every src module that imports '../native' then gets this module, and the test's own import
// of it is the same instance (one module registry per test file), so it can assert on:
//   - fake.openFds() / fake.liveMappings() / fake.counts(): what is open and mapped now;
//   - fake.calls() / fake.callsOf(name): a log of every call (name and arguments);
//   - fake.failNext('memfdCreate', 'EMFILE'): fault injection, one call (optionally the first
//     whose arguments match a predicate), with glibc's strerror texts;
//   - fake.holdPrealloc(): preallocate() waits until the handle releases or fails it;
//   - fake.kvm: /dev/kvm is absent (kvmOpen fails ENOENT) until a test sets fake.kvm.present;
//   - fake.addFile / fake.addDir / fake.addSymlink / fake.fileAt / fake.mountHugetlbfs: the
//     in-memory file system behind open() and openBeneath();
//   - fake.reset(): back to a fresh state (call it in beforeEach).
// Numeric constants are the real ones (src/native/constants.ts loads no koffi); the KVM
// constants, which live next to koffi calls, are copied. The bottom of this file checks, for
// tsc, that the faked subset has the real signatures (with Fd/Mapping/SysError swapped for the
// fakes'), so a change of the real API shows up as a type error here.
// Not faked: `sockets` (fd passing, sd_notify): any use throws.
import type * as Real from '../../src/native';
import {
  F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, HUGETLBFS_MAGIC, MAP_ANONYMOUS, MAP_SHARED, MFD_ALLOW_SEALING, MFD_HUGE_SHIFT, MFD_HUGETLB,
  O_CREAT, O_EXCL, O_PATH, O_RDONLY, O_TRUNC, PROT_WRITE, RLIMIT_NOFILE, S_IFDIR, S_IFREG, TMPFS_MAGIC,
} from '../../src/native/constants';

/** O_ACCMODE (<asm-generic/fcntl.h>). */
const O_ACCMODE = 0o3;

export * from '../../src/native/constants';

// ---- errno ------------------------------------------------------------------------------------

/** errno numbers (x86-64) and glibc's C-locale strerror texts. */
const ERRNOS: Record<string, [number, string]> = {
  EPERM: [1, 'Operation not permitted'],
  ENOENT: [2, 'No such file or directory'],
  EINTR: [4, 'Interrupted system call'],
  EIO: [5, 'Input/output error'],
  EBADF: [9, 'Bad file descriptor'],
  EAGAIN: [11, 'Resource temporarily unavailable'],
  ENOMEM: [12, 'Cannot allocate memory'],
  EACCES: [13, 'Permission denied'],
  EFAULT: [14, 'Bad address'],
  EBUSY: [16, 'Device or resource busy'],
  EEXIST: [17, 'File exists'],
  ENODEV: [19, 'No such device'],
  ENOTDIR: [20, 'Not a directory'],
  EISDIR: [21, 'Is a directory'],
  EINVAL: [22, 'Invalid argument'],
  ENFILE: [23, 'Too many open files in system'],
  EMFILE: [24, 'Too many open files'],
  ENOTTY: [25, 'Inappropriate ioctl for device'],
  EFBIG: [27, 'File too large'],
  ENOSPC: [28, 'No space left on device'],
  EROFS: [30, 'Read-only file system'],
  ENAMETOOLONG: [36, 'File name too long'],
  ENOSYS: [38, 'Function not implemented'],
  EOPNOTSUPP: [95, 'Operation not supported'],
  EXDEV: [18, 'Invalid cross-device link'],
  ELOOP: [40, 'Too many levels of symbolic links'],
};
export type ErrnoName = keyof typeof ERRNOS & string;
const BY_NUMBER = new Map<number, [string, string]>(Object.entries(ERRNOS).map(([n, [v, t]]) => [v, [n, t]]));

export function errnoName(errno: number): string {
  return BY_NUMBER.get(errno)?.[0] ?? `E${errno}`;
}

export function strerror(errno: number): string {
  return BY_NUMBER.get(errno)?.[1] ?? `Unknown error ${errno}`;
}

/** The errno number of a name in the table ('EINVAL' → 22). */
export function errnoOf(name: ErrnoName): number {
  const e = ERRNOS[name];
  if (!e) throw new Error(`fake native: unknown errno ${name}`);
  return e[0];
}

export class SysError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly syscall: string;
  readonly strerror: string;

  constructor(syscall: string, errno: number) {
    const text = strerror(errno);
    super(`${syscall}: ${text}`);
    this.name = 'SysError';
    this.errno = errno;
    this.code = errnoName(errno);
    this.syscall = syscall;
    this.strerror = text;
  }

  toQmp(): { class: 'GenericError'; desc: string } {
    return { class: 'GenericError', desc: this.message };
  }
}

const fail = (syscall: string, code: ErrnoName): never => {
  throw new SysError(syscall, errnoOf(code));
};

// ---- bookkeeping ------------------------------------------------------------------------------

export interface Call {
  name: string;
  args: unknown[];
}

interface Fault {
  name: string;
  code: ErrnoName;
  when?: (...args: never[]) => boolean;
}

export type FileKind = 'memfd' | 'file' | 'dir' | 'shm' | 'guest-memfd' | 'kvm' | 'kvm-vm';

/** An open file description's inode: what fstat reports and what mappings share. */
export interface FakeFile {
  kind: FileKind;
  /** memfd name, path, or shm name. */
  name: string;
  dev: bigint;
  ino: bigint;
  mode: number;
  size: bigint;
  /** st_blksize (the huge page size for a hugetlb memfd). */
  blksize: number;
  /** statfs f_type and f_bsize. */
  fsType: number;
  fsBsize: number;
  seals: number;
  hugetlb: boolean;
  /** Bytes written through shared mappings, by offset (reads of other bytes give zeros). */
  data: Map<bigint, number>;
  /** guest_memfd creation flags. */
  gmemFlags?: bigint;
}

interface OpenFile {
  file: FakeFile;
  writable: boolean;
  cloexec: boolean;
}

const PAGE = 4096;
const DEFAULT_HUGE = 2 << 20;

interface State {
  calls: Call[];
  faults: Fault[];
  /** fd number → open file. */
  fds: Map<number, OpenFile>;
  fdObjects: Map<number, Fd>;
  mappings: Set<Mapping>;
  /** The in-memory file system behind open(): path → inode. */
  paths: Map<string, FakeFile>;
  /** Directories added by addDir (the parents of files exist implicitly). */
  dirs: Set<string>;
  /** Symlinks: path → target (never followed beneath a directory: ELOOP). */
  symlinks: Map<string, string>;
  /** The inode of each directory opened (one per path). */
  dirFiles: Map<string, FakeFile>;
  hugetlbfs: Map<string, number>;
  nextIno: bigint;
  rlimits: Map<number, RLimit>;
  holds: PreallocHold[];
  /** Huge page sizes the fake kernel offers (MFD_HUGE_* and hugetlbfs). */
  hugePageSizes: number[];
  shmSeq: number;
}

function freshState(): State {
  return {
    calls: [],
    faults: [],
    fds: new Map(),
    fdObjects: new Map(),
    mappings: new Set(),
    paths: new Map(),
    dirs: new Set(),
    symlinks: new Map(),
    dirFiles: new Map(),
    hugetlbfs: new Map(),
    nextIno: 1000n,
    rlimits: new Map([[RLIMIT_NOFILE, { cur: 1024n, max: 524288n }]]),
    holds: [],
    hugePageSizes: [DEFAULT_HUGE, 1 << 30],
    shmSeq: 0,
  };
}

let state = freshState();

/** What /dev/kvm looks like. Absent by default: kvmOpen fails with ENOENT. */
export const kvm = {
  present: false,
  apiVersion: 12,
  /** KVM_CHECK_EXTENSION answers by capability number (others: 0). */
  caps: new Map<number, number>(),
  /** KVM_SET_USER_MEMORY_REGION2 calls made. */
  regions: [] as UserMemoryRegion2[],
};

/** A KVM that supports shared guest_memfd (the seed patch's requirements). */
export function kvmWithGuestMemfd(): void {
  kvm.present = true;
  kvm.apiVersion = 12;
  kvm.caps = new Map([
    [KVM_CAP_GUEST_MEMFD, 1],
    [KVM_CAP_USER_MEMORY2, 1],
    [KVM_CAP_GUEST_MEMFD_FLAGS, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED],
    [KVM_CAP_MEMORY_ATTRIBUTES, 0],
    [KVM_CAP_VM_TYPES, 1],
  ]);
}

/** Back to a fresh fake: no fds, no mappings, no files, no faults, no KVM, empty call log. */
export function reset(): void {
  for (const h of state.holds) h.release();
  state = freshState();
  kvm.present = false;
  kvm.apiVersion = 12;
  kvm.caps = new Map();
  kvm.regions = [];
}

function record(name: string, args: unknown[]): void {
  state.calls.push({ name, args });
  const i = state.faults.findIndex((f) => f.name === name && (!f.when || (f.when as (...a: unknown[]) => boolean)(...args)));
  if (i >= 0) {
    const f = state.faults[i];
    state.faults.splice(i, 1);
    throw new SysError(SYSCALL_NAMES[name] ?? name, errnoOf(f.code));
  }
}

/** The syscall text a fault in `name` reports (as the real wrappers name it). */
const SYSCALL_NAMES: Record<string, string> = {
  memfdCreate: 'memfd_create',
  addSeals: 'fcntl(F_ADD_SEALS)',
  getSeals: 'fcntl(F_GET_SEALS)',
  openFile: 'open',
  shmOpen: 'shm_open',
  shmUnlink: 'shm_unlink',
  preallocate: 'madvise(MADV_POPULATE_WRITE)',
  populateWrite: 'madvise(MADV_POPULATE_WRITE)',
  residentBytes: 'mincore',
  dup: 'fcntl(F_DUPFD)',
  kvmOpen: 'open',
  kvmGetApiVersion: 'ioctl(KVM_GET_API_VERSION)',
  kvmCreateVm: 'ioctl(KVM_CREATE_VM)',
  kvmCreateGuestMemfd: 'ioctl(KVM_CREATE_GUEST_MEMFD)',
  kvmSetUserMemoryRegion2: 'ioctl(KVM_SET_USER_MEMORY_REGION2)',
  fallocatePunchHole: 'fallocate',
  fstatBlockSize: 'fstat',
  fdPageSize: 'fstatfs',
  openBeneath: 'openat2',
  openDirectory: 'open',
  unlinkAt: 'unlinkat',
};

/** The next call of `name` (a function or method name of this module: 'memfdCreate',
 *  'ftruncate', 'addSeals', 'mmap', 'madvise', 'mbind', 'preallocate', 'openFile', 'shmOpen',
 *  'kvmCreateGuestMemfd', ...) whose arguments satisfy `when` fails with `code`. Faults queue. */
export function failNext<A extends unknown[]>(name: string, code: ErrnoName, when?: (...args: A) => boolean): void {
  state.faults.push({ name, code, when: when as Fault['when'] });
}

/** Faults armed but not yet hit (a test can check its injection was reached). */
export function pendingFaults(): string[] {
  return state.faults.map((f) => `${f.name}:${f.code}`);
}

export function calls(): readonly Call[] {
  return state.calls;
}

/** The argument lists of every call of `name`, in order. */
export function callsOf(name: string): unknown[][] {
  return state.calls.filter((c) => c.name === name).map((c) => c.args);
}

export function clearCalls(): void {
  state.calls = [];
}

export function openFds(): Fd[] {
  return [...state.fdObjects.values()];
}

export function liveMappings(): Mapping[] {
  return [...state.mappings];
}

export function counts(): { fds: number; mappings: number } {
  return { fds: state.fds.size, mappings: state.mappings.size };
}

/** The inode behind an open Fd. */
export function fileOf(fd: Fd): FakeFile {
  const o = state.fds.get(fd.fd);
  if (!o || !fd.isOpen) throw new Error(`fake native: fd ${fd.fd} is not open`);
  return o.file;
}

/** The file at `path` in the fake file system, if any. */
export function fileAt(path: string): FakeFile | undefined {
  return state.paths.get(path);
}

function newFile(kind: FileKind, name: string, size = 0n, extra: Partial<FakeFile> = {}): FakeFile {
  return { kind, name, dev: 0x2an, ino: state.nextIno++, mode: S_IFREG | 0o600, size, blksize: PAGE, fsType: TMPFS_MAGIC, fsBsize: PAGE, seals: 0, hugetlb: false, data: new Map(), ...extra };
}

function hugetlbfsPage(path: string): number | undefined {
  for (const [mount, page] of state.hugetlbfs) if (path === mount || path.startsWith(mount.endsWith('/') ? mount : `${mount}/`)) return page;
  return undefined;
}

/** A file that exists before the test opens it (mode 0644, `size` bytes). */
export function addFile(path: string, size = 0n): FakeFile {
  const page = hugetlbfsPage(path);
  const f = newFile('file', path, size, { mode: S_IFREG | 0o644, ...(page ? { hugetlb: true, blksize: page, fsType: HUGETLBFS_MAGIC, fsBsize: page } : {}) });
  state.paths.set(path, f);
  return f;
}

/** Files opened under `dir` are on hugetlbfs with `pageSize` pages (fdPageSize reports it). */
export function mountHugetlbfs(dir: string, pageSize = DEFAULT_HUGE): void {
  state.hugetlbfs.set(dir, pageSize);
  state.dirs.add(dir);
}

/** A directory (its parents exist implicitly). */
export function addDir(path: string): void {
  state.dirs.add(path);
}

/** A symlink at `path` to `target`. openBeneath refuses it (ELOOP) wherever it is in the path. */
export function addSymlink(path: string, target: string): void {
  state.symlinks.set(path, target);
}

function isDir(path: string): boolean {
  if (path === '/' || state.dirs.has(path)) return true;
  const under = `${path}/`;
  for (const k of [...state.paths.keys(), ...state.dirs]) if (k.startsWith(under)) return true;
  return false;
}

function dirFile(path: string): FakeFile {
  let f = state.dirFiles.get(path);
  if (!f) {
    f = newFile('dir', path, 0n, { mode: S_IFDIR | 0o755 });
    state.dirFiles.set(path, f);
  }
  return f;
}

/** Like the real openDirectory: an O_PATH fd of a directory (the administrator's path). */
export function openDirectory(path: string): Fd {
  record('openDirectory', [path]);
  if (state.paths.has(path)) fail('open', 'ENOTDIR');
  if (!isDir(path)) fail('open', 'ENOENT');
  return allocFd('open', dirFile(path), false);
}

/** Like the real openBeneath with openat2: '..' out of the directory or an absolute `rel` is
 *  EXDEV, a symlink anywhere ELOOP. Faults: failNext('openBeneath', code). */
export function openBeneath(dir: Fd, rel: string, flags: number, mode = 0): Fd {
  const base = openOf(dir, 'openat2').file;
  record('openBeneath', [base.name, rel, flags, mode]);
  if (base.kind !== 'dir') fail('openat2', 'ENOTDIR');
  if (rel.startsWith('/')) fail('openat2', 'EXDEV');
  const stack: string[] = [];
  const parts = rel.split('/').filter((c) => c !== '' && c !== '.');
  const at = (): string => (stack.length ? `${base.name === '/' ? '' : base.name}/${stack.join('/')}` : base.name);
  parts.forEach((c, i) => {
    if (c === '..') {
      if (stack.length === 0) fail('openat2', 'EXDEV');
      stack.pop();
      return;
    }
    stack.push(c);
    if (state.symlinks.has(at())) fail('openat2', 'ELOOP');
    if (i < parts.length - 1 && !isDir(at())) fail('openat2', state.paths.has(at()) ? 'ENOTDIR' : 'ENOENT');
  });
  const p = at();
  const writable = (flags & O_PATH) === 0 && (flags & O_ACCMODE) !== O_RDONLY;
  const file = state.paths.get(p);
  if (file) {
    if (flags & O_CREAT && flags & O_EXCL) fail('openat2', 'EEXIST');
    if (flags & O_TRUNC) file.size = 0n;
    return allocFd('openat2', file, writable);
  }
  if (isDir(p)) {
    if (flags & O_CREAT || writable) fail('openat2', 'EISDIR');
    return allocFd('openat2', dirFile(p), false);
  }
  if (!(flags & O_CREAT)) fail('openat2', 'ENOENT');
  const parent = p.slice(0, p.lastIndexOf('/')) || '/';
  if (!isDir(parent)) fail('openat2', 'ENOENT');
  const created = addFile(p);
  created.mode = S_IFREG | (mode & 0o7777);
  return allocFd('openat2', created, writable);
}

/** Like the real unlinkAt: removes `name` in the directory `dir`. */
export function unlinkAt(dir: Fd, name: string): void {
  const base = openOf(dir, 'unlinkat').file;
  record('unlinkAt', [base.name, name]);
  if (!state.paths.delete(`${base.name === '/' ? '' : base.name}/${name}`)) fail('unlinkat', 'ENOENT');
}

/** The fake always resolves like openat2. */
export function beneathMode(): 'openat2' | 'walk' {
  return 'openat2';
}
export const EXDEV = 18;
export const ENOTDIR = 20;
export const ENOSYS = 38;
export const ELOOP = 40;

/** The lowest free fd number ≥ 3, or EMFILE past RLIMIT_NOFILE's soft limit. */
function allocFd(syscall: string, file: FakeFile, writable: boolean, cloexec = true): Fd {
  let n = 3;
  while (state.fds.has(n)) n++;
  if (BigInt(n) >= state.rlimits.get(RLIMIT_NOFILE)!.cur) fail(syscall, 'EMFILE');
  state.fds.set(n, { file, writable, cloexec });
  const fd = new Fd(n);
  state.fdObjects.set(n, fd);
  return fd;
}

function openOf(fd: Fd, syscall: string): OpenFile {
  const n = fd.raw(syscall);
  const o = state.fds.get(n);
  if (!o) fail(syscall, 'EBADF');
  return o!;
}

// ---- Fd -----------------------------------------------------------------------------------------

export class Fd {
  #open = true;

  constructor(readonly fd: number) {
    if (!Number.isInteger(fd) || fd < 0) throw new RangeError(`not a file descriptor: ${fd}`);
  }

  get isOpen(): boolean {
    return this.#open;
  }

  raw(syscall: string): number {
    if (!this.#open) throw new SysError(syscall, errnoOf('EBADF'));
    return this.fd;
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    state.calls.push({ name: 'close', args: [this.fd] });
    // Only the fd this object owns: a stale Fd from before reset() must not close a new one.
    if (state.fdObjects.get(this.fd) === this) {
      state.fds.delete(this.fd);
      state.fdObjects.delete(this.fd);
    }
  }

  dup(cloexec = true): Fd {
    const o = openOf(this, 'fcntl(F_DUPFD)');
    record('dup', [this, cloexec]);
    return allocFd('fcntl(F_DUPFD)', o.file, o.writable, cloexec);
  }

  get cloexec(): boolean {
    return openOf(this, 'fcntl(F_GETFD)').cloexec;
  }

  setCloexec(on: boolean): void {
    openOf(this, 'fcntl(F_SETFD)').cloexec = on;
  }

  get accessMode(): number {
    return openOf(this, 'fcntl(F_GETFL)').writable ? 2 /* O_RDWR */ : O_RDONLY;
  }
}

// ---- Mapping ------------------------------------------------------------------------------------

// Plain data types are the real module's own (type-only: nothing of koffi loads).
export type NodeMask = Real.NodeMask;

export interface MbindCall {
  mode: number;
  nodemask: NodeMask;
  maxnode: number;
  flags: number;
  offset: bigint;
  len: bigint;
}

export class Mapping {
  #mapped = true;
  /** madvise advice applied, in order (fake bookkeeping). */
  readonly advice: number[] = [];
  /** mbind calls made (fake bookkeeping). */
  readonly policies: MbindCall[] = [];
  /** Populated [start, end) ranges, merged (fake residency). */
  #resident: [bigint, bigint][] = [];
  /** Bytes of a private mapping (copy-on-write from the file on first write). */
  readonly #private = new Map<bigint, number>();

  constructor(
    readonly length: bigint,
    readonly prot: number,
    readonly flags: number,
    /** The file mapped (undefined: anonymous memory). */
    readonly file: FakeFile | undefined,
    readonly offset: bigint,
  ) {}

  get isMapped(): boolean {
    return this.#mapped;
  }

  get shared(): boolean {
    return (this.flags & 0x3) === MAP_SHARED;
  }

  #range(syscall: string, offset: bigint, len: bigint): void {
    if (!this.#mapped) throw new Error(`${syscall}: the mapping was unmapped`);
    if (offset < 0n || len < 0n || offset + len > this.length) {
      throw new RangeError(`${syscall}: range [${offset}, +${len}) is outside the ${this.length}-byte mapping`);
    }
  }

  madvise(advice: number, offset = 0n, len = this.length - offset): void {
    this.#range('madvise', offset, len);
    record('madvise', [this, advice, offset, len]);
    this.advice.push(advice);
  }

  mbind(mode: number, nodemask: NodeMask, maxnode: number, flags: number, offset = 0n, len = this.length - offset): void {
    this.#range('mbind', offset, len);
    record('mbind', [this, mode, nodemask, maxnode, flags, offset, len]);
    this.policies.push({ mode, nodemask, maxnode, flags, offset, len });
  }

  /** Marks [offset, offset+len) resident (as a fault-in would). */
  touch(offset: bigint, len: bigint): void {
    const page = BigInt(this.file?.hugetlb ? this.file.blksize : PAGE);
    const start = (offset / page) * page;
    let end = ((offset + len + page - 1n) / page) * page;
    if (end > this.length) end = this.length;
    const all = [...this.#resident, [start, end] as [bigint, bigint]].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged: [bigint, bigint][] = [];
    for (const r of all) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = r[1] > last[1] ? r[1] : last[1];
      else merged.push([r[0], r[1]]);
    }
    this.#resident = merged;
  }

  residentBytes(offset = 0n, len = this.length - offset): bigint {
    this.#range('mincore', offset, len);
    record('residentBytes', [this, offset, len]);
    let n = 0n;
    for (const [s, e] of this.#resident) {
      const a = s > offset ? s : offset;
      const b = e < offset + len ? e : offset + len;
      if (b > a) n += b - a;
    }
    return n;
  }

  read(offset: number | bigint, len: number): Buffer {
    const at = BigInt(offset);
    this.#range('read', at, BigInt(len));
    const out = Buffer.alloc(len);
    for (let i = 0; i < len; i++) {
      const k = at + BigInt(i);
      out[i] = this.#private.get(k) ?? this.file?.data.get(this.offset + k) ?? 0;
    }
    return out;
  }

  write(offset: number | bigint, data: Uint8Array): void {
    if ((this.prot & PROT_WRITE) === 0) throw new RangeError('write: the mapping is not writable');
    const at = BigInt(offset);
    this.#range('write', at, BigInt(data.length));
    for (let i = 0; i < data.length; i++) {
      const k = at + BigInt(i);
      if (this.shared && this.file) this.file.data.set(this.offset + k, data[i]);
      else this.#private.set(k, data[i]);
    }
    if (data.length > 0) this.touch(at, BigInt(data.length));
  }

  async populateWrite(offset = 0n, len = this.length - offset): Promise<void> {
    this.#range('madvise(MADV_POPULATE_WRITE)', offset, len);
    record('populateWrite', [this, offset, len]);
    this.touch(offset, len);
  }

  unmap(): void {
    if (!this.#mapped) return;
    this.#mapped = false;
    state.calls.push({ name: 'munmap', args: [this] });
    state.mappings.delete(this);
  }
}

// ---- libc ---------------------------------------------------------------------------------------

export function memfdCreate(name: string, flags: number): Fd {
  record('memfdCreate', [name, flags]);
  let blksize = PAGE;
  const hugetlb = (flags & MFD_HUGETLB) !== 0;
  if (hugetlb) {
    const shift = flags >>> MFD_HUGE_SHIFT;
    blksize = shift === 0 ? DEFAULT_HUGE : 2 ** shift;
    if (!state.hugePageSizes.includes(blksize)) fail('memfd_create', 'EINVAL');
  } else if (flags >>> MFD_HUGE_SHIFT !== 0) {
    fail('memfd_create', 'EINVAL');
  }
  if (Buffer.byteLength(name) > 249) fail('memfd_create', 'EINVAL');
  const file = newFile('memfd', name, 0n, {
    mode: S_IFREG | 0o777,
    blksize,
    hugetlb,
    fsType: hugetlb ? HUGETLBFS_MAGIC : TMPFS_MAGIC,
    fsBsize: blksize,
    // Without MFD_ALLOW_SEALING a memfd starts sealed with F_SEAL_SEAL (man 2 memfd_create).
    seals: flags & MFD_ALLOW_SEALING ? 0 : F_SEAL_SEAL,
  });
  return allocFd('memfd_create', file, true);
}

export function open(path: string, flags: number, mode = 0): Fd {
  record('openFile', [path, flags, mode]);
  let file = state.paths.get(path);
  if (file && flags & O_CREAT && flags & O_EXCL) fail('open', 'EEXIST');
  if (!file) {
    if (!(flags & O_CREAT)) fail('open', 'ENOENT');
    file = addFile(path);
    file.mode = S_IFREG | (mode & 0o7777);
  }
  if (flags & O_TRUNC) file.size = 0n;
  return allocFd('open', file, (flags & O_ACCMODE) !== O_RDONLY);
}
export const openFile = open;

export function close(fd: Fd): void {
  fd.close();
}

export function shmOpen(name: string, oflag: number, mode: number): Fd {
  record('shmOpen', [name, oflag, mode]);
  const path = `/dev/shm${name}`;
  if (state.paths.has(path) && oflag & O_CREAT && oflag & O_EXCL) fail('shm_open', 'EEXIST');
  let file = state.paths.get(path);
  if (!file) {
    if (!(oflag & O_CREAT)) fail('shm_open', 'ENOENT');
    file = newFile('shm', name, 0n, { mode: S_IFREG | (mode & 0o7777) });
    state.paths.set(path, file);
  }
  return allocFd('shm_open', file, (oflag & O_ACCMODE) !== O_RDONLY);
}

export function shmUnlink(name: string): void {
  record('shmUnlink', [name]);
  if (!state.paths.delete(`/dev/shm${name}`)) fail('shm_unlink', 'ENOENT');
}

export function ftruncate(fd: Fd, length: bigint): void {
  const o = openOf(fd, 'ftruncate');
  record('ftruncate', [fd, length]);
  const f = o.file;
  if (length < 0n || !o.writable || f.kind === 'kvm' || f.kind === 'kvm-vm') fail('ftruncate', 'EINVAL');
  if (f.kind === 'guest-memfd') fail('ftruncate', 'EINVAL');
  if (f.hugetlb && length % BigInt(f.blksize) !== 0n) fail('ftruncate', 'EINVAL');
  if ((length > f.size && f.seals & F_SEAL_GROW) || (length < f.size && f.seals & F_SEAL_SHRINK)) fail('ftruncate', 'EPERM');
  f.size = length;
}

export function addSeals(fd: Fd, seals: number): void {
  const o = openOf(fd, 'fcntl(F_ADD_SEALS)');
  record('addSeals', [fd, seals]);
  if (o.file.kind !== 'memfd') fail('fcntl(F_ADD_SEALS)', 'EINVAL');
  if (o.file.seals & F_SEAL_SEAL) fail('fcntl(F_ADD_SEALS)', 'EPERM');
  o.file.seals |= seals;
}

export function getSeals(fd: Fd): number {
  const o = openOf(fd, 'fcntl(F_GET_SEALS)');
  record('getSeals', [fd]);
  if (o.file.kind !== 'memfd') fail('fcntl(F_GET_SEALS)', 'EINVAL');
  return o.file.seals;
}

export function fallocate(fd: Fd, mode: number, offset: bigint, len: bigint): void {
  const o = openOf(fd, 'fallocate');
  record('fallocate', [fd, mode, offset, len]);
  if (offset < 0n || len <= 0n) fail('fallocate', 'EINVAL');
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    for (const k of [...o.file.data.keys()]) if (k >= offset && k < offset + len) o.file.data.delete(k);
  } else if (!(mode & FALLOC_FL_KEEP_SIZE) && offset + len > o.file.size) {
    o.file.size = offset + len;
  }
}

export function fallocatePunchHole(fd: Fd, offset: bigint, len: bigint): void {
  record('fallocatePunchHole', [fd, offset, len]);
  fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
}

export type Stat = Real.Stat;

export function fstat(fd: Fd): Stat {
  const f = openOf(fd, 'fstat').file;
  record('fstat', [fd]);
  return { dev: f.dev, ino: f.ino, mode: f.mode, nlink: f.kind === 'file' ? 1n : 0n, uid: 0, gid: 0, size: f.size, blksize: f.blksize, blocks: 0n };
}

export function fstatBlockSize(fd: Fd): number {
  record('fstatBlockSize', [fd]);
  return fstat(fd).blksize;
}

export function fstatfs(fd: Fd): { type: number; bsize: number } {
  const f = openOf(fd, 'fstatfs').file;
  record('fstatfs', [fd]);
  return { type: f.fsType, bsize: f.fsBsize };
}

export function fdPageSize(fd: Fd): number {
  record('fdPageSize', [fd]);
  const s = fstatfs(fd);
  return s.type === HUGETLBFS_MAGIC ? s.bsize : PAGE;
}

export function mmap(length: bigint, prot: number, flags: number, fd?: Fd | null, offset = 0n): Mapping {
  const o = fd ? openOf(fd, 'mmap') : undefined;
  record('mmap', [length, prot, flags, fd ?? undefined, offset]);
  const type = flags & 0x3;
  if (length <= 0n || (type !== 0x1 && type !== 0x2 && type !== 0x3)) fail('mmap', 'EINVAL');
  if (!o && !(flags & MAP_ANONYMOUS)) fail('mmap', 'EBADF');
  if (o) {
    if (o.file.kind === 'kvm' || o.file.kind === 'kvm-vm') fail('mmap', 'ENODEV');
    if (o.file.hugetlb && (offset % BigInt(o.file.blksize) !== 0n || length % BigInt(o.file.blksize) !== 0n)) fail('mmap', 'EINVAL');
    if (type !== 0x2 && prot & PROT_WRITE && !o.writable) fail('mmap', 'EACCES');
    if (o.file.kind === 'guest-memfd' && type !== MAP_SHARED) fail('mmap', 'EINVAL');
  }
  if (offset % BigInt(PAGE) !== 0n) fail('mmap', 'EINVAL');
  const m = new Mapping(length, prot, flags, o?.file, offset);
  state.mappings.add(m);
  return m;
}

export function munmap(m: Mapping): void {
  m.unmap();
}

export function madvise(m: Mapping, advice: number, offset?: bigint, len?: bigint): void {
  m.madvise(advice, offset, len);
}

export function mbind(m: Mapping, mode: number, nodemask: NodeMask, maxnode: number, flags: number, offset?: bigint, len?: bigint): void {
  m.mbind(mode, nodemask, maxnode, flags, offset, len);
}

export function getpagesize(): number {
  return PAGE;
}
export const pageSize = getpagesize;

/** Online CPUs the fake reports (onlineCpus, sysconf(_SC_NPROCESSORS_ONLN)). */
export let fakeCpus = 8;
export function setOnlineCpus(n: number): void {
  fakeCpus = n;
}

export function sysconf(name: number): number {
  record('sysconf', [name]);
  if (name === 30) return PAGE;
  if (name === 83 || name === 84) return fakeCpus;
  return fail('sysconf', 'EINVAL');
}

export function onlineCpus(): number {
  return Math.max(1, sysconf(84));
}

export type RLimit = Real.RLimit;

export function getrlimit(resource: number): RLimit {
  record('getrlimit', [resource]);
  const l = state.rlimits.get(resource);
  return l ? { ...l } : { cur: 0xffffffffffffffffn, max: 0xffffffffffffffffn };
}

export function setrlimit(resource: number, limit: RLimit): void {
  record('setrlimit', [resource, limit]);
  const old = getrlimit(resource);
  if (limit.cur > limit.max) fail('setrlimit', 'EINVAL');
  if (limit.max > old.max) fail('setrlimit', 'EPERM');
  state.rlimits.set(resource, { ...limit });
}

// ---- preallocation ------------------------------------------------------------------------------

export const PREALLOC_PIECE = 1n << 30n;

export function threadpoolSize(): number {
  return 4;
}

export function populateWrite(m: Mapping, offset = 0n, len: bigint = m.length - offset): Promise<void> {
  return m.populateWrite(offset, len);
}

export type PreallocProgress = Real.PreallocProgress;

export type PreallocOptions = Real.PreallocOptions;

/** A held preallocation: preallocate() calls wait until release() (or fail with fail()). */
export interface PreallocHold {
  /** Resolves once `n` preallocations are waiting on this hold. */
  waiting(n?: number): Promise<void>;
  release(): void;
  fail(code: ErrnoName): void;
}

/** Makes every preallocate() from now on wait until the returned hold is released or failed. */
export function holdPrealloc(): PreallocHold {
  let settle!: (code?: ErrnoName) => void;
  const gate = new Promise<ErrnoName | undefined>((r) => (settle = r));
  let count = 0;
  const watchers: { n: number; resolve: () => void }[] = [];
  const hold: PreallocHold & { gate: Promise<ErrnoName | undefined>; arrived(): void } = {
    gate,
    arrived() {
      count++;
      for (const w of watchers.filter((x) => count >= x.n)) w.resolve();
    },
    waiting: (n = 1) => (count >= n ? Promise.resolve() : new Promise<void>((resolve) => watchers.push({ n, resolve }))),
    release: () => {
      settle();
      state.holds = state.holds.filter((h) => h !== hold);
    },
    fail: (code) => {
      settle(code);
      state.holds = state.holds.filter((h) => h !== hold);
    },
  };
  state.holds.push(hold);
  return hold;
}

/** Like the real one: `threads` shares of whole pages, progress after each, the mapping resident
 *  afterwards. Faults: failNext('preallocate', code) (a SysError from madvise(MADV_POPULATE_WRITE)). */
export async function preallocate(m: Mapping, threads: number, onProgress?: PreallocProgress, opts: PreallocOptions = {}): Promise<void> {
  const page = BigInt(opts.pageSize ?? PAGE);
  state.calls.push({ name: 'preallocate', args: [m, threads, opts] });
  const hold = state.holds[state.holds.length - 1] as (PreallocHold & { gate: Promise<ErrnoName | undefined>; arrived(): void }) | undefined;
  if (hold) {
    hold.arrived();
    const code = await hold.gate;
    if (code) fail('madvise(MADV_POPULATE_WRITE)', code);
  }
  // The fault check happens after a hold: a held preallocation can still be made to fail.
  const i = state.faults.findIndex((f) => f.name === 'preallocate');
  if (i >= 0) {
    const f = state.faults.splice(i, 1)[0];
    throw new SysError('madvise(MADV_POPULATE_WRITE)', errnoOf(f.code));
  }
  opts.signal?.throwIfAborted();
  if (!m.isMapped) throw new Error('madvise(MADV_POPULATE_WRITE): the mapping was unmapped');
  const total = m.length;
  const pages = (total + page - 1n) / page;
  if (pages === 0n) return;
  let n = BigInt(Math.max(1, Math.floor(threads)));
  if (n > pages) n = pages;
  const perShare = pages / n;
  const extra = pages % n;
  let first = 0n;
  let done = 0n;
  for (let s = 0n; s < n; s++) {
    const count = perShare + (s < extra ? 1n : 0n);
    const start = first * page;
    first += count;
    const end = first * page < total ? first * page : total;
    m.touch(start, end - start);
    done += end - start;
    onProgress?.(done, total);
  }
}

// ---- KVM ----------------------------------------------------------------------------------------

// KVM's plain numbers come from src/native/kvm-constants.ts (no koffi); the ioctl numbers are
// sized from koffi structs in kvm.ts, so their values are written out here.
export * from '../../src/native/kvm-constants';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_USER_MEMORY2, KVM_CAP_VM_TYPES, KVM_X86_DEFAULT_VM } from '../../src/native/kvm-constants';
export const KVMIO = 0xae;
export const KVM_GET_API_VERSION = 0xae00;
export const KVM_CREATE_VM = 0xae01;
export const KVM_CHECK_EXTENSION = 0xae03;
export const KVM_SET_USER_MEMORY_REGION2 = 0x40a0ae49;
export const KVM_CREATE_GUEST_MEMFD = 0xc040aed4;
export const KVM_STRUCT_SIZES = { kvm_create_guest_memfd: 64, kvm_userspace_memory_region2: 160 };

export function kvmOpen(device = '/dev/kvm'): Fd {
  record('kvmOpen', [device]);
  if (!kvm.present || device !== '/dev/kvm') fail('open', 'ENOENT');
  return allocFd('open', newFile('kvm', device, 0n, { mode: 0o020666 }), true);
}

function kvmFile(fd: Fd, syscall: string, kind: FileKind): FakeFile {
  const f = openOf(fd, syscall).file;
  if (f.kind !== kind) fail(syscall, f.kind === 'kvm' || f.kind === 'kvm-vm' ? 'EINVAL' : 'ENOTTY');
  return f;
}

export function kvmGetApiVersion(kvmFd: Fd): number {
  kvmFile(kvmFd, 'ioctl(KVM_GET_API_VERSION)', 'kvm');
  record('kvmGetApiVersion', [kvmFd]);
  return kvm.apiVersion;
}

export function kvmCreateVm(kvmFd: Fd, type = KVM_X86_DEFAULT_VM): Fd {
  kvmFile(kvmFd, 'ioctl(KVM_CREATE_VM)', 'kvm');
  record('kvmCreateVm', [kvmFd, type]);
  if (type !== KVM_X86_DEFAULT_VM) fail('ioctl(KVM_CREATE_VM)', 'EINVAL');
  return allocFd('ioctl(KVM_CREATE_VM)', newFile('kvm-vm', 'kvm-vm', 0n, { mode: 0o600 }), true);
}

export function kvmCheckExtension(fd: Fd, cap: number, fallback?: Fd): number {
  record('kvmCheckExtension', [fd, cap, fallback]);
  const f = openOf(fd, 'ioctl(KVM_CHECK_EXTENSION)').file;
  if (f.kind !== 'kvm' && f.kind !== 'kvm-vm') return 0;
  return kvm.caps.get(cap) ?? 0;
}

export function kvmCreateGuestMemfd(vm: Fd, size: bigint, flags: number | bigint): Fd {
  const syscall = 'ioctl(KVM_CREATE_GUEST_MEMFD)';
  kvmFile(vm, syscall, 'kvm-vm');
  record('kvmCreateGuestMemfd', [vm, size, flags]);
  const valid = BigInt(kvm.caps.get(KVM_CAP_GUEST_MEMFD_FLAGS) ?? 0);
  if (size <= 0n || size % BigInt(PAGE) !== 0n || (BigInt(flags) & ~valid) !== 0n) fail(syscall, 'EINVAL');
  // guest_memfd fds come without FD_CLOEXEC (facts §6.2).
  return allocFd(syscall, newFile('guest-memfd', 'kvm-guest-memfd', size, { mode: S_IFREG | 0o600, fsType: 0x474d454d, gmemFlags: BigInt(flags) }), true, false);
}

export interface UserMemoryRegion2 {
  slot: number;
  flags: number;
  guestPhysAddr: bigint;
  memorySize: bigint;
  mapping?: Mapping;
  mappingOffset?: bigint;
  guestMemfd?: Fd;
  guestMemfdOffset?: bigint;
}

export function kvmSetUserMemoryRegion2(vm: Fd, r: UserMemoryRegion2): void {
  const syscall = 'ioctl(KVM_SET_USER_MEMORY_REGION2)';
  kvmFile(vm, syscall, 'kvm-vm');
  if (r.mapping && (!r.mapping.isMapped || (r.mappingOffset ?? 0n) + r.memorySize > r.mapping.length)) throw new RangeError(`${syscall}: range outside the mapping`);
  record('kvmSetUserMemoryRegion2', [vm, r]);
  kvm.regions.push(r);
}

export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  if (size < 0 || size >= 1 << 14) throw new RangeError(`ioctl argument size ${size} does not fit _IOC_SIZEBITS`);
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
export const _IO = (type: number, nr: number): number => _IOC(IOC_NONE, type, nr, 0);
export const _IOR = (type: number, nr: number, size: number): number => _IOC(IOC_READ, type, nr, size);
export const _IOW = (type: number, nr: number, size: number): number => _IOC(IOC_WRITE, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number => _IOC(IOC_READ | IOC_WRITE, type, nr, size);

// ---- sockets: not faked -------------------------------------------------------------------------

export const sockets: typeof Real.sockets = new Proxy({} as typeof Real.sockets, {
  get: (_t, prop) => {
    throw new Error(`fake native: sockets.${String(prop)} is not faked (use an integration test)`);
  },
});

// ---- conformance with the real module (checked by tsc only) ------------------------------------

/** The real types with Fd, Mapping and SysError replaced by the fakes'. */
type Swap<T> = T extends Real.Fd
  ? Fd
  : T extends Real.Mapping
    ? Mapping
    : T extends Real.SysError
      ? SysError
      : T extends (...a: infer A) => infer R
        ? (...a: SwapTuple<A>) => Swap<R>
        : T extends Promise<infer P>
          ? Promise<Swap<P>>
          : T extends Buffer | ArrayBufferView | AbortSignal | bigint | number | string | boolean | null | undefined
            ? T
            : T extends object
              ? { [K in keyof T]: Swap<T[K]> }
              : T;
type SwapTuple<A extends unknown[]> = { [K in keyof A]: Swap<A[K]> };
/** The public members of a real class instance, swapped. */
type Members<T> = { [K in keyof T]: Swap<T[K]> };

type Faked = 'openBeneath' | 'openDirectory' | 'unlinkAt' | 'beneathMode' | 'memfdCreate' | 'open' | 'openFile' | 'close' | 'shmOpen' | 'shmUnlink' | 'ftruncate' | 'addSeals' | 'getSeals' | 'fallocate' | 'fallocatePunchHole' | 'fstat' | 'fstatBlockSize' | 'fstatfs' | 'fdPageSize' | 'mmap' | 'munmap' | 'madvise' | 'mbind' | 'getpagesize' | 'pageSize' | 'sysconf' | 'onlineCpus' | 'getrlimit' | 'setrlimit' | 'populateWrite' | 'preallocate' | 'threadpoolSize' | 'kvmOpen' | 'kvmGetApiVersion' | 'kvmCreateVm' | 'kvmCheckExtension' | 'kvmCreateGuestMemfd' | 'kvmSetUserMemoryRegion2' | 'errnoName' | 'strerror' | '_IOC' | '_IO' | '_IOR' | '_IOW' | '_IOWR';
type FakedConstants = 'EXDEV' | 'ENOTDIR' | 'ENOSYS' | 'ELOOP' | 'PREALLOC_PIECE' | 'KVM_STRUCT_SIZES' | 'KVMIO' | 'KVM_GET_API_VERSION' | 'KVM_CREATE_VM' | 'KVM_CHECK_EXTENSION' | 'KVM_SET_USER_MEMORY_REGION2' | 'KVM_CREATE_GUEST_MEMFD' | 'IOC_NONE' | 'IOC_READ' | 'IOC_WRITE';

const conformance = {
  functions: {
    openBeneath, openDirectory, unlinkAt, beneathMode, memfdCreate, open, openFile, close, shmOpen, shmUnlink, ftruncate, addSeals, getSeals, fallocate, fallocatePunchHole, fstat, fstatBlockSize, fstatfs, fdPageSize, mmap, munmap, madvise, mbind,
    getpagesize, pageSize, sysconf, onlineCpus, getrlimit, setrlimit, populateWrite, preallocate, threadpoolSize, kvmOpen, kvmGetApiVersion, kvmCreateVm, kvmCheckExtension, kvmCreateGuestMemfd,
    kvmSetUserMemoryRegion2, errnoName, strerror, _IOC, _IO, _IOR, _IOW, _IOWR,
  } satisfies { [K in Faked]: Swap<(typeof Real)[K]> },
  constants: {
    EXDEV, ENOTDIR, ENOSYS, ELOOP, PREALLOC_PIECE, KVM_STRUCT_SIZES, KVMIO, KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_SET_USER_MEMORY_REGION2, KVM_CREATE_GUEST_MEMFD,
    IOC_NONE, IOC_READ, IOC_WRITE,
  } satisfies { [K in FakedConstants]: (typeof Real)[K] },
  classes: { Fd, SysError } satisfies { Fd: new (fd: number) => Members<Real.Fd>; SysError: new (syscall: string, errno: number) => Members<Real.SysError> },
  mapping: null as unknown as Mapping satisfies Members<Real.Mapping>,
  types: null as unknown as UserMemoryRegion2 satisfies Swap<Real.UserMemoryRegion2>,
};
void conformance;
