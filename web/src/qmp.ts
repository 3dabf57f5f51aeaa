// QMP over the daemon's /qmp WebSocket, from the browser: one message per frame each way.
// The token travels as the subprotocol `hostmemd.token.<token>` (browsers cannot set an
// Authorization header on a WebSocket). Requests carry ids of our own so replies — in-band
// in order, exec-oob overtaking — find their callers; events go to listeners.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export class QmpError extends Error {
  constructor(
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`${errorClass}: ${desc}`);
  }
}

export interface QmpEvent {
  event: string;
  data?: JsonObject;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  resolve(v: Json): void;
  reject(e: Error): void;
}

export function qmpUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/qmp`;
}

export class QmpClient {
  private ws?: WebSocket;
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly eventListeners: ((e: QmpEvent) => void)[] = [];
  private readonly closeListeners: ((why: string) => void)[] = [];
  /** Messages that are neither events nor replies to our ids (raw console). */
  onOther?: (msg: JsonObject, text: string) => void;
  greeting?: JsonObject;
  greetingText?: string;

  constructor(
    private readonly token: string,
    readonly name: string,
  ) {}

  /** Opens the socket, reads the greeting and negotiates (enabling OOB when offered). */
  connect(): Promise<JsonObject> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(qmpUrl(), ['hostmemd.qmp', `hostmemd.token.${this.token}`]);
      this.ws = ws;
      ws.onmessage = (ev: MessageEvent) => {
        const text = String(ev.data);
        let msg: JsonObject;
        try {
          msg = JSON.parse(text) as JsonObject;
        } catch {
          return;
        }
        if (!settled && 'QMP' in msg) {
          this.greeting = msg;
          this.greetingText = text;
          const caps = ((msg.QMP as JsonObject).capabilities as string[]) ?? [];
          this.execute('qmp_capabilities', caps.includes('oob') ? { enable: ['oob'] } : undefined).then(
            () => {
              settled = true;
              resolve(msg);
            },
            (e: Error) => {
              settled = true;
              reject(e);
            },
          );
          return;
        }
        this.dispatch(msg, text);
      };
      ws.onclose = (ev: CloseEvent) => {
        const why = ev.reason ? `${ev.code} ${ev.reason}` : `code ${ev.code}`;
        for (const p of this.pending.values()) p.reject(new Error(`connection closed (${why})`));
        this.pending.clear();
        if (!settled) {
          settled = true;
          reject(new Error(`connection refused or closed (${why})`));
        }
        for (const l of this.closeListeners) l(why);
      };
    });
  }

  private dispatch(msg: JsonObject, text: string): void {
    if (typeof msg.event === 'string') {
      for (const l of this.eventListeners) l(msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id !== undefined ? this.pending.get(id) : undefined;
    if (!p || id === undefined) {
      this.onOther?.(msg, text);
      return;
    }
    this.pending.delete(id);
    if (msg.error) {
      const e = msg.error as JsonObject;
      p.reject(new QmpError(String(e.class), String(e.desc)));
    } else {
      p.resolve(msg.return ?? {});
    }
  }

  /** Runs a command; `argsJson` lets callers send exact JSON text (64-bit integers). */
  execute(command: string, args?: JsonObject, opts: { oob?: boolean; argsJson?: string } = {}): Promise<Json> {
    const id = `${this.name}-${this.nextId++}`;
    const key = opts.oob ? 'exec-oob' : 'execute';
    const argText = opts.argsJson ?? (args ? JSON.stringify(args) : undefined);
    const text = `{"${key}":${JSON.stringify(command)}${argText ? `,"arguments":${argText}` : ''},"id":${JSON.stringify(id)}}`;
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected'));
        return;
      }
      this.pending.set(id, { resolve, reject });
      this.ws.send(text);
    });
  }

  /** Sends text as it is (the raw console); the answer arrives through onOther. */
  sendRaw(text: string): void {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error('not connected');
    this.ws.send(text);
  }

  onEvent(l: (e: QmpEvent) => void): void {
    this.eventListeners.push(l);
  }

  onClose(l: (why: string) => void): void {
    this.closeListeners.push(l);
  }

  close(): void {
    this.ws?.close();
  }
}
