// QMP over a UNIX stream socket: owns the listening socket file (mode 0660, optional group,
// stale file replaced, removed on close) and adapts each connection to a session Transport.
// It never looks inside the bytes; sessions do.
import * as net from 'node:net';
import * as fs from 'node:fs';
import type { Monitor } from '../qmp/monitor';
import type { QmpSession, Transport } from '../qmp/session';

export interface UnixListenOptions {
  path: string;
  /** File mode of the socket (default 0o660). */
  mode?: number;
  /** Numeric group to chown the socket to. */
  gid?: number;
  /** An already listening fd (socket activation) instead of creating `path`. */
  fd?: number;
}

/** Output bytes a connection may have pending before it counts as a stuck reader. */
export const MAX_PENDING_OUTPUT = 16 * 1024 * 1024;

class SocketTransport implements Transport {
  readonly kind = 'unix';
  constructor(
    private readonly sock: net.Socket,
    private readonly onStuck: () => void,
  ) {}
  write(text: string): boolean {
    if (this.sock.destroyed) return false;
    const ok = this.sock.write(text);
    if (!ok && this.sock.writableLength > MAX_PENDING_OUTPUT) this.onStuck();
    return ok;
  }
  pause(): void {
    this.sock.pause();
  }
  resume(): void {
    this.sock.resume();
  }
  end(): void {
    this.sock.end();
  }
}

export interface UnixServerEvents {
  onClientRefused?(path: string): void;
  onStuckClient?(clientId: string): void;
  onConnect?(clientId: string): void;
  onDisconnect?(clientId: string): void;
}

export class UnixQmpServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private ownsPath = false;

  constructor(
    private readonly monitor: Monitor,
    private readonly opts: UnixListenOptions,
    private readonly events: UnixServerEvents = {},
  ) {
    this.server = net.createServer({ allowHalfOpen: false }, (sock) => this.accept(sock));
  }

  get path(): string {
    return this.opts.path;
  }

  async listen(): Promise<void> {
    if (this.opts.fd !== undefined) {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen({ fd: this.opts.fd }, () => resolve());
      });
      return;
    }
    await removeStaleSocket(this.opts.path);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.path, () => resolve());
    });
    this.ownsPath = true;
    fs.chmodSync(this.opts.path, this.opts.mode ?? 0o660);
    if (this.opts.gid !== undefined) fs.chownSync(this.opts.path, process.getuid?.() ?? 0, this.opts.gid);
  }

  private accept(sock: net.Socket): void {
    let session: QmpSession | undefined;
    const transport = new SocketTransport(sock, () => {
      if (session) this.events.onStuckClient?.(session.clientId);
      sock.destroy();
    });
    const attached = this.monitor.attach(transport);
    if ('refusal' in attached) {
      this.events.onClientRefused?.(this.opts.path);
      // Drain and drop whatever the client sends, write the refusal, then close: an untracked
      // half-open socket would otherwise keep server.close() waiting at shutdown.
      sock.on('error', () => sock.destroy());
      sock.resume();
      sock.end(attached.refusal, () => sock.destroy());
      return;
    }
    session = attached;
    const s = session;
    this.sockets.add(sock);
    this.events.onConnect?.(s.clientId);
    sock.on('data', (chunk: Buffer) => s.receive(chunk));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      this.sockets.delete(sock);
      s.close();
      this.events.onDisconnect?.(s.clientId);
    });
  }

  /** Stops accepting, closes connections, removes the socket file. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.ownsPath) {
      try {
        fs.unlinkSync(this.opts.path);
      } catch {
        /* already gone */
      }
    }
  }

  /** Stops accepting new connections but leaves existing ones alone. */
  stopAccepting(): void {
    this.server.close();
  }
}

/** Removes a socket file nobody listens on any more; refuses to replace a live one or a
 *  file that is not a socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path} is in use by another server`);
  fs.unlinkSync(path);
}
