// Texts of failures, in one place: `errorText` for anything thrown, and `failedWith` for
// QEMU's "what failed: why" shape, where a failed system call contributes only glibc's
// strerror text ("failed to create memfd with flags 0x3: Too many open files").
import { ErrorClass, QmpError } from './qmp-error';

/** A failed system call as the native layer throws it (SysError), recognised by shape so
 *  that this leaf imports nothing. */
interface ErrnoFailure {
  errno: number;
  strerror: string;
}

function isErrnoFailure(e: unknown): e is ErrnoFailure {
  return e instanceof Error && typeof (e as Partial<ErrnoFailure>).errno === 'number' && typeof (e as Partial<ErrnoFailure>).strerror === 'string';
}

/** The message of anything thrown (an Error's message, else its string form). */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Why something failed, as QEMU words the part after the colon: strerror for a failed call,
 *  the text of a QMP error, else the message. */
export function reasonText(e: unknown): string {
  if (isErrnoFailure(e)) return e.strerror;
  if (e instanceof QmpError) return e.desc;
  return errorText(e);
}

/** QEMU's "prefix: reason" error in one call: `throw failedWith('failed to resize memfd', e)`. */
export function failedWith(prefix: string, e: unknown, errorClass: ErrorClass = 'GenericError'): QmpError {
  return new QmpError(errorClass, `${prefix}: ${reasonText(e)}`);
}

/** Most characters of client-supplied text (a command name, a bad token, an id) echoed in an
 *  error desc or written to the log: an attacker's 64 MiB name must not become a 64 MiB reply
 *  or log line. QEMU echoes such text whole; hostmemd ends it with TRUNCATION_MARK. */
export const MAX_ECHO_CHARS = 1024;
export const TRUNCATION_MARK = '...';

/** `text` if it is at most `max` characters, else its first `max` characters and "...". */
export function clip(text: string, max = MAX_ECHO_CHARS): string {
  return text.length <= max ? text : text.slice(0, max) + TRUNCATION_MARK;
}
