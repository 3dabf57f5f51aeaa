// QMP over a UNIX stream socket: owns the listening socket file (mode 0660, optional group,
// stale file replaced, removed on close) and adapts each connection to a session Transport.
// It never looks inside the bytes; sessions do.
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as native from '../native';
import type { Monitor } from '../qmp/monitor';
import type { QmpSession, SessionExport, Transport } from '../qmp/session';
import { errorText } from '../errors/text';

export interface UnixListenOptions {
  path: string;
  /** File mode of the socket (default 0o660). */
  mode?: number;
  /** Numeric group to chown the socket to. */
  gid?: number;
  /** An already listening fd (socket activation) instead of creating `path`. */
  fd?: number;
  /** With `fd`: remove `path` at close anyway (a socket handed over by an earlier hostmemd). */
  unlinkOnClose?: boolean;
}

/** Pending connections the kernel queues while nobody accepts (a handover's last step). */
const LISTEN_BACKLOG = 4096;

/** Output bytes a connection may have pending before its input is no longer read: a client
 *  that pipelines requests faster than it reads replies is slowed down, not queued for. */
export const OUTPUT_PAUSE_BYTES = 1024 * 1024;
/** A connection with more than OUTPUT_PAUSE_BYTES pending that takes none of it for this long
 *  counts as a stuck reader and is cut off. A reader that keeps reading, however slowly, never
 *  is (a size bound would cut off a fast reader of a long pipeline). */
export const STALLED_READER_MS = 10_000;
/** How often a backlogged connection is checked for progress. */
const STALL_CHECK_MS = 1000;
/** Input bytes one connection may deliver per event-loop turn. libuv reads up to 32 times
 *  64 KiB per poll: a pipelining client would otherwise have 2 MiB of requests (~50,000) run
 *  before anyone else is served. */
export const READ_BYTES_PER_TURN = 64 * 1024;

/** Bytes of this socket's output the kernel has taken so far: what Node handed to libuv minus
 *  what libuv still holds. libuv's count drops with every partial write, so a reader of one
 *  large reply (a 48 MB echoed id) shows progress while it reads; Node's writableLength moves
 *  only when a whole write completes. Node internals (stable for years). */
function bytesTaken(sock: net.Socket): number {
  const s = sock as unknown as { _bytesDispatched?: number; _handle?: { writeQueueSize?: number } | null };
  return (s._bytesDispatched ?? 0) - (s._handle?.writeQueueSize ?? 0);
}

class SocketTransport implements Transport {
  readonly kind = 'unix';
  clientId = 'unix-?';
  private handedOver = false;
  /** Reading stopped by the session (long queue, handover) / by the output backlog. */
  private sessionPaused = false;
  private outputPaused = false;
  private lastSent = 0;
  private lastProgress = 0;
  private watch: NodeJS.Timeout | undefined;
  private drainWaiters: (() => void)[] = [];
  /** Bytes delivered in this event-loop turn, and whether reading waits for the next turn. */
  private turnBytes = 0;
  private turnEnding = false;
  private turnPaused = false;
  constructor(
    private readonly sock: net.Socket,
    private readonly onStuck: (clientId: string) => void,
  ) {
    sock.once('close', () => this.stopWatch());
  }
  attached(clientId: string): void {
    this.clientId = clientId;
  }
  write(text: string): boolean {
    if (this.sock.destroyed) return false;
    const ok = this.sock.write(text);
    if (this.sock.writableLength > OUTPUT_PAUSE_BYTES) this.startBacklog();
    return ok;
  }
  /** Counts input delivered; past READ_BYTES_PER_TURN, reading resumes only next turn. */
  delivered(bytes: number): void {
    this.turnBytes += bytes;
    if (!this.turnEnding) {
      this.turnEnding = true;
      setImmediate(() => {
        this.turnEnding = false;
        this.turnBytes = 0;
        if (!this.turnPaused) return;
        this.turnPaused = false;
        if (!this.sessionPaused && !this.outputPaused && !this.sock.destroyed) this.sock.resume();
      });
    }
    if (this.turnBytes >= READ_BYTES_PER_TURN && !this.turnPaused) {
      this.turnPaused = true;
      this.sock.pause();
    }
  }
  backlogged(then: () => void): boolean {
    if (!this.outputPaused) return false;
    this.drainWaiters.push(then);
    return true;
  }
  /** Stops reading until the backlog is written, and watches that it is being taken. */
  private startBacklog(): void {
    if (!this.outputPaused) {
      this.outputPaused = true;
      this.sock.pause();
      this.sock.once('drain', () => {
        this.outputPaused = false;
        this.stopWatch();
        for (const w of this.drainWaiters.splice(0)) w();
        if (!this.sessionPaused && !this.outputPaused && !this.turnPaused && !this.sock.destroyed) this.sock.resume();
      });
    }
    if (this.watch !== undefined) return;
    this.lastSent = bytesTaken(this.sock);
    this.lastProgress = Date.now();
    this.watch = setInterval(() => {
      const sent = bytesTaken(this.sock);
      const now = Date.now();
      if (sent !== this.lastSent) {
        this.lastSent = sent;
        this.lastProgress = now;
      } else if (now - this.lastProgress >= STALLED_READER_MS) {
        this.stopWatch();
        this.onStuck(this.clientId);
      }
    }, STALL_CHECK_MS);
    this.watch.unref();
  }
  private stopWatch(): void {
    if (this.watch !== undefined) clearInterval(this.watch);
    this.watch = undefined;
  }
  pause(): void {
    this.sessionPaused = true;
    this.sock.pause();
  }
  resume(): void {
    this.sessionPaused = false;
    if (this.handedOver) {
      // A handover that took this connection failed: libuv stopped reading behind the
      // stream's back (handOver), and the stream still counts a read in progress, so its own
      // resume() would never start one. Start it here, as Node's tryReadStart does.
      this.handedOver = false;
      const h = pipeHandle(this.sock);
      if (!this.sock.destroyed && !h.reading) {
        h.reading = true;
        h.readStart();
      }
    }
    if (!this.outputPaused && !this.turnPaused) this.sock.resume();
  }
  end(): void {
    // The connection is done once its output is written: a peer that never closes its side
    // (an idle client timed out) must not keep the socket open.
    this.sock.end(() => this.sock.destroy());
  }
  /** Waits for written output to reach the kernel, stops libuv reading, and takes what Node
   *  read but did not deliver (it goes to the session as input). Uses the Pipe handle's fd and readStop (Node internals, stable
   *  on Unix): core Node has no public way to give a connection to another process. */
  async handOver(): Promise<{ fd: number; pending: Buffer } | undefined> {
    const gone = (): boolean => this.sock.destroyed || (this.sock as unknown as { _handle?: unknown })._handle == null;
    if (gone()) return undefined; // closed meanwhile: nothing to hand over
    const deadline = Date.now() + HANDOVER_FLUSH_MS;
    while (this.sock.writableLength > 0) {
      if (gone()) return undefined;
      if (Date.now() > deadline) throw new Error('a client did not take its pending output');
      await new Promise((r) => setTimeout(r, 2));
    }
    if (gone()) return undefined;
    const h = pipeHandle(this.sock);
    h.readStop();
    h.reading = false;
    this.handedOver = true; // resume() starts reading again if the handover fails
    // What Node read but did not deliver: read() emits it as 'data', so the session takes it
    // like any other input (and holds it, being frozen).
    while (this.sock.read() !== null);
    return { fd: h.fd, pending: Buffer.alloc(0) };
  }
}

/** How long a handover waits for a client's pending output to be written. */
const HANDOVER_FLUSH_MS = 5000;

interface PipeHandle {
  fd: number;
  reading: boolean;
  readStop(): number;
  readStart(): number;
}
function pipeHandle(s: net.Socket | net.Server): PipeHandle {
  const h = (s as unknown as { _handle?: PipeHandle })._handle;
  if (!h || typeof h.fd !== 'number' || h.fd < 0) throw new Error('socket has no file descriptor');
  return h;
}

export interface UnixServerEvents {
  onClientRefused?(path: string): void;
  onStuckClient?(clientId: string): void;
  onConnect?(clientId: string): void;
  onDisconnect?(clientId: string): void;
}

export class UnixQmpServer {
  private server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly sessionOf = new Map<QmpSession, net.Socket>();
  private ownsPath = false;

  constructor(
    private readonly monitor: Monitor,
    private readonly opts: UnixListenOptions,
    private readonly events: UnixServerEvents = {},
  ) {
    this.server = net.createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
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
      this.ownsPath = this.opts.unlinkOnClose === true;
      return;
    }
    const sock = await createListeningSocket(this.opts.path, this.opts.mode, this.opts.gid);
    this.ownsPath = true;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ fd: sock.fd }, () => resolve());
    });
  }

  /** A connection whose peer stopped reading its replies is cut off. */
  private transportFor(sock: net.Socket): SocketTransport {
    return new SocketTransport(sock, (clientId) => {
      this.events.onStuckClient?.(clientId);
      sock.destroy();
    });
  }

  private accept(sock: net.Socket): void {
    const transport = this.transportFor(sock);
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
    this.track(sock, attached, transport);
  }

  private track(sock: net.Socket, s: QmpSession, transport: SocketTransport): void {
    this.sockets.add(sock);
    this.sessionOf.set(s, sock);
    this.events.onConnect?.(s.clientId);
    sock.on('data', (chunk: Buffer) => {
      s.receive(chunk);
      transport.delivered(chunk.length);
    });
    // Half-close: the session answers what it received, then ends the connection itself.
    sock.on('end', () => s.peerEnded());
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      this.sockets.delete(sock);
      this.sessionOf.delete(s);
      s.close();
      this.events.onDisconnect?.(s.clientId);
    });
  }

  /** Takes over a connection handed over by another hostmemd (its fd and session state). */
  adoptClient(fd: number, state: SessionExport): QmpSession {
    const sock = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    const transport = this.transportFor(sock);
    const session = this.monitor.adopt(transport, state);
    this.track(sock, session, transport);
    return session;
  }

  /** The listening socket's fd (handover sends a copy to the new process). */
  listenerFd(): number {
    return pipeHandle(this.server).fd;
  }

  /** Handover: stops listening here without removing the socket file (the new process
   *  listens on the same socket) and without touching the connections. */
  closeForHandover(): void {
    this.ownsPath = false;
    this.server.close(); // the handle closes now; 'close' waits for the connections
  }

  /** The handover failed after closeForHandover: listen again on a copy of the old socket. */
  async relisten(fd: number): Promise<void> {
    this.server = net.createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ fd }, () => resolve());
    });
    this.ownsPath = true;
  }

  /** Handover done: drops this process's copy of a handed-over connection. Closing a copy of
   *  the fd sends nothing to the peer (no shutdown), so the client does not notice. */
  dropHandedOver(session: QmpSession): void {
    const sock = this.sessionOf.get(session);
    if (!sock) return;
    sock.removeAllListeners('close');
    this.sockets.delete(sock);
    this.sessionOf.delete(session);
    session.close();
    sock.destroy();
  }

  /** Whether `session` is one of this server's connections. */
  has(session: QmpSession): boolean {
    return this.sessionOf.has(session);
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

/** A listening UNIX stream socket at `file` (a stale socket file is replaced, a live one is
 *  refused), with its mode and group set before listen() so no client connects with the wrong
 *  ones. Made here and given to Node as an fd: libuv then does not know its path and does not
 *  unlink it when a listener closes, so a handover (or hostmemd-supervise, which keeps it
 *  across daemon restarts) can close one copy while another keeps listening. */
export async function createListeningSocket(file: string, mode = 0o660, gid?: number): Promise<native.Fd> {
  await removeStaleSocket(file);
  const sock = native.sockets.socket(native.sockets.SOCK_STREAM);
  let bound = false;
  try {
    native.sockets.bind(sock, file);
    bound = true;
    fs.chmodSync(file, mode);
    if (gid !== undefined) fs.chownSync(file, process.getuid?.() ?? 0, gid);
    native.sockets.listen(sock, LISTEN_BACKLOG);
    return sock;
  } catch (e) {
    sock.close();
    if (bound) fs.rmSync(file, { force: true });
    throw new Error(`cannot listen on ${file}: ${errorText(e)}`);
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
