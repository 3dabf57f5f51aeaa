// Numeric constants of the Linux x86-64 user ABI used by the native layer: values come from the
// uapi headers named on each group (and glibc's headers where libc defines them). Kept apart from
// libc.ts so that fd.ts and mapping.ts can use them without an import cycle.

// open(2) flags: <asm-generic/fcntl.h> (octal, as in the header).
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_CLOEXEC = 0o2000000;
/** An fd that only names a file: no read/write, no open side effects, no blocking (FIFOs). */
export const O_PATH = 0o10000000;
/** dirfd meaning the current directory (<linux/fcntl.h>). */
export const AT_FDCWD = -100;
/** unlinkat(2): remove a directory (<linux/fcntl.h>). */
export const AT_REMOVEDIR = 0x200;

// openat2(2) resolve flags: <linux/openat2.h> (Linux 5.6+).
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;

// fcntl(2) commands and fd flags: <asm-generic/fcntl.h>, <linux/fcntl.h>.
export const F_GETFD = 1;
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;
/** close_range(2) flag: mark the range close-on-exec instead of closing it (linux/close_range.h). */
export const CLOSE_RANGE_CLOEXEC = 1 << 2;
/** F_LINUX_SPECIFIC_BASE (1024) + 6. */
export const F_DUPFD_CLOEXEC = 1030;
/** F_LINUX_SPECIFIC_BASE + 9 / + 10 (man 2 fcntl, "File Sealing"). */
export const F_ADD_SEALS = 1033;
export const F_GET_SEALS = 1034;
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SEAL_FUTURE_WRITE = 0x10;

// memfd_create(2) flags: <linux/memfd.h>.
export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
export const MFD_HUGETLB = 0x4;
/** Linux 6.3+: non-executable memfd, sealed against chmod +x. */
export const MFD_NOEXEC_SEAL = 0x8;
export const MFD_EXEC = 0x10;
/** log2(huge page size) << MFD_HUGE_SHIFT selects the size (<asm-generic/hugetlb_encode.h>). */
export const MFD_HUGE_SHIFT = 26;
export const MFD_HUGE_2MB = 21 << MFD_HUGE_SHIFT;
export const MFD_HUGE_1GB = 30 << MFD_HUGE_SHIFT;

// mmap(2): <asm-generic/mman-common.h>, <asm-generic/mman.h>, <linux/mman.h>.
export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_HUGETLB = 0x40000;
export const MAP_SYNC = 0x80000;
export const MAP_FIXED_NOREPLACE = 0x100000;

// madvise(2) advice: <asm-generic/mman-common.h> (and qemu-facts §5.7 for the ones QEMU uses).
export const MADV_NORMAL = 0;
export const MADV_RANDOM = 1;
export const MADV_SEQUENTIAL = 2;
export const MADV_WILLNEED = 3;
export const MADV_DONTNEED = 4;
export const MADV_FREE = 8;
/** Free the range and its backing store (punch a hole): QEMU's discard-data. */
export const MADV_REMOVE = 9;
export const MADV_DONTFORK = 10;
export const MADV_DOFORK = 11;
/** KSM candidates: VmFlags "mg". Only anonymous (incl. MAP_PRIVATE file) memory merges. */
export const MADV_MERGEABLE = 12;
export const MADV_UNMERGEABLE = 13;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
/** Exclude from core dumps: VmFlags "dd". */
export const MADV_DONTDUMP = 16;
export const MADV_DODUMP = 17;
export const MADV_WIPEONFORK = 18;
export const MADV_KEEPONFORK = 19;
export const MADV_COLD = 20;
export const MADV_PAGEOUT = 21;
/** Linux 5.14+: fault pages in as if read / written, without touching them from userspace. */
export const MADV_POPULATE_READ = 22;
export const MADV_POPULATE_WRITE = 23;
export const MADV_COLLAPSE = 25;

// mbind(2) modes and flags: <linux/mempolicy.h>.
export const MPOL_DEFAULT = 0;
export const MPOL_PREFERRED = 1;
export const MPOL_BIND = 2;
export const MPOL_INTERLEAVE = 3;
export const MPOL_LOCAL = 4;
export const MPOL_PREFERRED_MANY = 5;
export const MPOL_WEIGHTED_INTERLEAVE = 6;
export const MPOL_MF_STRICT = 1 << 0;
export const MPOL_MF_MOVE = 1 << 1;
export const MPOL_MF_MOVE_ALL = 1 << 2;

// fallocate(2) modes: <linux/falloc.h>.
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;

// stat(2) file type bits: <linux/stat.h>.
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

// statfs(2) f_type values: <linux/magic.h>.
export const HUGETLBFS_MAGIC = 0x958458f6;
export const TMPFS_MAGIC = 0x01021994;
export const ANON_INODE_FS_MAGIC = 0x09041934;

// sysconf(3) names: glibc <bits/confname.h> (an enum; these are its x86-64 values).
export const _SC_PAGESIZE = 30;
export const _SC_NPROCESSORS_CONF = 83;
export const _SC_NPROCESSORS_ONLN = 84;

// getrlimit(2): <asm-generic/resource.h>; RLIM_INFINITY is ~0UL on x86-64.
export const RLIMIT_NOFILE = 7;
export const RLIM_INFINITY = 0xffffffffffffffffn;

// prctl(2) options: <linux/prctl.h>; signal numbers: <asm/signal.h> (x86-64).
export const PR_SET_PDEATHSIG = 1;
export const PR_GET_PDEATHSIG = 2;
export const SIGTERM = 15;
