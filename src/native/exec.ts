// Replacing this process with another program (execve), for hostmemd-run: received fds go to
// the numbers the program expects and it keeps the launcher's pid. Node has no exec. Placing
// the fds overwrites numbers Node's own event loop may hold (epoll, eventfds), so placement and
// execve happen in one synchronous call and nothing of Node runs in between.
import * as fs from 'node:fs';
import * as ffi from './ffi';
import { check, SysError, EINVAL } from './errno';
import { Fd } from './fd';
import { CLOSE_RANGE_CLOEXEC, FD_CLOEXEC, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, RLIMIT_NOFILE } from './constants';
import { getrlimit } from './libc';

/** The first fd number after standard input, output and error. */
export const FIRST_FREE_FD = 3;
/** The highest fd number close_range takes (~0U). */
const MAX_FD = 0xffffffff;
/** Signals Node ignores (SIGPIPE, SIGXFSZ: /proc/PID/status SigIgn) and execve would pass on
 *  ignored: the program gets the default dispositions a shell would give it. */
const NODE_IGNORED_SIGNALS = [13 /* SIGPIPE */, 25 /* SIGXFSZ */];

export interface Placement {
  /** The fd to pass (it may be close-on-exec; its copy at `target` is not). */
  fd: Fd;
  /** The number the program finds it at: FIRST_FREE_FD or above, below the open-files limit. */
  target: number;
}

/** The soft RLIMIT_NOFILE: fd numbers must be below it (dup2 answers EBADF otherwise). */
export function openFilesLimit(): number {
  const cur = getrlimit(RLIMIT_NOFILE).cur;
  return cur > BigInt(0x7fffffff) ? 0x7fffffff : Number(cur);
}

/** Marks every fd from 3 up close-on-exec except `keep`: the program gets stdio and the placed
 *  fds, nothing else. (Node itself marks some inherited fds close-on-exec at start and not
 *  others, so a pass-through would be a matter of chance.) close_range covers each gap between
 *  the kept numbers in one call, so an fd that one of Node's threads opens meanwhile is covered
 *  too; a listing of /proc/self/fd is the fallback for kernels before 5.11 (racy: an fd opened
 *  after the listing passes through). */
function closeOthersOnExec(keep: readonly number[]): void {
  const kept = [...keep].sort((a, b) => a - b);
  let first = FIRST_FREE_FD;
  let ranged = true;
  for (const k of [...kept, MAX_FD + 1]) {
    if (k > first && ffi.closeRange(first, k - 1, CLOSE_RANGE_CLOEXEC) !== 0) {
      ranged = false;
      break;
    }
    first = k + 1;
  }
  if (ranged) return;
  const skip = new Set(kept);
  for (const name of fs.readdirSync('/proc/self/fd')) {
    const n = Number(name);
    if (!Number.isInteger(n) || n < FIRST_FREE_FD || skip.has(n)) continue;
    const flags = ffi.fcntl(n, F_GETFD, 0);
    if (flags >= 0 && (flags & FD_CLOEXEC) === 0) ffi.fcntl(n, F_SETFD, flags | FD_CLOEXEC);
  }
}

/** Where the caller stands after execWithFds returned (it only returns on failure). */
export interface ExecFailure {
  error: SysError;
  /** True once fds were placed: numbers Node used are overwritten, so the caller must report
   *  with a plain write(2) and leave with exitNow(), never through Node's event loop. */
  clobbered: boolean;
}

/** Places each fd at its target with close-on-exec cleared (and on standard input, output and
 *  error, which Node marks close-on-exec at start), resets the signals Node ignores, and execs
 *  `path` with `argv` and `env` ("NAME=value"). Every other fd of this process is closed on
 *  exec. Returns only if something failed. */
export function execWithFds(path: string, argv: readonly string[], env: readonly string[], placements: readonly Placement[]): ExecFailure {
  const targets = placements.map((p) => p.target);
  const limit = openFilesLimit();
  if (new Set(targets).size !== targets.length || targets.some((t) => !Number.isInteger(t) || t < FIRST_FREE_FD || t >= limit)) {
    return { error: new SysError('dup2', EINVAL), clobbered: false };
  }
  // First move every fd above all targets (a received fd may sit on another one's target, or
  // on its own: dup2 onto itself would leave close-on-exec set). F_DUPFD_CLOEXEC picks the
  // lowest free number at or above `top`, so no copy lands on a target.
  const top = Math.max(FIRST_FREE_FD - 1, ...targets) + 1;
  const moved: number[] = [];
  try {
    for (const p of placements) moved.push(check('fcntl(F_DUPFD_CLOEXEC)', ffi.fcntl(p.fd.raw('fcntl(F_DUPFD_CLOEXEC)'), F_DUPFD_CLOEXEC, top)));
  } catch (e) {
    for (const n of moved) ffi.close(n);
    if (e instanceof SysError) return { error: e, clobbered: false };
    throw e;
  }
  for (let stdio = 0; stdio < FIRST_FREE_FD; stdio++) {
    const flags = ffi.fcntl(stdio, F_GETFD, 0);
    if (flags >= 0 && flags & FD_CLOEXEC) ffi.fcntl(stdio, F_SETFD, flags & ~FD_CLOEXEC);
  }
  for (const sig of NODE_IGNORED_SIGNALS) ffi.signalDefault(sig);
  // From here on Node's fds at the target numbers are gone. dup2 cannot fail: each source is
  // open and each target is below the limit (checked above); its copy is never close-on-exec.
  placements.forEach((p, i) => {
    ffi.dup2(moved[i], p.target);
    ffi.close(moved[i]);
  });
  closeOthersOnExec(targets);
  const rc = ffi.execve(path, [...argv, null], [...env, null]);
  return { error: new SysError('execve', rc < 0 ? ffi.errno() : EINVAL), clobbered: true };
}

/** _exit(2): leaves at once (after a failed execWithFds, Node's teardown would touch fds that
 *  are no longer its own). */
export function exitNow(status: number): never {
  ffi.exitNow(status);
  throw new Error('_exit returned');
}
