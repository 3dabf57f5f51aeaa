// A QMP client for driving a VMM's own monitor (QEMU's): connect with a bounded wait, take the
// greeting, negotiate, run commands one at a time with a deadline each. Events are kept aside
// (the upgrade watches MIGRATION/RESUME through query-migrate/query-status instead).
import * as net from 'node:net';
import { errorText } from '../errors/text';

export class MonitorError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`${command}: ${desc}`);
  }
}

type Pending = { command: string; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/** Longest line accepted from the VMM (a query-migrate or HMP answer is a few KiB). */
const MAX_LINE = 16 * 1024 * 1024;

export class QemuMonitor {
  private buf = '';
  private greeting: ((v: unknown) => void) | undefined;
  private readonly queue: Pending[] = [];
  private closedWith: Error | undefined;
  readonly events: { event: string; data?: unknown }[] = [];

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('error', (e) => this.fail(new Error(`monitor connection: ${errorText(e)}`)));
    sock.on('close', () => this.fail(new Error('monitor connection closed')));
  }

  /** Connects to a QMP UNIX socket, retrying until `timeoutMs` (the VMM may still be starting),
   *  and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 10_000, alive: () => boolean = () => true): Promise<QemuMonitor> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(path);
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        const mon = new QemuMonitor(sock);
        try {
          await mon.negotiate(Math.max(1000, deadline - Date.now()));
        } catch (e) {
          // Not left queued: QEMU would accept it later and be busy with a client nobody reads.
          mon.close();
          throw e;
        }
        return mon;
      } catch (e) {
        if (!alive()) throw new Error(`the VMM exited before its monitor ${path} answered`);
        if (Date.now() > deadline) throw new Error(`no QMP monitor at ${path} within ${timeoutMs} ms: ${errorText(e)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** The connected peer's socket (for SO_PEERCRED). */
  get socket(): net.Socket {
    return this.sock;
  }

  private async negotiate(timeoutMs: number): Promise<void> {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no QMP greeting')), timeoutMs);
      this.greeting = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
    });
    await this.execute('qmp_capabilities', undefined, timeoutMs);
  }

  /** Runs one command; resolves with its `return`, rejects with a MonitorError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.queue.findIndex((p) => p.timer === timer);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new Error(`${command}: no answer within ${timeoutMs} ms`));
        this.close();
      }, timeoutMs);
      this.queue.push({ command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock.write(JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args }) + '\n');
    });
  }

  /** Human monitor command (QEMU's HMP through QMP). */
  hmp(line: string, timeoutMs = 10_000): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': line }, timeoutMs);
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    if (this.buf.length > MAX_LINE) {
      this.fail(new Error('monitor sent an over-long line'));
      this.sock.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if ('QMP' in msg) {
      this.greeting?.(msg);
      this.greeting = undefined;
      return;
    }
    if ('event' in msg) {
      if (this.events.length < 1000) this.events.push(msg as { event: string; data?: unknown });
      return;
    }
    const p = this.queue.shift();
    if (!p) return;
    clearTimeout(p.timer);
    if ('error' in msg) {
      const err = msg.error as { class?: string; desc?: string };
      p.reject(new MonitorError(p.command, String(err.class), String(err.desc)));
    } else {
      p.resolve(msg.return);
    }
  }

  private fail(e: Error): void {
    if (this.closedWith) return;
    this.closedWith = e;
    for (const p of this.queue.splice(0)) {
      clearTimeout(p.timer);
      p.reject(e);
    }
  }
}
