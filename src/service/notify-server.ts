// The service manager's end of sd_notify(3), as systemd 252 implements it for a Type=notify
// unit with a fd store: a datagram socket receiving "KEY=VALUE" lines with SCM_RIGHTS fds.
// FDSTORE=1 keeps the fds under FDNAME (the same file twice under one name is kept once, newest
// first as systemd lists them), FDSTOREREMOVE=1 drops every fd of the name. Used by
// hostmemd-supervise and by the tests' service manager.
import * as native from '../native';

const S = native.sockets;

export interface StoredFd {
  name: string;
  fd: native.Fd;
}

export class NotifyServer {
  /** Newest first. */
  readonly store: StoredFd[] = [];
  private readonly sock: native.Fd;
  private closed = false;
  private readonly loop: Promise<void>;

  /** `onMessage` sees every notification after the store has been updated by it. */
  constructor(
    readonly path: string,
    private readonly onMessage: (text: string, fields: Map<string, string>) => void = () => undefined,
  ) {
    this.sock = S.socket(S.SOCK_DGRAM);
    S.bind(this.sock, path);
    this.loop = this.receiveLoop();
  }

  private async receiveLoop(): Promise<void> {
    while (!this.closed) {
      let m: native.Received;
      try {
        m = await S.receiveWithFds(this.sock, 4096, 16);
      } catch {
        if (this.closed) return;
        continue; // a datagram with too many fds: dropped (they were closed)
      }
      if (this.closed) {
        for (const fd of m.fds) fd.close();
        return;
      }
      const text = m.data.toString();
      const fields = new Map<string, string>();
      for (const line of text.split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
      }
      if (fields.get('FDSTORE') === '1') this.keep(fields.get('FDNAME') ?? 'stored', m.fds);
      else for (const fd of m.fds) fd.close();
      if (fields.get('FDSTOREREMOVE') === '1') this.remove(fields.get('FDNAME'));
      this.onMessage(text, fields);
    }
  }

  private keep(name: string, fds: native.Fd[]): void {
    for (const fd of fds) {
      const st = native.fstat(fd);
      const dup = this.store.some((s) => {
        if (s.name !== name) return false;
        const o = native.fstat(s.fd);
        return o.ino === st.ino && o.dev === st.dev;
      });
      if (dup) fd.close();
      else this.store.unshift({ name, fd });
    }
  }

  private remove(name: string | undefined): void {
    for (let i = this.store.length - 1; i >= 0; i--) {
      if (this.store[i].name === name) {
        this.store[i].fd.close();
        this.store.splice(i, 1);
      }
    }
  }

  names(): string[] {
    return this.store.map((s) => s.name).sort();
  }

  /** Empties the store (systemd 252 does so when the unit stops). */
  dropStore(): void {
    for (const s of this.store.splice(0)) s.fd.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The receive loop waits in recvmsg on a pool thread: wake it with one datagram.
    const waker = S.socket(S.SOCK_DGRAM);
    try {
      S.sendWithFds(waker, Buffer.from('\0'), [], this.path);
    } finally {
      waker.close();
    }
    await this.loop;
    this.sock.close();
    this.dropStore();
  }
}
