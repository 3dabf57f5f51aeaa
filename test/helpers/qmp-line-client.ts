// Test helper: what every raw QMP test client shares, whatever carries its lines (a UNIX
// socket's CRLF lines, a WebSocket's frames): waiting for lines with a timeout, JSON, execute
// skipping events, waiting for an event, silence and close.

import { LineQueue } from './line-queue';

export abstract class QmpLineClient {
  private readonly lines = new LineQueue<string>();

  /** Sends text or raw bytes exactly as given. */
  abstract send(data: string | Buffer): void;
  abstract close(): void;

  /** Extra words for the "connection closed" error (e.g. a WebSocket close code). */
  protected closedDetail(): string {
    return '';
  }

  protected deliver(line: string): void {
    this.lines.push(line);
  }

  protected markClosed(): void {
    this.lines.end();
  }

  get isClosed(): boolean {
    return this.lines.closed;
  }

  /** The next server line (or frame); rejects on close or timeout. */
  async line(timeoutMs = 5000): Promise<string> {
    return this.lines.next(timeoutMs, () => new Error(`connection closed (${this.closedDetail()})`));
  }

  async json(timeoutMs?: number): Promise<Record<string, unknown>> {
    return JSON.parse(await this.line(timeoutMs)) as Record<string, unknown>;
  }

  /** Reads the greeting and negotiates (optionally enabling capabilities such as oob). */
  async negotiate(enable?: string[]): Promise<this> {
    await this.line();
    const args = enable ? `,"arguments":{"enable":${JSON.stringify(enable)}}` : '';
    this.send(`{"execute":"qmp_capabilities"${args}}`);
    const r = await this.line();
    if (r !== '{"return": {}}') throw new Error(`negotiation failed: ${r}`);
    return this;
  }

  /** Sends a command and returns the next message that is not an event. */
  async execute(cmd: string, args?: unknown, id?: unknown): Promise<Record<string, unknown>> {
    const msg: Record<string, unknown> = { execute: cmd };
    if (args !== undefined) msg.arguments = args;
    if (id !== undefined) msg.id = id;
    this.send(JSON.stringify(msg));
    for (;;) {
      const r = await this.json();
      if (!('event' in r)) return r;
    }
  }

  /** Waits for the next event named `name`, skipping other messages. */
  async event(name: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.json(Math.max(1, deadline - Date.now()));
      if (r.event === name) return r;
    }
  }

  /** Resolves true if no line arrives within ms. */
  async silentFor(ms: number): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.lines.size === 0;
  }

  protected async untilClosed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.lines.closed) {
      if (Date.now() > deadline) throw new Error('connection did not close');
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
