// QMP over an accepted WebSocket: adapts the socket to a session Transport (each QMP line
// goes out as one text frame without its CRLF; each incoming frame is fed to the session as
// bytes, so the JSON stream parser sees exactly what a UNIX socket would carry) and enforces
// the per-connection limits: frame size, request rate (requests, not frames: one frame may
// carry millions) and a slow-reader rule (past a send backlog the client's requests wait; a
// client that then takes none of its output for a while is cut off, one that keeps reading
// never is). Handshake, authentication and the HTTP server are web/'s business.
import type * as net from 'node:net';
import type { WebSocket, RawData } from 'ws';
import type { Monitor } from '../qmp/monitor';
import type { Transport } from '../qmp/session';

export interface WebSocketLimits {
  /** Largest frame (message) accepted; ws closes with 1009 beyond it. QEMU's token limit. */
  maxPayload: number;
  /** Sustained incoming requests per second per connection (each QMP message parsed, and each
   *  frame that completes none); 0 disables the limit. */
  ratePerSecond: number;
  /** Requests a client may send at once above the sustained rate. */
  rateBurst: number;
  /** Output bytes queued for a client past which its requests wait and its input is not read
   *  until the backlog is written (a pipelining client is slowed down, not queued for). */
  maxBufferedBytes: number;
  /** A client with such a backlog that takes none of it for this long counts as a stuck reader
   *  and is cut off. A client that keeps reading, however slowly, never is: a size bound cut
   *  off readers of a long pipeline or of one large reply (a 17 MB id) while they read. */
  stalledReaderMs: number;
}

export const DEFAULT_WS_LIMITS: WebSocketLimits = {
  maxPayload: 64 * 1024 * 1024,
  ratePerSecond: 1000,
  rateBurst: 2000,
  maxBufferedBytes: 1024 * 1024,
  stalledReaderMs: 10_000,
};

/** How often a backlogged connection is checked for progress. */
const STALL_CHECK_MS = 250;

/** Bytes of this socket's output the kernel has taken so far: what Node handed to libuv minus
 *  what libuv still holds. libuv's count drops with every partial write, so progress shows
 *  within one large frame too (Node's own counters move only when a whole write completes).
 *  Node internals (stable for years); without them, progress shows at each completed write. */
function bytesTaken(sock: net.Socket): number {
  const s = sock as unknown as { _bytesDispatched?: number; _handle?: { writeQueueSize?: number } | null };
  return (s._bytesDispatched ?? 0) - (s._handle?.writeQueueSize ?? 0);
}

/** Close codes (RFC 6455 §7.4.1) and the reasons sent with them (at most 123 bytes). */
export const CLOSE_TOO_LARGE = 1009;
export const CLOSE_POLICY = 1008;
export const CLOSE_TRY_AGAIN = 1013;
export const CLOSE_GOING_AWAY = 1001;

export function tooLargeReason(limit: number): string {
  return `QMP message too large: the limit is ${limit} bytes`;
}

export function rateReason(rate: number): string {
  return `QMP message rate limit exceeded: at most ${rate} messages per second`;
}

export interface WebSocketEvents {
  onConnect?(clientId: string): void;
  onDisconnect?(clientId: string): void;
  onRefused?(): void;
  onCutOff?(clientId: string, reason: 'slow-reader' | 'rate-limit' | 'too-large', detail: string): void;
}

class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  clientId = 'websocket-?';
  attached(clientId: string): void {
    this.clientId = clientId;
  }
  /** Set by serveQmpWebSocket: charges one parsed request to the rate limit. */
  admitRequest: () => boolean = () => true;
  /** Reading stopped by the session (long queue, large input) / by the output backlog. */
  private sessionPaused = false;
  private outputPaused = false;
  private drainWaiters: (() => void)[] = [];
  private watch: NodeJS.Timeout | undefined;
  private lastTaken = 0;
  private lastProgress = 0;
  constructor(
    private readonly ws: WebSocket,
    private readonly limits: WebSocketLimits,
    private readonly onStuck: (detail: string) => void,
  ) {
    ws.once('close', () => this.stopWatch());
  }

  private get sock(): net.Socket | undefined {
    return (this.ws as unknown as { _socket?: net.Socket })._socket;
  }

  admit(): boolean {
    return this.admitRequest();
  }

  write(text: string): boolean {
    if (this.ws.readyState !== this.ws.OPEN) return false;
    // Session output is CRLF-terminated compact ASCII JSON: a CRLF never occurs inside a
    // message (strings escape control characters), so splitting on it yields whole messages.
    // Text after the last CRLF is the start of a message written in pieces (a huge reply): it
    // goes as a fragment (RFC 6455 §5.4), continued by the next write.
    let start = 0;
    for (let i = text.indexOf('\r\n'); i >= 0; i = text.indexOf('\r\n', start)) {
      this.ws.send(text.slice(start, i), { fin: true });
      start = i + 2;
    }
    if (start < text.length) this.ws.send(text.slice(start), { fin: false });
    if (this.ws.bufferedAmount <= this.limits.maxBufferedBytes) return true;
    this.startBacklog();
    return false;
  }

  /** A reply in ready chunks (query-memdev at 10,000 objects): one text frame sent from its
   *  bytes rather than from a string made of them. The chunks are one message and its CRLF. */
  writeBytes(chunks: readonly Buffer[]): boolean {
    if (this.ws.readyState !== this.ws.OPEN) return false;
    const data = Buffer.concat(chunks);
    if (data.indexOf('\r\n') !== data.length - 2) return this.write(data.toString('latin1'));
    this.ws.send(data.subarray(0, data.length - 2), { binary: false });
    if (this.ws.bufferedAmount <= this.limits.maxBufferedBytes) return true;
    this.startBacklog();
    return false;
  }

  backlogged(then: () => void): boolean {
    if (!this.outputPaused) return false;
    this.drainWaiters.push(then);
    return true;
  }

  /** Stops reading until the backlog is written, and watches that it is being taken. */
  private startBacklog(): void {
    const sock = this.sock;
    if (!sock || this.outputPaused) return;
    this.outputPaused = true;
    this.ws.pause();
    sock.once('drain', () => {
      this.outputPaused = false;
      this.stopWatch();
      for (const w of this.drainWaiters.splice(0)) w();
      if (!this.sessionPaused && !this.outputPaused && this.ws.readyState === this.ws.OPEN) this.ws.resume();
    });
    this.lastTaken = bytesTaken(sock);
    this.lastProgress = Date.now();
    this.watch = setInterval(() => {
      const taken = bytesTaken(sock);
      const now = Date.now();
      if (taken > this.lastTaken) {
        this.lastTaken = taken;
        this.lastProgress = now;
      } else if (now - this.lastProgress >= this.limits.stalledReaderMs) {
        this.stopWatch();
        this.onStuck(`${this.ws.bufferedAmount} bytes unsent, none taken for ${this.limits.stalledReaderMs / 1000} s`);
      }
    }, Math.min(STALL_CHECK_MS, this.limits.stalledReaderMs));
    this.watch.unref();
  }

  private stopWatch(): void {
    if (this.watch !== undefined) clearInterval(this.watch);
    this.watch = undefined;
  }

  pause(): void {
    this.sessionPaused = true;
    this.ws.pause();
  }

  resume(): void {
    this.sessionPaused = false;
    if (!this.outputPaused) this.ws.resume();
  }

  end(reason?: string): void {
    // Queued frames go out first, then the close frame: a daemon shutdown, or the session's
    // own reason (a negotiation timeout) as a policy close. Reading resumes so that the peer's
    // close frame is read (else the closing handshake waits for ws's 30 s timeout).
    this.ws.resume();
    if (reason !== undefined) this.ws.close(CLOSE_POLICY, reason);
    else this.ws.close(CLOSE_GOING_AWAY, 'hostmemd is shutting down');
  }
}

/** A token bucket: `rate` per second sustained, `burst` at once. */
class RateLimiter {
  private tokens: number;
  private last = performance.now();
  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Serves QMP on an open WebSocket until either side closes it. */
export function serveQmpWebSocket(monitor: Monitor, ws: WebSocket, limits: WebSocketLimits, events: WebSocketEvents = {}): void {
  let cutOff = false;
  const transport = new WebSocketTransport(ws, limits, (detail) =>
    // A reader that takes nothing will not read a close frame either: drop the connection.
    cut('slow-reader', detail, () => ws.terminate()),
  );
  function cut(reason: 'slow-reader' | 'rate-limit' | 'too-large', detail: string, close: () => void): void {
    if (cutOff) return;
    cutOff = true;
    events.onCutOff?.(transport.clientId, reason, detail);
    ws.resume(); // input may be paused (a large frame being parsed): the peer's close frame must be read
    close();
  }

  // ws closes an oversized message with 1009 but no reason; give the peer the limit in words.
  // (It calls close() on the instance, so an own property takes precedence.)
  const plainClose = ws.close.bind(ws);
  ws.close = (code?: number, reason?: string | Buffer): void => {
    if (code === CLOSE_TOO_LARGE && !reason) {
      cut('too-large', `frame larger than ${limits.maxPayload} bytes`, () => undefined);
      plainClose(code, tooLargeReason(limits.maxPayload));
      return;
    }
    plainClose(code, reason);
  };

  const attached = monitor.attach(transport);
  if ('refusal' in attached) {
    events.onRefused?.();
    ws.send(attached.refusal.replace(/\r\n$/, ''));
    plainClose(CLOSE_TRY_AGAIN, 'too many QMP clients');
    return;
  }
  const s = attached;
  events.onConnect?.(s.clientId);
  const limiter = limits.ratePerSecond > 0 ? new RateLimiter(limits.ratePerSecond, Math.max(1, limits.rateBurst)) : undefined;

  // Every request parsed is charged, so a frame of many requests costs what as many frames
  // would; a frame is charged once even if it completes no request (a flood of fragments).
  // Beyond the limit the connection is cut off and its queued requests are dropped, as on any
  // disconnect (qemu-facts §1.7); the session stops parsing the rest of the frame.
  let frameCredit = false; // the current frame's charge, not yet spent on a request
  const take = (): boolean => {
    if (cutOff) return false;
    if (!limiter || limiter.take()) return true;
    cut('rate-limit', `more than ${limits.ratePerSecond} messages per second`, () => plainClose(CLOSE_POLICY, rateReason(limits.ratePerSecond)));
    return false;
  };
  transport.admitRequest = (): boolean => {
    if (frameCredit) {
      frameCredit = false; // the frame's own charge covers its first request
      return !cutOff;
    }
    return take();
  };
  ws.on('message', (data: RawData) => {
    if (cutOff || ws.readyState !== ws.OPEN) return;
    if (!take()) {
      s.close();
      return;
    }
    frameCredit = true;
    s.receive(toBuffer(data));
  });
  ws.on('error', () => {
    /* 'close' follows; the reason was logged where it is known */
  });
  ws.on('close', () => {
    s.close();
    events.onDisconnect?.(s.clientId);
  });
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
