// Opening client-named paths confined beneath a directory (mem-path, issue 12): openat2(2) with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS, so that no symlink, magic link,
// absolute path or '..' leads out of the directory; where openat2 is missing (ENOSYS: Linux
// before 5.6, or a seccomp filter) a walk one component at a time with O_NOFOLLOW that refuses
// '..' altogether. Either way an escape fails EXDEV and a symlink ELOOP, so callers can tell.
import * as ffi from './ffi';
import { check, SysError } from './errno';
import { Fd } from './fd';
import { fstat } from './libc';
import {
  AT_FDCWD, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_NOFOLLOW, O_PATH, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, S_IFDIR, S_IFLNK, S_IFMT,
} from './constants';

/** errnos of <asm-generic/errno-base.h> and <asm-generic/errno.h> this module raises or reads. */
export const EXDEV = 18;
export const ENOTDIR = 20;
export const ENOSYS = 38;
export const ELOOP = 40;
const EPERM = 1;
const EAGAIN = 11;

/** struct open_how (<linux/openat2.h>): u64 flags, u64 mode, u64 resolve: 24 bytes. */
const OPEN_HOW_SIZE = 24;
const RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
/** openat2 fails EAGAIN with RESOLVE_BENEATH when a rename raced the lookup; it is retried. */
const OPENAT2_RETRIES = 8;

/** How openBeneath resolves: openat2 until the kernel says ENOSYS, then the walk. */
let useOpenat2 = true;

/** Which resolution openBeneath uses now; `mode` switches it (tests run both). */
export function beneathMode(mode?: 'openat2' | 'walk'): 'openat2' | 'walk' {
  if (mode) useOpenat2 = mode === 'openat2';
  return useOpenat2 ? 'openat2' : 'walk';
}

/** An O_PATH fd of the directory `path` (symlinks in it are followed: it is the
 *  administrator's own path), to resolve beneath. */
export function openDirectory(path: string): Fd {
  return new Fd(check('open', ffi.openat(AT_FDCWD, path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0)));
}

/** Opens `rel` beneath `dir` ('' or '.' is `dir` itself) with `flags` (O_CLOEXEC added;
 *  `mode` used only with O_CREAT). An absolute `rel` or a '..' leaving `dir` fails EXDEV, a
 *  symlink anywhere in `rel` (the last component too) ELOOP; otherwise open's own errors. */
export function openBeneath(dir: Fd, rel: string, flags: number, mode = 0): Fd {
  const name = rel === '' ? '.' : rel;
  if (useOpenat2) {
    try {
      return openat2Beneath(dir, name, flags | O_CLOEXEC, flags & O_CREAT ? mode : 0);
    } catch (e) {
      // ENOSYS: no openat2 here, for good. EPERM: perhaps a seccomp filter that answers EPERM
      // (systemd's default), perhaps the file's own refusal: the walk, stricter, tells.
      if (!(e instanceof SysError) || (e.errno !== ENOSYS && e.errno !== EPERM)) throw e;
      if (e.errno === ENOSYS) useOpenat2 = false;
    }
  }
  return walkBeneath(dir, name, flags | O_CLOEXEC, mode);
}

/** unlinkat(2): removes `name` (a file directly in `dir`). */
export function unlinkAt(dir: Fd, name: string): void {
  check('unlinkat', ffi.unlinkat(dir.raw('unlinkat'), name, 0));
}

function openat2Beneath(dir: Fd, rel: string, flags: number, mode: number): Fd {
  const how = Buffer.alloc(OPEN_HOW_SIZE);
  how.writeBigUInt64LE(BigInt(flags), 0);
  how.writeBigUInt64LE(BigInt(mode), 8);
  how.writeBigUInt64LE(BigInt(RESOLVE), 16);
  for (let i = 0; ; i++) {
    const rc = ffi.openat2(dir.raw('openat2'), rel, how);
    if (rc >= 0) return new Fd(rc);
    const errno = ffi.errno();
    if (errno !== EAGAIN || i >= OPENAT2_RETRIES) throw new SysError('openat2', errno);
  }
}

/** The fallback: each directory opened O_PATH|O_NOFOLLOW and checked by fstat (a symlink is
 *  ELOOP), the last component opened with O_NOFOLLOW. '..' is refused even when it would stay
 *  beneath: without the kernel's help a directory moved meanwhile could let it climb out. */
function walkBeneath(dir: Fd, rel: string, flags: number, mode: number): Fd {
  if (rel.startsWith('/')) throw new SysError('openat', EXDEV);
  const parts = rel.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new SysError('openat', EXDEV);
  const last = parts.pop() ?? '.';
  let cur = dir;
  try {
    for (const c of parts) {
      const next = new Fd(check('openat', ffi.openat(cur.raw('openat'), c, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0)));
      if (cur !== dir) cur.close();
      cur = next;
      const type = fstat(cur).mode & S_IFMT;
      if (type === S_IFLNK) throw new SysError('openat', ELOOP);
      if (type !== S_IFDIR) throw new SysError('openat', ENOTDIR);
    }
    const fd = new Fd(check('openat', ffi.openat(cur.raw('openat'), last, flags | O_NOFOLLOW, flags & O_CREAT ? mode : 0)));
    // O_PATH|O_NOFOLLOW opens a symlink itself instead of failing: refuse it here.
    if (flags & O_PATH && (fstat(fd).mode & S_IFMT) === S_IFLNK) {
      fd.close();
      throw new SysError('openat', ELOOP);
    }
    return fd;
  } finally {
    if (cur !== dir) cur.close();
  }
}
