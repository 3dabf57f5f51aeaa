// Test helper: a QMP client over a UNIX socket that passes fds both ways, as a VMM would. It
// reads with recvmsg(2) (src/native sockets, on libuv's threadpool) so SCM_RIGHTS arriving
// with a reply are kept, and sends requests with sendmsg(2) so fds can ride along
// (getfd/add-fd). Node's net.Socket cannot: read(2) makes the kernel drop received fds.
// Also: mapping a received fd and comparing bytes, and counting a process's open fds.
import * as fs from 'node:fs';
import * as native from '../../src/native';
import { LineQueue } from './line-queue';

/** Bytes asked for per recvmsg. */
const RECV_BYTES = 256 * 1024;

/** One server line and the fds that came with it (SCM_RIGHTS). */
export interface FdLine {
  line: string;
  fds: native.Fd[];
}

export class FdQmpClient {
  private buf: Buffer = Buffer.alloc(0);
  /** fds that came with bytes of the line not finished yet. */
  private partialFds: native.Fd[] = [];
  private readonly lines = new LineQueue<FdLine>();
  private reading: Promise<void> | undefined;
  /** Why the reading loop stopped (EOF: undefined). */
  error: unknown;

  private constructor(readonly sock: native.Fd) {}

  static connect(path: string): FdQmpClient {
    const sock = native.sockets.socket(native.sockets.SOCK_STREAM);
    try {
      native.sockets.connectNow(sock, path);
    } catch (e) {
      sock.close();
      throw e;
    }
    const c = new FdQmpClient(sock);
    c.reading = c.readLoop();
    return c;
  }

  /** Connects, reads the greeting and negotiates. */
  static async negotiated(path: string): Promise<FdQmpClient> {
    const c = FdQmpClient.connect(path);
    try {
      await c.line();
      const r = await c.execute('qmp_capabilities');
      if (!('return' in r.reply)) throw new Error(`negotiation failed: ${JSON.stringify(r.reply)}`);
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  private async readLoop(): Promise<void> {
    try {
      for (;;) {
        const r = await native.sockets.receiveWithFds(this.sock, RECV_BYTES);
        if (r.data.length === 0 && r.fds.length === 0) break;
        this.take(r.data, r.fds);
      }
    } catch (e) {
      this.error = e;
    } finally {
      this.lines.end();
    }
  }

  /** The kernel ends a read after the bytes that carried fds: they belong to the line holding
   *  the chunk's last byte (the daemon sends a reply with fds as one message from its first
   *  byte; bytes the kernel did not take at once follow without fds). */
  private take(data: Buffer, fds: native.Fd[]): void {
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    const endsLine = this.buf.length >= 2 && this.buf[this.buf.length - 2] === 13 && this.buf[this.buf.length - 1] === 10;
    let i: number;
    let start = 0;
    const found: string[] = [];
    while ((i = this.buf.indexOf('\r\n', start)) >= 0) {
      found.push(this.buf.subarray(start, i).toString('latin1'));
      start = i + 2;
    }
    this.buf = this.buf.subarray(start);
    found.forEach((line, k) => {
      let lineFds: native.Fd[] = [];
      if (k === 0 && this.partialFds.length > 0) lineFds = this.partialFds.splice(0);
      if (k === found.length - 1 && endsLine) lineFds = lineFds.concat(fds);
      this.lines.push({ line, fds: lineFds });
    });
    if (!endsLine) this.partialFds.push(...fds);
  }

  get isClosed(): boolean {
    return this.lines.closed && this.lines.size === 0;
  }

  /** The next line with its fds; rejects on close or timeout. */
  next(timeoutMs = 5000): Promise<FdLine> {
    return this.lines.next(timeoutMs, () => new Error(`connection closed${this.error ? `: ${String(this.error)}` : ''}`));
  }

  async line(timeoutMs?: number): Promise<string> {
    const l = await this.next(timeoutMs);
    for (const fd of l.fds) fd.close();
    return l.line;
  }

  /** Sends bytes, with `fds` attached to the first of them (one sendmsg). */
  async send(data: string | Buffer, fds: readonly native.Fd[] = []): Promise<void> {
    const b = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    let first = true;
    while (off < b.length || first) {
      off += await native.sockets.sendWithFdsAsync(this.sock, b.subarray(off), first ? fds : []);
      first = false;
    }
  }

  /** Sends a command (with `sendFds` attached) and returns the next reply that is not an
   *  event, with the fds that came with it (the caller closes them). Events' fds are closed. */
  async executeWithFds(cmd: string, args?: unknown, opts: { sendFds?: readonly native.Fd[]; id?: unknown; timeoutMs?: number } = {}): Promise<{ reply: Record<string, unknown>; fds: native.Fd[] }> {
    const msg: Record<string, unknown> = { execute: cmd };
    if (args !== undefined) msg.arguments = args;
    if (opts.id !== undefined) msg.id = opts.id;
    await this.send(JSON.stringify(msg), opts.sendFds ?? []);
    for (;;) {
      const l = await this.next(opts.timeoutMs);
      const reply = JSON.parse(l.line) as Record<string, unknown>;
      if (!('event' in reply)) return { reply, fds: l.fds };
      for (const fd of l.fds) fd.close();
    }
  }

  /** executeWithFds, closing whatever fds come back. */
  async execute(cmd: string, args?: unknown, sendFds?: readonly native.Fd[]): Promise<{ reply: Record<string, unknown>; fds: number }> {
    const r = await this.executeWithFds(cmd, args, { sendFds });
    for (const fd of r.fds) fd.close();
    return { reply: r.reply, fds: r.fds.length };
  }

  /** Closes the connection and every fd received and not taken. */
  async close(): Promise<void> {
    if (this.sock.isOpen) {
      try {
        native.sockets.shutdown(this.sock); // wakes the recvmsg waiting on the threadpool
      } catch {
        /* not connected any more */
      }
    }
    await this.reading;
    this.sock.close();
    for (const l of this.lines.drain()) for (const fd of l.fds) fd.close();
    for (const fd of this.partialFds.splice(0)) fd.close();
  }
}

/** Maps `len` bytes of `fd` from `offset` (shared, read-only unless `writable`), runs `fn` on
 *  the mapping and unmaps it. */
export function withMapping<T>(fd: native.Fd, len: number | bigint, fn: (m: native.Mapping) => T, opts: { offset?: bigint; writable?: boolean } = {}): T {
  const prot = native.PROT_READ | (opts.writable ? native.PROT_WRITE : 0);
  const m = native.mmap(BigInt(len), prot, native.MAP_SHARED, fd, opts.offset ?? 0n);
  try {
    return fn(m);
  } finally {
    m.unmap();
  }
}

/** The bytes at `offset` of `fd`'s memory, through a shared mapping of its first pages. */
export function readThroughFd(fd: native.Fd, offset: number, len: number, fdOffset = 0n): Buffer {
  const page = native.pageSize();
  const mapLen = Math.ceil((offset + len) / page) * page;
  return withMapping(fd, mapLen, (m) => Buffer.from(m.read(offset, len)), { offset: fdOffset });
}

/** Open fds of a process (this one by default), from /proc/PID/fd. */
export function openFdCount(pid: number | 'self' = 'self'): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}
