// QMP over a UNIX stream socket: owns the listening socket file (mode 0660, optional group,
// stale file replaced, removed on close) and adapts each connection to a session Transport.
// It never looks inside the bytes; sessions do. The same server also serves a TCP port, and
// connections made elsewhere (a monitor that connects out, an inherited connected fd).
// Node writes; Node never reads: input is taken
// with recvmsg(2) when a libuv poll handle in Node's own loop (native/poller.ts) reports it,
// so fds a client sends with a request (SCM_RIGHTS, getfd/add-fd) reach the session instead of
// being dropped by the kernel, as Node's read(2) would make it.
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as native from '../native';
import type { Monitor } from '../qmp/monitor';
import type { QmpSession, SessionExport, Transport } from '../qmp/session';
import type { PassedFd, PeerCredentials } from '../qmp/messages';
import { errorText } from '../errors/text';
import { prettyMessages } from '../json/pretty';

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
  /** Listen on a TCP address instead (`path` then only names it in logs). */
  tcp?: { host: string; port: number };
  /** QEMU's pretty=on: replies and events indented over several lines. */
  pretty?: boolean;
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
/** Bytes asked for per recvmsg (libuv's read size). */
const READ_CHUNK = 64 * 1024;
/** fds taken per recvmsg: QEMU's TCP_MAX_FDS. More in one message are cut (MSG_CTRUNC), and
 *  the kernel closes those that did not fit; each connection holds at most one such batch. */
export const MAX_FDS_PER_READ = 16;
/** How often a reply with fds retries when Node still has output queued or the socket buffer
 *  is full (Node tells neither when it empties: it is not the one writing). */
const FD_RETRY_MS = 1;
const FD_RETRY_MAX_MS = 50;

/** A reply with fds, or text written after one, waiting its turn. */
interface Outgoing {
  text: string;
  fds?: readonly PassedFd[];
}

/** Where a connection's input goes. */
interface InputSink {
  data(chunk: Buffer, fds: native.Fd[]): void;
  /** The peer shut down its sending side. */
  end(): void;
}

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
  /** The reader: a copy of the socket's fd (the poll handle watches it, so that the handle
   *  never outlives its fd when Node closes its own) and the poll handle. */
  private rfd: native.Fd | undefined;
  private watch_: native.Watch | undefined;
  private eof = false;
  private sink: InputSink | undefined;
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
  /** Replies with fds and what was written after them, in order: a reply with fds goes out
   *  with sendmsg(2) once Node's own write queue is empty, so that bytes stay in order. */
  private outgoing: Outgoing[] = [];
  private outgoingBytes = 0;
  private fdRetry: NodeJS.Timeout | undefined;
  private fdRetryMs = FD_RETRY_MS;
  private fdBlockedSince = 0;
  private fdTaken = 0;
  private endWhenSent = false;
  constructor(
    private readonly sock: net.Socket,
    private readonly onStuck: (clientId: string) => void,
    private readonly pretty = false,
  ) {
    sock.once('close', () => {
      this.stopWatch();
      this.dropOutgoing();
      this.stopReader();
    });
  }

  /** Starts reading into `sink`. */
  startReading(sink: InputSink): void {
    this.sink = sink;
    if (this.sock.destroyed) return;
    this.rfd = new native.Fd(pipeHandle(this.sock).fd).dup();
    this.watch_ = new native.Watch(this.rfd.fd, () => this.readSome());
    this.kick();
  }

  private stopReader(): void {
    const rfd = this.rfd;
    this.watch_?.close(() => rfd?.close());
    this.watch_ = undefined;
    this.rfd = undefined;
  }

  private get mayRead(): boolean {
    return !this.sessionPaused && !this.outputPaused && !this.turnPaused && !this.handedOver && !this.eof && !this.sock.destroyed && this.rfd !== undefined;
  }

  /** Reading may go on (a pause ended): watch for input again. */
  private kick(): void {
    if (this.mayRead) this.watch_?.start();
  }

  /** Input is there: take up to READ_BYTES_PER_TURN of it this turn (the poll handle is
   *  level-triggered: what is left is read on the next turn), and stop watching while reading
   *  is not allowed (kick() starts again). */
  private readSome(): void {
    while (this.mayRead) {
      let r: native.sockets.Incoming | undefined;
      try {
        r = native.sockets.receiveNow(this.rfd!.fd, READ_CHUNK, MAX_FDS_PER_READ);
      } catch {
        // ECONNRESET and the like: the connection is gone.
        this.sock.destroy();
        return;
      }
      if (r === undefined) return; // drained: the handle stays started
      if (r.bytes.length === 0 && r.fds.length === 0) {
        this.eof = true;
        this.watch_?.stop();
        this.sink?.end();
        return;
      }
      if (this.sink) this.sink.data(r.bytes, r.fds);
      else for (const fd of r.fds) fd.close();
      this.delivered(r.bytes.length);
    }
    this.watch_?.stop();
  }

  attached(clientId: string): void {
    this.clientId = clientId;
  }
  /** pretty=on: the start of a message written in pieces, re-indented once it is whole. */
  private prettyHeld = '';

  write(text: string): boolean {
    if (this.sock.destroyed) return false;
    if (this.pretty) {
      const whole = this.prettyHeld + text;
      const end = whole.lastIndexOf('\r\n') + 2;
      this.prettyHeld = whole.slice(end);
      if (end === 1) return !this.outputPaused; // no message complete yet (lastIndexOf -1)
      text = prettyMessages(whole.slice(0, end));
    }
    if (this.outgoing.length > 0) {
      this.queueOutgoing({ text });
      return !this.outputPaused;
    }
    return this.writeNow(text);
  }
  private writeNow(text: string): boolean {
    // Session output is ASCII: latin1 is a byte copy, where utf8 would scan a 1.5 MB reply.
    const ok = this.sock.write(text, 'latin1');
    if (this.sock.writableLength > OUTPUT_PAUSE_BYTES) this.startBacklog();
    return ok;
  }
  /** A reply in ready chunks (query-memdev at 10,000 objects): handed to the socket as they
   *  are, one writev, instead of joined and converted into a second 1.5 MB copy. */
  writeBytes(chunks: readonly Buffer[]): boolean {
    if (this.sock.destroyed) return false;
    if (this.pretty || this.outgoing.length > 0) return this.write(Buffer.concat(chunks).toString('latin1'));
    this.sock.cork();
    for (const c of chunks) this.sock.write(c);
    this.sock.uncork();
    if (this.sock.writableLength > OUTPUT_PAUSE_BYTES) this.startBacklog();
    return this.sock.writableLength <= this.sock.writableHighWaterMark;
  }
  writeWithFds(text: string, fds: readonly PassedFd[]): void {
    if (this.sock.destroyed) {
      for (const fd of fds) fd.close();
      return;
    }
    if (this.pretty) text = prettyMessages(text);
    this.queueOutgoing({ text, fds });
    if (this.outgoing.length === 1) this.sendOutgoing();
  }

  peerCredentials(): PeerCredentials | undefined {
    try {
      return native.sockets.peerCredentials(pipeHandle(this.sock).fd);
    } catch {
      return undefined;
    }
  }

  private queueOutgoing(o: Outgoing): void {
    this.outgoing.push(o);
    this.outgoingBytes += o.text.length;
    // Text piling up behind a reply the peer does not take counts as a backlog, as Node's own.
    if (this.outgoingBytes > OUTPUT_PAUSE_BYTES && !this.outputPaused) {
      this.outputPaused = true;
    }
  }

  /** Sends queued replies with fds and the text behind them, in order, never blocking: a
   *  reply with fds waits until Node has written everything before it, then goes with one
   *  nonblocking sendmsg; what the kernel did not take of its bytes goes through Node. A
   *  peer that takes nothing for STALLED_READER_MS is cut off, as for plain output. */
  private sendOutgoing(): void {
    this.fdRetry = undefined;
    while (this.outgoing.length > 0) {
      if (this.sock.destroyed) return this.dropOutgoing();
      const head = this.outgoing[0];
      if (head.fds === undefined) {
        this.outgoing.shift();
        this.outgoingBytes -= head.text.length;
        this.writeNow(head.text);
        continue;
      }
      let sent = 0;
      if (this.sock.writableLength === 0) {
        const data = Buffer.from(head.text, 'latin1');
        try {
          sent = native.sockets.sendNow(pipeHandle(this.sock).fd, data, head.fds as native.Fd[]);
        } catch {
          // EPIPE, ECONNRESET: the peer is gone; 'close' releases what is queued.
          this.sock.destroy();
          return this.dropOutgoing();
        }
        if (sent > 0) {
          for (const fd of head.fds) fd.close();
          this.outgoing.shift();
          this.outgoingBytes -= head.text.length;
          if (sent < data.length) this.writeNow(data.subarray(sent).toString('latin1'));
          this.fdRetryMs = FD_RETRY_MS;
          this.fdBlockedSince = 0;
          continue;
        }
      }
      // Node still writes earlier output, or the socket buffer is full: try again soon.
      const now = Date.now();
      const taken = bytesTaken(this.sock);
      if (this.fdBlockedSince === 0 || taken !== this.fdTaken) {
        this.fdBlockedSince = now;
        this.fdTaken = taken;
      } else if (now - this.fdBlockedSince >= STALLED_READER_MS) {
        this.onStuck(this.clientId);
        return this.dropOutgoing();
      }
      this.fdRetry = setTimeout(() => this.sendOutgoing(), this.fdRetryMs);
      this.fdRetryMs = Math.min(FD_RETRY_MAX_MS, this.fdRetryMs * 2);
      return;
    }
    if (this.outputPaused && this.sock.writableLength <= OUTPUT_PAUSE_BYTES && !this.drainPending) this.outputDrained();
    if (this.endWhenSent) this.end();
  }

  /** The connection is gone: fds not sent are closed, queued text dropped. */
  private dropOutgoing(): void {
    if (this.fdRetry !== undefined) clearTimeout(this.fdRetry);
    this.fdRetry = undefined;
    for (const o of this.outgoing.splice(0)) for (const fd of o.fds ?? []) fd.close();
    this.outgoingBytes = 0;
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
        this.kick();
      });
    }
    if (this.turnBytes >= READ_BYTES_PER_TURN && !this.turnPaused) this.turnPaused = true;
  }
  backlogged(then: () => void): boolean {
    if (!this.outputPaused) return false;
    this.drainWaiters.push(then);
    return true;
  }
  /** Stops reading until the backlog is written, and watches that it is being taken. */
  private startBacklog(): void {
    if (!this.drainPending) {
      this.outputPaused = true;
      this.drainPending = true;
      this.sock.once('drain', () => {
        this.drainPending = false;
        if (this.outgoingBytes <= OUTPUT_PAUSE_BYTES) this.outputDrained();
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
  /** Waiting for Node's 'drain' of a large backlog. */
  private drainPending = false;
  /** The output backlog is gone: requests run and input is read again. */
  private outputDrained(): void {
    this.outputPaused = false;
    this.stopWatch();
    for (const w of this.drainWaiters.splice(0)) w();
    this.kick();
  }
  private stopWatch(): void {
    if (this.watch !== undefined) clearInterval(this.watch);
    this.watch = undefined;
  }
  pause(): void {
    // Input already armed in the poller is simply not read when it comes (readSome checks).
    this.sessionPaused = true;
  }
  resume(): void {
    this.sessionPaused = false;
    // A handover that took this connection failed: read it again.
    this.handedOver = false;
    this.kick();
  }
  end(): void {
    if (this.outgoing.length > 0) {
      // Replies with fds still queued go first.
      this.endWhenSent = true;
      return;
    }
    // The connection is done once its output is written: a peer that never closes its side
    // (an idle client timed out) must not keep the socket open.
    this.sock.end(() => this.sock.destroy());
  }
  /** Waits for written output to reach the kernel and stops reading. Nothing is read ahead of
   *  what was delivered, so nothing is pending. Uses the Pipe handle's fd (Node internals,
   *  stable on Unix): core Node has no public way to give a connection to another process. */
  async handOver(): Promise<{ fd: number; pending: Buffer } | undefined> {
    const gone = (): boolean => this.sock.destroyed || (this.sock as unknown as { _handle?: unknown })._handle == null;
    if (gone()) return undefined; // closed meanwhile: nothing to hand over
    const deadline = Date.now() + HANDOVER_FLUSH_MS;
    while (this.sock.writableLength > 0 || this.outgoing.length > 0) {
      if (gone()) return undefined;
      if (Date.now() > deadline) throw new Error('a client did not take its pending output');
      await new Promise((r) => setTimeout(r, 2));
    }
    if (gone()) return undefined;
    const h = pipeHandle(this.sock);
    this.watch_?.stop();
    this.handedOver = true; // resume() starts reading again if the handover fails
    return { fd: h.fd, pending: Buffer.alloc(0) };
  }
}

/** How long a handover waits for a client's pending output to be written. */
const HANDOVER_FLUSH_MS = 5000;

interface PipeHandle {
  fd: number;
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
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => this.accept(sock));
  }

  get path(): string {
    return this.opts.path;
  }

  async listen(): Promise<void> {
    if (this.opts.tcp) {
      const { host, port } = this.opts.tcp;
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen({ host, port, backlog: LISTEN_BACKLOG }, () => resolve());
      });
      return;
    }
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
    return new SocketTransport(
      sock,
      (clientId) => {
        this.events.onStuckClient?.(clientId);
        sock.destroy();
      },
      this.opts.pretty === true,
    );
  }

  /** Serves a connection made elsewhere (a monitor that connects out, an inherited connected
   *  fd) like one accepted here; a server that only does this never listen()s. */
  serveConnection(sock: net.Socket): void {
    this.accept(sock);
  }

  /** The TCP port listened on (port 0 asks the kernel for one). */
  tcpPort(): number | undefined {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? a.port : undefined;
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
    // Half-close: the session answers what it received, then ends the connection itself.
    transport.startReading({ data: (chunk, fds) => s.receive(chunk, fds), end: () => s.peerEnded() });
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
    // pauseOnCreate: Node must not start reading it (the transport reads with recvmsg).
    const sock = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true, pauseOnCreate: true } as net.SocketConstructorOpts);
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
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => this.accept(sock));
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
