// Readiness of sockets that Node must not read itself: the UNIX QMP connections are read with
// recvmsg(2) so fds sent with a request (SCM_RIGHTS) are kept, where Node's read(2) would make
// the kernel drop them. A Watch is a libuv poll handle in Node's own event loop (ffi.ts): the
// loop's epoll reports the socket readable and the callback runs on the loop thread, exactly
// when Node would have read it — no thread, no extra wake-up. Level-triggered: while started
// and readable, the callback runs once per turn of the loop.
import * as ffi from './ffi';

export class Watch {
  private handle: bigint;
  private started = false;
  private closed = false;

  /** Watches `fd` (which must stay open until close()'s `then`); stopped until start(). */
  constructor(fd: number, onReady: (events: number) => void) {
    const { handle, rc } = ffi.uvPollOpen(fd, (status, events) => onReady(status < 0 ? ffi.UV_DISCONNECT : events));
    if (rc < 0) throw new Error(`uv_poll_init: ${ffi.uvStrerror(rc)}`);
    this.handle = handle;
  }

  get active(): boolean {
    return this.started;
  }

  start(): void {
    if (this.started || this.closed) return;
    const rc = ffi.uvPollStart(this.handle, ffi.UV_READABLE | ffi.UV_DISCONNECT);
    if (rc < 0) throw new Error(`uv_poll_start: ${ffi.uvStrerror(rc)}`);
    this.started = true;
  }

  stop(): void {
    if (!this.started || this.closed) return;
    ffi.uvPollStop(this.handle);
    this.started = false;
  }

  /** Stops for good; `then` runs when libuv has let go of the fd (close it there). */
  close(then: () => void): void {
    if (this.closed) return;
    this.closed = true;
    this.started = false;
    ffi.uvPollClose(this.handle, then);
    this.handle = 0n;
  }
}
