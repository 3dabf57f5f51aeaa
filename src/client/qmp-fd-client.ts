// The client end of QMP on a UNIX socket, able to receive fds (SCM_RIGHTS) with a reply: what
// hostmemd-run and other tools that take memory from the daemon use. One command at a time;
// every wait is bounded by the socket's receive timeout, so a stuck daemon cannot hang a VMM's
// start. Reads run on libuv's threadpool (recvmsg through the native layer).
import { sockets, Fd, SysError } from '../native';
import { parseJsonText } from '../json/stream';
import { isJsonObject, JsonObject, JsonValue } from '../json/value';
import { errorText, reasonText } from '../errors/text';

/** How long a connect, the greeting or a reply may take by default. */
export const DEFAULT_WAIT_MS = 10_000;
/** The longest server line the client takes: replies it asks for are small; a peer that sends
 *  more without a newline is not a QMP server. */
export const MAX_LINE_BYTES = 1024 * 1024;
/** Bytes read per recvmsg. */
const READ_CHUNK = 64 * 1024;
const EAGAIN = 11;

/** A failure seen by the client: the text is ready for a user ("cannot connect to …"). A QMP
 *  error reply keeps its class and desc in `qmp`. */
export class ClientError extends Error {
  constructor(
    message: string,
    readonly qmp?: { class: string; desc: string },
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

export interface ClientOptions {
  /** Bound on each wait (ms). */
  waitMs?: number;
}

/** A reply (or error reply) with the fds that arrived while it was awaited. */
export interface Reply {
  message: JsonObject;
  fds: Fd[];
}

export class QmpFdClient {
  private pending = Buffer.alloc(0);
  private fds: Fd[] = [];
  private nextId = 1;

  private constructor(
    private readonly sock: Fd,
    readonly path: string,
    private readonly waitMs: number,
  ) {}

  /** Connects to `path`, reads the greeting and leaves capabilities negotiation. */
  static async connect(path: string, opts: ClientOptions = {}): Promise<QmpFdClient> {
    const waitMs = opts.waitMs ?? DEFAULT_WAIT_MS;
    const sock = sockets.socket(sockets.SOCK_STREAM);
    try {
      sockets.connectNow(sock, path);
      sockets.setWaitLimit(sock, waitMs);
    } catch (e) {
      sock.close();
      throw new ClientError(`cannot connect to ${path}: ${reasonText(e)}`);
    }
    const c = new QmpFdClient(sock, path, waitMs);
    try {
      const greeting = await c.next();
      if (!isJsonObject(greeting.message.QMP)) throw new ClientError(`${path} is not a QMP server (no greeting)`);
      c.drop(greeting.fds);
      const r = await c.execute('qmp_capabilities');
      c.drop(r.fds);
      if ('error' in r.message) throw new ClientError(`capabilities negotiation on ${path} failed: ${describeError(r.message)}`);
    } catch (e) {
      c.close();
      throw e;
    }
    return c;
  }

  /** Sends one command and returns its reply (events before it are skipped) with every fd that
   *  arrived meanwhile: the kernel may deliver a reply's fds together with the bytes of an event
   *  sent just before it, so they belong to the command, not to the message they came with. */
  async execute(command: string, args?: JsonObject): Promise<Reply> {
    const id = this.nextId++;
    const text = JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n';
    try {
      await sockets.sendWithFdsAsync(this.sock, Buffer.from(text));
    } catch (e) {
      throw new ClientError(`cannot send to ${this.path}: ${reasonText(e)}`);
    }
    const fds: Fd[] = [];
    try {
      for (;;) {
        const m = await this.next();
        fds.push(...m.fds);
        if (!('event' in m.message)) return { message: m.message, fds };
      }
    } catch (e) {
      this.drop(fds);
      throw e;
    }
  }

  /** The next server message and the fds received up to its end. */
  private async next(): Promise<Reply> {
    for (;;) {
      const nl = this.pending.indexOf(0x0a);
      if (nl >= 0) {
        const line = this.pending.subarray(0, nl).toString('utf8').replace(/\r$/, '');
        this.pending = this.pending.subarray(nl + 1);
        const fds = this.fds.splice(0);
        let value: JsonValue;
        try {
          value = parseJsonText(line);
        } catch (e) {
          this.drop(fds);
          throw new ClientError(`${this.path} sent a message that is not JSON (${errorText(e)})`);
        }
        if (!isJsonObject(value)) {
          this.drop(fds);
          throw new ClientError(`${this.path} sent a message that is not a JSON object`);
        }
        return { message: value, fds };
      }
      if (this.pending.length > MAX_LINE_BYTES) throw new ClientError(`${this.path} sent more than ${MAX_LINE_BYTES} bytes without a line end`);
      let got: sockets.Received;
      try {
        got = await sockets.receiveWithFds(this.sock, READ_CHUNK);
      } catch (e) {
        if (e instanceof SysError && e.errno === EAGAIN) throw new ClientError(`no answer from ${this.path} within ${this.waitMs / 1000} s`);
        throw new ClientError(`cannot read from ${this.path}: ${reasonText(e)}`);
      }
      this.fds.push(...got.fds);
      if (got.data.length === 0 && got.fds.length === 0) throw new ClientError(`${this.path} closed the connection`);
      this.pending = Buffer.concat([this.pending, got.data]);
    }
  }

  private drop(fds: Fd[]): void {
    for (const fd of fds) fd.close();
  }

  /** Closes the connection and any fd received but not handed out. */
  close(): void {
    this.drop(this.fds.splice(0));
    this.sock.close();
  }
}

/** "Class: desc" of an error reply. */
export function describeError(message: JsonObject): string {
  const e = message.error;
  if (!isJsonObject(e)) return 'malformed error reply';
  return typeof e.desc === 'string' ? e.desc : 'error reply without a description';
}
