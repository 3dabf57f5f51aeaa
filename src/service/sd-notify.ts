// The service manager side of systemd, spoken by the daemon itself (sd_notify(3),
// sd_listen_fds(3)): READY/STATUS/WATCHDOG/STOPPING and the fd store (FDSTORE=1 with the fd as
// SCM_RIGHTS, FDSTOREREMOVE=1) over $NOTIFY_SOCKET, and the fds passed at start by
// $LISTEN_FDS/$LISTEN_PID/$LISTEN_FDNAMES. Without $NOTIFY_SOCKET every call does nothing.
import * as native from '../native';
import { errorText } from '../errors/text';

/** First fd passed by the service manager (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/** FDNAME= allows up to 255 characters, no control characters and no ':' (sd_pid_notify_with_fds). */
export function validFdName(name: string): boolean {
  if (name.length === 0 || name.length > 255) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x3a /* ':' */) return false;
  }
  return true;
}

/** Why a backend fd cannot be stored when $NOTIFY_SOCKET has nobody behind it any more (the
 *  service manager or hostmemd-supervise died): object-add refuses rather than acknowledge
 *  memory that the next restart would not get back. */
export const FD_STORE_GONE = 'the fd store is gone';

export class FdStoreGone extends Error {
  constructor() {
    super(FD_STORE_GONE);
    this.name = 'FdStoreGone';
  }
}

/** A send to $NOTIFY_SOCKET found no receiver: nobody bound (ECONNREFUSED) or no socket file
 *  (ENOENT). */
export function receiverGone(e: unknown): boolean {
  const code = (e as { code?: unknown } | undefined)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOENT';
}

export class SdNotifier {
  private sock?: native.Fd;
  private watchdog?: NodeJS.Timeout;

  private constructor(
    readonly socketPath: string | undefined,
    private readonly watchdogUsec: number | undefined,
  ) {}

  /** Reads $NOTIFY_SOCKET and the watchdog settings meant for this process. */
  static fromEnv(env: NodeJS.ProcessEnv, pid = process.pid): SdNotifier {
    const path = env.NOTIFY_SOCKET || undefined;
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === pid;
    return new SdNotifier(path, Number.isFinite(usec) && usec > 0 && forUs ? usec : undefined);
  }

  get enabled(): boolean {
    return this.socketPath !== undefined;
  }

  /** Sends one notification (lines "KEY=VALUE"), with fds if given. Throws SysError. */
  send(state: string, fds: native.Fd[] = []): void {
    if (!this.socketPath) return;
    this.sock ??= native.sockets.socket(native.sockets.SOCK_DGRAM);
    native.sockets.sendWithFds(this.sock, Buffer.from(state), fds, this.socketPath);
  }

  ready(status: string): void {
    this.send(`READY=1\nSTATUS=${status}`);
  }

  status(status: string): void {
    this.send(`STATUS=${status}`);
  }

  stopping(status: string): void {
    this.send(`STOPPING=1\nSTATUS=${status}`);
  }

  /** Keeps `fd` in the service manager's store under `name`, across restarts of this service.
   *  Throws FdStoreGone when nobody receives any more, else SysError. */
  storeFd(name: string, fd: native.Fd): void {
    try {
      this.send(`FDSTORE=1\nFDNAME=${name}`, [fd]);
    } catch (e) {
      if (receiverGone(e)) throw new FdStoreGone();
      throw e;
    }
  }

  removeFd(name: string): void {
    this.send(`FDSTOREREMOVE=1\nFDNAME=${name}`);
  }

  /** WATCHDOG=1 at half the interval systemd expects (sd_watchdog_enabled(3)); the timer runs on
   *  the event loop, so a blocked loop is what the watchdog catches. Returns the interval in ms. */
  startWatchdog(onError: (e: unknown) => void): number | undefined {
    if (!this.enabled || this.watchdogUsec === undefined) return undefined;
    const ms = Math.max(1, Math.floor(this.watchdogUsec / 2000));
    const ping = (): void => {
      try {
        this.send('WATCHDOG=1');
      } catch (e) {
        onError(e);
      }
    };
    ping();
    this.watchdog = setInterval(ping, ms);
    this.watchdog.unref();
    return ms;
  }

  close(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.sock?.close();
    this.sock = undefined;
  }
}

export interface PassedFd {
  name: string;
  fd: native.Fd;
}

export interface ListenFds {
  /** Listening sockets (socket activation), in the order passed. */
  listeners: PassedFd[];
  /** Everything else: fds from the store, by name. */
  stored: PassedFd[];
  /** Passed fds that could not be used (closed), with why. */
  problems: string[];
}

/** Takes the fds systemd passed ($LISTEN_PID must be us), marks them close-on-exec and removes
 *  the variables from `env` so nothing inherits them (sd_listen_fds(3) with unset_environment). */
export function takeListenFds(env: NodeJS.ProcessEnv, pid = process.pid): ListenFds {
  const out: ListenFds = { listeners: [], stored: [], problems: [] };
  const n = Number(env.LISTEN_FDS);
  const forUs = Number(env.LISTEN_PID) === pid;
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  if (!forUs || !Number.isInteger(n) || n <= 0) return out;
  for (let i = 0; i < n; i++) {
    const fd = new native.Fd(LISTEN_FDS_START + i);
    const name = names[i] || 'unknown';
    try {
      fd.setCloexec(true);
      const c = native.sockets.classifyFd(fd);
      if (c.kind === 'file') out.stored.push({ name, fd });
      else if (c.kind === 'listening-socket' && c.socketType === native.sockets.SOCK_STREAM) out.listeners.push({ name, fd });
      else {
        out.problems.push(`fd ${fd.fd} ('${name}') is a socket hostmemd cannot serve (not a listening stream socket); closed`);
        fd.close();
      }
    } catch (e) {
      out.problems.push(`fd ${fd.fd} ('${name}') is unusable: ${errorText(e)}`);
      fd.close();
    }
  }
  return out;
}
