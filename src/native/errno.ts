// Failed system calls as exceptions: SysError carries errno, its symbolic name and glibc's
// strerror text. The text is used verbatim in QEMU-compatible messages ("failed to create memfd
// with flags 0x%x: Invalid argument"), so it comes from glibc itself, in the C locale.
import { constants as osConstants } from 'node:os';
import * as ffi from './ffi';
import type { QmpErrorBody, QmpMappable } from '../errors/to-qmp';

/** Names for errnos that have two (<asm-generic/errno.h>: EWOULDBLOCK = EAGAIN, EDEADLOCK =
 *  EDEADLK; ENOTSUP = EOPNOTSUPP in glibc's <bits/errno.h>): the spelling strerror(3) describes. */
const PREFERRED_NAMES: Record<number, string> = { 11: 'EAGAIN', 35: 'EDEADLK', 95: 'EOPNOTSUPP' };

const NAMES: Map<number, string> = (() => {
  const m = new Map<number, string>();
  for (const [name, value] of Object.entries(osConstants.errno)) if (!m.has(value)) m.set(value, name);
  for (const [value, name] of Object.entries(PREFERRED_NAMES)) m.set(Number(value), name);
  return m;
})();

/** The symbolic name of an errno ('EINVAL'), or 'E<n>' for numbers libuv does not know. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `E${errno}`;
}

const TEXTS = new Map<number, string>();

/** glibc's strerror(3) text in the C locale ("Invalid argument", "Cannot allocate memory"). */
export function strerror(errno: number): string {
  let text = TEXTS.get(errno);
  if (text === undefined) {
    text = ffi.strerrorC(errno);
    TEXTS.set(errno, text);
  }
  return text;
}

/** A failed system call. `errno` is positive (unlike node's negative uv errnos). Callers
 *  that have QEMU's wording wrap it (errors/text.ts failedWith); one that reaches the funnel
 *  unwrapped still answers as a GenericError naming the call, not as an internal error. */
export class SysError extends Error implements QmpMappable {
  readonly errno: number;
  /** Symbolic name, e.g. 'EINVAL'. */
  readonly code: string;
  /** The call that failed, e.g. 'memfd_create' or 'ioctl(KVM_CREATE_GUEST_MEMFD)'. */
  readonly syscall: string;
  /** glibc's text, e.g. 'Invalid argument'. */
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

  toQmp(): QmpErrorBody {
    return { class: 'GenericError', desc: this.message };
  }
}

/** Throws SysError for a negative return value, reading errno before any other FFI call (facts
 *  §10.21: strerror or a later call could overwrite it). Returns rc otherwise. */
export function check(syscall: string, rc: number): number {
  if (rc < 0) throw new SysError(syscall, ffi.errno());
  return rc;
}

/** errno values the native layer raises itself, without a call (<asm-generic/errno-base.h>). */
export const EBADF = 9;
export const EINVAL = 22;
