// An owned file descriptor. The native layer hands out Fd objects, never bare numbers it would
// have to track: close() is idempotent, and every wrapper refuses a closed Fd (EBADF) instead of
// passing its number on, because the kernel may already have given that number to another file.
import * as ffi from './ffi';
import { check, SysError, EBADF } from './errno';
import { FD_CLOEXEC, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD } from './constants';

/** F_DUPFD (<asm-generic/fcntl.h>): duplicate to the lowest free number, without FD_CLOEXEC. */
const F_DUPFD = 0;
const F_GETFL = 3;
const O_ACCMODE = 3;

export class Fd {
  #open = true;

  /** Takes ownership of `fd` (e.g. one inherited across exec or received over SCM_RIGHTS). */
  constructor(readonly fd: number) {
    if (!Number.isInteger(fd) || fd < 0) throw new RangeError(`not a file descriptor: ${fd}`);
  }

  get isOpen(): boolean {
    return this.#open;
  }

  /** The number, for a call about to be made; throws EBADF once closed. */
  raw(syscall: string): number {
    if (!this.#open) throw new SysError(syscall, EBADF);
    return this.fd;
  }

  /** Closes once; later calls do nothing. close(2)'s own errors are not reported: on Linux the
   *  number is released even when close fails (man 2 close, "Dealing with error returns"). */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    ffi.close(this.fd);
  }

  /** A new Fd for the same open file (fcntl F_DUPFD_CLOEXEC, or F_DUPFD if cloexec is false). */
  dup(cloexec = true): Fd {
    const n = check('fcntl(F_DUPFD)', ffi.fcntl(this.raw('fcntl(F_DUPFD)'), cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 0));
    return new Fd(n);
  }

  /** Whether the fd is closed across execve (FD_CLOEXEC). guest_memfd fds start without it
   *  (facts §6.2, §10.2). */
  get cloexec(): boolean {
    return (check('fcntl(F_GETFD)', ffi.fcntl(this.raw('fcntl(F_GETFD)'), F_GETFD, 0)) & FD_CLOEXEC) !== 0;
  }

  /** The open file description's access mode: O_RDONLY, O_WRONLY or O_RDWR (F_GETFL &
   *  O_ACCMODE). A copy passed to another process keeps it. */
  get accessMode(): number {
    return check('fcntl(F_GETFL)', ffi.fcntl(this.raw('fcntl(F_GETFL)'), F_GETFL, 0)) & O_ACCMODE;
  }

  setCloexec(on: boolean): void {
    const fd = this.raw('fcntl(F_SETFD)');
    const flags = check('fcntl(F_GETFD)', ffi.fcntl(fd, F_GETFD, 0));
    check('fcntl(F_SETFD)', ffi.fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC));
  }
}
