// Fuzz connection: one negotiated QMP client over the UNIX socket or the WebSocket that sends
// fuzz bytes (split into writes/frames as asked) and then a sync request whose reply proves
// the daemon read everything before it and is still serving this client. Every line the
// daemon sends must be a well-formed reply or event; replies between two syncs are counted so
// that a caller who knows how many complete messages it sent can check each got its answer.
import * as net from 'node:net';
import WebSocket from 'ws';

export type Transport = 'unix' | 'ws';

/** The id of sync requests: an object, which no generated id is. */
const syncId = (n: number): string => `{"fuzz-sync":${n}}`;

interface PendingSync {
  n: number;
  resolve: (replies: number) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A reply line as JSON. QEMU prints a double id that overflowed (1e999) as `inf` (printf's
 *  %.17g), which is not JSON; hostmemd echoes ids as QEMU does, so such tokens outside strings
 *  are read as null here rather than counted as malformed. */
function parseReply(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    const fixed = text.replace(/("(?:[^"\\]|\\.)*")|-?\b(?:inf|nan)\b/g, (m, s: string | undefined) => s ?? 'null');
    if (fixed === text) throw e;
    return JSON.parse(fixed) as Record<string, unknown>;
  }
}

export class FuzzConn {
  private buf: Buffer = Buffer.alloc(0);
  /** Lines of the greeting and the negotiation reply still to skip (the greeting can arrive
   *  in the same turn as the WebSocket's open event). */
  private greeted = 2;
  private readonly greetLines: string[] = [];
  private replies = 0;
  private nextSync = 0;
  private readonly pending: PendingSync[] = [];
  private closedWhy?: string;
  private lastError = '';
  private onNegotiated?: (e?: Error) => void;
  /** OBJECT_ADDED events seen (every client gets every event). */
  objectsAdded = 0;
  /** Malformed lines, with the input that preceded them (failures). */
  readonly violations: string[] = [];

  private constructor(
    readonly transport: Transport,
    private readonly write: (b: Buffer) => void,
    private readonly end: () => void,
  ) {}

  static async open(transport: Transport, where: { sock: string; wsUrl: string; token: string }): Promise<FuzzConn> {
    let c: FuzzConn;
    if (transport === 'unix') {
      const s = net.connect(where.sock);
      c = new FuzzConn('unix', (b) => s.write(b), () => s.destroy());
      s.on('data', (d: Buffer) => c.onData(d, true));
      s.on('close', () => c.onClose('socket closed'));
      s.on('error', () => undefined);
    } else {
      const ws = new WebSocket(where.wsUrl, { headers: { authorization: `Bearer ${where.token}` } });
      // Binary frames: the daemon feeds them to the parser like text ones, and they may carry
      // bytes that are not UTF-8 (a text frame would be refused by the WebSocket layer).
      c = new FuzzConn('ws', (b) => ws.send(b, { binary: true }), () => ws.terminate());
      ws.on('message', (d: Buffer) => c.onData(d, false));
      ws.on('close', (code: number, reason: Buffer) => c.onClose(`WebSocket closed ${code} ${reason.toString()}`));
      ws.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${transport}: no greeting and negotiation within 10 s (received: ${c.greetLines.join(' | ').slice(0, 300)})`)), 10000);
      c.onNegotiated = (e) => {
        clearTimeout(timer);
        if (e) reject(e);
        else resolve();
      };
      c.write(Buffer.from('{"execute":"qmp_capabilities"}'));
    });
    return c;
  }

  get closed(): string | undefined {
    return this.closedWhy;
  }

  /** Sends the chunks as separate writes (UNIX) or frames (WebSocket). */
  send(chunks: Buffer[]): void {
    for (const b of chunks) if (b.length > 0) this.write(b);
  }

  /** Sends a sync request (after `reset`, a 0xFF byte that ends whatever the parser was in the
   *  middle of, QMP's way to resynchronise) and resolves with how many replies came since the
   *  previous sync, once its answer arrives; rejects after `timeoutMs` or on close. */
  sync(timeoutMs: number, reset: boolean): Promise<number> {
    const n = this.nextSync++;
    const p = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.transport}: no answer to sync ${n} within ${timeoutMs} ms`)), timeoutMs);
      this.pending.push({ n, resolve, reject, timer });
    });
    this.write(Buffer.from(`${reset ? '\xff' : ''}{"execute":"query-version","id":${syncId(n)}}`, 'latin1'));
    return p;
  }

  close(): void {
    this.end();
  }

  private onData(d: Buffer, lines: boolean): void {
    if (!lines) return this.onLine(d);
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : Buffer.from(d);
    let i: number;
    while ((i = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.subarray(0, i);
      this.buf = this.buf.subarray(i + 2);
      this.onLine(line);
    }
  }

  private onLine(raw: Buffer): void {
    const text = raw.toString('utf8');
    if (this.greeted > 0) {
      this.greetLines.push(text);
      this.greeted--;
      if (this.greeted === 0) this.onNegotiated?.(text === '{"return": {}}' ? undefined : new Error(`negotiation: ${text}`));
      return;
    }
    let msg: Record<string, unknown>;
    try {
      msg = parseReply(text);
    } catch {
      this.violations.push(`not JSON: ${text.slice(0, 200)}`);
      return;
    }
    if ('event' in msg) {
      if (msg.event === 'OBJECT_ADDED') this.objectsAdded++;
      return;
    }
    const err = msg.error as { class?: unknown; desc?: unknown } | undefined;
    if (!('return' in msg) && !(err && typeof err.class === 'string' && typeof err.desc === 'string')) {
      this.violations.push(`not a reply: ${text.slice(0, 200)}`);
      return;
    }
    if (err) this.lastError = String(err.desc).slice(0, 200);
    const id = msg.id as { 'fuzz-sync'?: number } | undefined;
    if (id && typeof id === 'object' && typeof id['fuzz-sync'] === 'number') {
      const head = this.pending.shift();
      if (!head || head.n !== id['fuzz-sync']) {
        this.violations.push(`sync ${id['fuzz-sync']} answered out of order (expected ${head?.n})`);
        if (head) this.pending.unshift(head);
        return;
      }
      clearTimeout(head.timer);
      const n = this.replies;
      this.replies = 0;
      head.resolve(n);
      return;
    }
    this.replies++;
  }

  private onClose(why: string): void {
    this.closedWhy = `${why}${this.lastError ? ` (last error: ${this.lastError})` : ''}`;
    this.onNegotiated?.(new Error(`closed before negotiation: ${why}`));
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new Error(`${this.transport}: ${this.closedWhy} before sync ${p.n} was answered`));
    }
  }
}
