// The QMP monitor: all sessions of all transports, the dispatcher they share, the greeting
// and event broadcast. Unlike QEMU it serves many connections at once, up to a limit.
import { encodeJson } from '../json/writer';
import { JsonObject, JsonValue } from '../json/value';
import { Dispatcher } from './dispatcher';
import { CommandContext, Reply } from './messages';
import { InputBudget, QmpSession, SessionExport, SessionHost, Transport } from './session';

export interface VersionInfo {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** What runs a command (the Dispatcher). */
export type CommandRunner = Pick<Dispatcher, 'dispatch'>;

export interface MonitorOptions {
  /** Absent: clients are greeted, but their input is read only once serve() gives one (a
   *  daemon that listens before it has restored its objects). */
  dispatcher?: CommandRunner;
  version: VersionInfo;
  maxClients: number;
  /** How long a connection may stay un-negotiated before it is closed (0 or absent: for ever). */
  negotiationTimeoutMs?: number;
  /** Budget of unfinished input (default: INPUT_BUDGET_BYTES, INPUT_ALLOWANCE_PER_CLIENT). */
  inputBudget?: InputBudget;
}

export class Monitor implements SessionHost {
  private dispatcher?: CommandRunner;
  /** Until serve(): opens when commands can be answered; sessions greeted before it. */
  private opening?: { open: Promise<void>; resolve: () => void; greeted: Set<QmpSession> };
  readonly inputBudget: InputBudget;
  private readonly sessions = new Set<QmpSession>();
  private nextClient = 1;
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  private frozen = false;

  constructor(private readonly opts: MonitorOptions) {
    this.dispatcher = opts.dispatcher;
    if (!this.dispatcher) {
      let resolve!: () => void;
      const open = new Promise<void>((r) => (resolve = r));
      this.opening = { open, resolve, greeted: new Set() };
    }
    this.inputBudget = opts.inputBudget ?? new InputBudget();
  }

  dispatch(msg: JsonValue, ctx: CommandContext, oobEnabled: boolean): Reply | Promise<Reply> {
    if (this.dispatcher) return this.dispatcher.dispatch(msg, ctx, oobEnabled);
    // Before serve() nothing is read (QmpSession.start(held)); should a command come all the
    // same, it waits, in arrival order (then-callbacks run in the order registered).
    return this.opening!.open.then(() => this.dispatcher!.dispatch(msg, ctx, oobEnabled));
  }

  /** Commands can be answered now: the clients greeted meanwhile are read, and their
   *  negotiation deadline starts. */
  serve(dispatcher: CommandRunner): void {
    if (this.dispatcher) throw new Error('the monitor serves already');
    this.dispatcher = dispatcher;
    const o = this.opening!;
    this.opening = undefined;
    o.resolve();
    for (const s of o.greeted) s.release();
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** Creates the session for a new connection, or returns the refusal text to send before
   *  closing when the client limit is reached. */
  attach(transport: Transport, offeredCapabilities: readonly string[] = ['oob']): QmpSession | { refusal: string } {
    if (this.sessions.size >= this.opts.maxClients) {
      const desc = `Too many QMP clients: the limit is ${this.opts.maxClients}`;
      return { refusal: `{"error": {"class": "GenericError", "desc": ${encodeJson(desc)}}}\r\n` };
    }
    const session = new QmpSession(this, transport, `${transport.kind}-${this.nextClient++}`, offeredCapabilities, this.opts.negotiationTimeoutMs ?? 0);
    this.sessions.add(session);
    session.start(this.opening !== undefined);
    this.opening?.greeted.add(session);
    // A client arriving during a handover is handed over too.
    if (this.frozen) void session.freeze();
    return session;
  }

  /** Takes over a session exported by another hostmemd (handover): no greeting is sent. */
  adopt(transport: Transport, state: SessionExport): QmpSession {
    const session = new QmpSession(this, transport, `${transport.kind}-${this.nextClient++}`, ['oob'], this.opts.negotiationTimeoutMs ?? 0);
    this.sessions.add(session);
    session.resumeFrom(state);
    return session;
  }

  /** Handover, step 1: every session stops running requests and stops reading at a message
   *  boundary; resolves when that is so and at most `keepRunning` commands (the handover's
   *  own) are still running. Rejects after `timeoutMs`, leaving the sessions frozen. */
  async freezeAll(keepRunning: number, timeoutMs: number): Promise<void> {
    this.frozen = true;
    const deadline = Date.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = (what: string): Promise<never> =>
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(what)), Math.max(0, deadline - Date.now()));
      });
    try {
      await Promise.race([Promise.all([...this.sessions].map((s) => s.freeze())), timeout(`a client did not finish the message it was sending within ${timeoutMs} ms`)]);
      clearTimeout(timer);
      const late = timeout(`commands still running after ${timeoutMs} ms (a long preallocation?)`);
      while (this.inflight > keepRunning) await Promise.race([new Promise<void>((r) => this.idleWaiters.push(r)), late, new Promise((r) => setTimeout(r, 5))]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The handover failed: every session carries on. */
  thawAll(): void {
    this.frozen = false;
    for (const s of this.sessions) s.thaw();
  }

  /** Frozen sessions that can move to another process (UNIX socket ones), and the rest. */
  handoverSessions(): { movable: QmpSession[]; other: QmpSession[] } {
    const all = [...this.sessions];
    return { movable: all.filter((s) => s.canHandOver), other: all.filter((s) => !s.canHandOver) };
  }

  detach(session: QmpSession): void {
    this.sessions.delete(session);
    this.opening?.greeted.delete(session);
  }

  /** `{"QMP": {"version": ..., "capabilities": [...]}}` in QEMU's member order (§1.2). */
  greeting(caps: readonly string[]): string {
    const v = this.opts.version;
    const value = { QMP: { version: { qemu: { major: v.qemu.major, minor: v.qemu.minor, micro: v.qemu.micro }, package: v.package }, capabilities: [...caps] } };
    return encodeJson(value, { qdictOrder: true }) + '\r\n';
  }

  /** Sends an event to every negotiated session. `data` is omitted when empty (§1.6). */
  emitEvent(name: string, data?: JsonObject): void {
    // Nobody to tell (a restore, before listening): nothing to encode.
    if (this.sessions.size === 0) return;
    const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    const msg: JsonObject = { timestamp: { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 }, event: name };
    if (data && Object.keys(data).length > 0) msg.data = data;
    const line = encodeJson(msg, { qdictOrder: true }) + '\r\n';
    for (const s of this.sessions) s.deliverEvent(line);
  }

  /** Sessions report asynchronous commands so that shutdown can let them finish. */
  beginCommand(): void {
    this.inflight++;
  }

  endCommand(): void {
    if (--this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when no asynchronous command is running. */
  whenIdle(): Promise<void> {
    return this.inflight === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Closes every session after writing what is pending (shutdown). */
  closeAll(): void {
    for (const s of [...this.sessions]) s.shutdown();
  }
}
