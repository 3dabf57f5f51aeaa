// One QMP connection, whatever carries it (UNIX socket or WebSocket): greeting, negotiation
// state, the in-band FIFO with OOB bypass, event delivery, and encoding replies to wire text
// (compact ASCII JSON in QEMU's member order, CRLF-terminated). Transports feed bytes in and
// take text out; they never look inside messages.
import { JsonStreamParser, StreamItem } from './json-stream';
import { encodeJson } from './json-writer';
import { JsonValue } from './json-value';
import { isOobRequest } from './dispatcher';
import { PreEncoded, Reply, SessionControl, CommandContext } from './messages';
import type { Monitor } from './monitor';

/** What a session needs from whatever carries its bytes. */
export interface Transport {
  readonly kind: string;
  /** Queues text for the peer. Returns false when the peer is not keeping up. */
  write(text: string): boolean;
  /** Stops/starts delivering input (flow control while the in-band queue is long). */
  pause(): void;
  resume(): void;
  /** Closes the connection after queued output is written. */
  end(): void;
}

/** In-band requests queued beyond this stop the transport from reading until the queue drains
 *  (QEMU suspends its monitor at 8, qemu-facts §1.5; we allow deeper pipelines). */
export const QUEUE_PAUSE_LENGTH = 64;

type Queued = { kind: 'value'; value: JsonValue } | { kind: 'error'; desc: string };

export enum SessionState {
  Negotiating,
  Command,
  Closed,
}

export class QmpSession implements SessionControl {
  state = SessionState.Negotiating;
  private oobEnabled = false;
  private readonly queue: Queued[] = [];
  private running = false;
  private paused = false;
  private out: string[] = [];
  private inReceive = false;
  private readonly parser: JsonStreamParser;
  private readonly ctx: CommandContext;

  constructor(
    private readonly monitor: Monitor,
    private readonly transportImpl: Transport,
    readonly clientId: string,
    readonly offeredCapabilities: readonly string[],
  ) {
    this.parser = new JsonStreamParser((item) => this.onItem(item));
    this.ctx = { session: this };
  }

  get transport(): string {
    return this.transportImpl.kind;
  }

  get negotiated(): boolean {
    return this.state === SessionState.Command;
  }

  /** Sends the greeting; the connection starts in negotiation mode. */
  start(): void {
    this.send(this.monitor.greeting(this.offeredCapabilities));
  }

  completeNegotiation(caps: readonly string[]): void {
    this.oobEnabled = caps.includes('oob');
    this.state = SessionState.Command;
  }

  /** Feeds bytes from the peer. Replies produced synchronously are written in one batch. */
  receive(chunk: Buffer): void {
    if (this.state === SessionState.Closed) return;
    this.inReceive = true;
    try {
      this.parser.feed(chunk);
    } finally {
      this.inReceive = false;
      this.flush();
    }
  }

  /** The peer went away: queued requests are dropped, partial input discarded (§1.7). A
   *  command already running finishes; its reply goes nowhere. */
  close(): void {
    if (this.state === SessionState.Closed) return;
    this.state = SessionState.Closed;
    this.queue.length = 0;
    this.out = [];
    this.parser.reset();
    this.monitor.detach(this);
  }

  /** Writes what is pending and closes the connection (daemon shutdown). */
  shutdown(): void {
    this.flush();
    this.transportImpl.end();
    this.close();
  }

  /** Delivers an already encoded event line; dropped while negotiating (§1.3). */
  deliverEvent(line: string): void {
    if (this.state !== SessionState.Command) return;
    this.send(line);
  }

  private onItem(item: StreamItem): void {
    if (item.kind === 'value' && isOobRequest(item.value)) {
      // Out-of-band: answered now, overtaking queued in-band requests (§1.5).
      this.answer(this.monitor.dispatcher.dispatch(item.value, this.ctx, this.oobEnabled));
      return;
    }
    this.queue.push(item);
    if (this.queue.length >= QUEUE_PAUSE_LENGTH && !this.paused) {
      this.paused = true;
      this.transportImpl.pause();
    }
    this.pump();
  }

  /** Runs queued in-band requests in order; an asynchronous command holds the queue. */
  private pump(): void {
    while (!this.running && this.queue.length > 0 && this.state !== SessionState.Closed) {
      const item = this.queue.shift() as Queued;
      if (item.kind === 'error') {
        this.writeReply({ hasId: false, error: { class: 'GenericError', desc: item.desc } });
        continue;
      }
      const r = this.monitor.dispatcher.dispatch(item.value, this.ctx, this.oobEnabled);
      if (r instanceof Promise) {
        this.running = true;
        this.monitor.beginCommand();
        void r.then((reply) => {
          this.monitor.endCommand();
          this.running = false;
          this.writeReply(reply);
          this.pump();
          if (!this.inReceive) this.flush();
        });
      } else {
        this.writeReply(r);
      }
    }
    if (this.paused && this.queue.length < QUEUE_PAUSE_LENGTH / 2 && this.state !== SessionState.Closed) {
      this.paused = false;
      this.transportImpl.resume();
    }
  }

  private answer(r: Reply | Promise<Reply>): void {
    if (r instanceof Promise) {
      this.monitor.beginCommand();
      void r.then((reply) => {
        this.monitor.endCommand();
        this.writeReply(reply);
        if (!this.inReceive) this.flush();
      });
    } else {
      this.writeReply(r);
    }
  }

  private writeReply(reply: Reply): void {
    if (this.state === SessionState.Closed) return;
    this.send(encodeReply(reply));
  }

  private send(line: string): void {
    this.out.push(line);
    if (!this.inReceive) this.flush();
  }

  private flush(): void {
    if (this.out.length === 0 || this.state === SessionState.Closed) return;
    const text = this.out.length === 1 ? this.out[0] : this.out.join('');
    this.out = [];
    this.transportImpl.write(text);
  }
}

/** Encodes a reply the way QEMU prints it: members in QDict order
 *  (`{"return": R, "id": I}`, `{"id": I, "error": {"class": C, "desc": D}}`), then CRLF. */
export function encodeReply(reply: Reply): string {
  if (reply.error) {
    const err = `"error": {"class": ${encodeJson(reply.error.class)}, "desc": ${encodeJson(reply.error.desc)}}`;
    return reply.hasId ? `{"id": ${encodeJson(reply.id ?? null, { qdictOrder: true })}, ${err}}\r\n` : `{${err}}\r\n`;
  }
  const result = reply.result;
  const ret = result instanceof PreEncoded ? result.json : encodeJson(result === undefined ? {} : result, { qdictOrder: true });
  return reply.hasId ? `{"return": ${ret}, "id": ${encodeJson(reply.id ?? null, { qdictOrder: true })}}\r\n` : `{"return": ${ret}}\r\n`;
}
