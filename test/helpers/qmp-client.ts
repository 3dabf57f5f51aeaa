// Test helper: a raw QMP client over a UNIX socket that sends exact bytes and reads
// CRLF-terminated server lines, so tests can assert the wire format itself.
import * as net from 'node:net';

export class RawQmpClient {
  private buf = '';
  private lines: string[] = [];
  private waiters: (() => void)[] = [];
  private closed = false;
  readonly sock: net.Socket;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        this.lines.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 2);
      }
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  static connect(path: string): Promise<RawQmpClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => resolve(new RawQmpClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects, reads the greeting and negotiates (optionally enabling oob). */
  static async negotiated(path: string, enable?: string[]): Promise<RawQmpClient> {
    const c = await RawQmpClient.connect(path);
    await c.line();
    const args = enable ? `,"arguments":{"enable":${JSON.stringify(enable)}}` : '';
    c.send(`{"execute":"qmp_capabilities"${args}}`);
    const r = await c.line();
    if (r !== '{"return": {}}') throw new Error(`negotiation failed: ${r}`);
    return c;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Sends text (UTF-8) or raw bytes exactly as given. */
  send(data: string | Buffer): void {
    this.sock.write(data);
  }

  /** The next server line without its CRLF; rejects on EOF or timeout. */
  async line(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.closed) throw new Error(`connection closed (pending: ${JSON.stringify(this.buf)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a line');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.lines.shift() as string;
  }

  /** Next line parsed as JSON. */
  async json(timeoutMs?: number): Promise<Record<string, unknown>> {
    return JSON.parse(await this.line(timeoutMs)) as Record<string, unknown>;
  }

  /** Sends a command and returns the next non-event line parsed. */
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

  /** Resolves true if no line arrives within ms. */
  async silentFor(ms: number): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.lines.length === 0;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection did not close');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  close(): void {
    this.sock.destroy();
  }
}
