// One QMP connection, whatever carries it (UNIX socket or WebSocket): greeting, negotiation
// state, the in-band FIFO with OOB bypass, event delivery, and encoding replies to wire text
// (compact ASCII JSON in QEMU's member order, CRLF-terminated). Transports feed bytes in and
// take text out; they never look inside messages. A connection that does not negotiate within
// the negotiation timeout is told so and closed, so idle sockets cannot hold every client slot.
// Memory is bounded whatever the input: unfinished messages share a budget across connections,
// and requests wait while the transport reports a large output backlog. Time is bounded too: a
// session parses at most FEED_SLICE_BYTES and runs at most REQUESTS_PER_TURN requests per
// event-loop turn, so a huge frame or a long pipeline never holds other clients up for long;
// a reply too large to print in one turn (a 64 MiB id echoed) is written a piece per turn.
import { crashPoint } from '../crash-point';
import { JsonStreamParser, MAX_TOKEN_COUNT, StreamItem } from '../json/stream';
import { encodeJson, encodeJsonPieces, encodingIsLarge } from '../json/writer';
import { JsonValue, isJsonObject, longParts } from '../json/value';
import { isOobRequest } from './dispatcher';
import { PreEncoded, Reply, SessionControl, CommandContext, PassedFd, PeerCredentials, WithFds } from './messages';

/** What a session needs of whoever holds the sessions (the Monitor implements it): the
 *  greeting, the dispatcher, and bookkeeping of running commands. */
export interface SessionHost {
  greeting(caps: readonly string[]): string;
  dispatch(msg: JsonValue, ctx: CommandContext, oobEnabled: boolean): Reply | Promise<Reply>;
  detach(session: QmpSession): void;
  beginCommand(): void;
  endCommand(): void;
  /** Unfinished input of all sessions together (chargeInput). */
  readonly inputBudget: InputBudget;
}

/** What a session needs from whatever carries its bytes. */
export interface Transport {
  readonly kind: string;
  /** Told the client id of the session it carries, as the session is made (for its logs). */
  attached?(clientId: string): void;
  /** Queues text for the peer. Returns false when the peer is not keeping up. */
  write(text: string): boolean;
  /** Told of each request (or input error) parsed from the input, before it is queued; false
   *  means the transport has cut the connection off (a request rate limit): the rest of the
   *  input is dropped. Absent: every request is admitted. */
  admit?(): boolean;
  /** True while the peer has so much output pending that no more requests should run for it;
   *  `then` is called once when that is no longer so. Absent: never. */
  backlogged?(then: () => void): boolean;
  /** Transports that can pass fds (UNIX sockets) have these. writeWithFds queues `text` like
   *  write(), with `fds` sent along with its first byte (SCM_RIGHTS), after everything written
   *  before it and before anything written after; it closes the fds once sent or once the
   *  connection is gone. */
  writeWithFds?(text: string, fds: readonly PassedFd[]): void;
  /** Queues ASCII bytes in chunks, in order with write(), written without joining them
   *  (a reply of 10,000 entries from ready blocks). Absent: the session writes their text. */
  writeBytes?(chunks: readonly Buffer[]): boolean;
  /** The peer's credentials (SO_PEERCRED), undefined when they cannot be read. */
  peerCredentials?(): PeerCredentials | undefined;
  /** Stops/starts delivering input (flow control while the in-band queue is long). */
  pause(): void;
  resume(): void;
  /** Closes the connection after queued output is written. `reason`: why, when it is not a
   *  shutdown or the peer's own end (a WebSocket carries it in its close frame). */
  end(reason?: string): void;
  /** Daemon handover: waits until written output is flushed, stops reading, and gives the
   *  connection's fd and the bytes read but not yet delivered (undefined: the connection has
   *  closed meanwhile). Absent: cannot be handed over. */
  handOver?(): Promise<{ fd: number; pending: Buffer } | undefined>;
}

/** A frozen session's state, enough for another process to carry on with the connection. */
export interface SessionExport {
  negotiated: boolean;
  oob: boolean;
  /** Requests parsed but not run yet (values), or input errors not reported yet. */
  queue: Queued[];
  /** Input bytes not parsed yet: they start at a message boundary. */
  pending: Buffer;
  /** Not negotiated yet: when the negotiation timeout ends (ms since the epoch; the processes
   *  share the clock). Absent: no deadline was running. */
  negotiateBy?: number;
}

/** What the command line's --negotiation-timeout defaults to: a client has this long from its
 *  greeting to a successful qmp_capabilities. QEMU has no such limit. */
export const DEFAULT_NEGOTIATION_TIMEOUT_MS = 60_000;

/** The line sent before an un-negotiated connection is closed. */
export function negotiationTimeoutText(timeoutMs: number): string {
  return `QMP negotiation timed out: no qmp_capabilities within ${timeoutMs / 1000} seconds; closing the connection`;
}

/** In-band requests queued beyond this stop the transport from reading until the queue drains
 *  (QEMU suspends its monitor at 8, qemu-facts §1.5; we allow deeper pipelines). */
export const QUEUE_PAUSE_LENGTH = 64;

/** Memory (as JsonStreamParser.unfinishedCost estimates it) that unfinished messages of all
 *  connections together may hold. Each message is bounded by QEMU's limits (64 MiB, 2 Mi tokens),
 *  but not their number: 100 connections each holding an unfinished 2 MB `[{},{},...` cost
 *  over 5 GB of heap. A connection whose unfinished message would take the total past this is
 *  cut off with INPUT_BUDGET_TEXT, unless it holds at most INPUT_ALLOWANCE_PER_CLIENT. */
export const INPUT_BUDGET_BYTES = 512 * 1024 * 1024;
/** What any connection may hold whatever the others hold (a QMP request is far smaller), so
 *  that a hostile client holding the budget cannot lock out ordinary ones. With --max-clients
 *  1024 this adds at most 1 GiB to the budget. */
export const INPUT_ALLOWANCE_PER_CLIENT = 1024 * 1024;
/** Tokens that unfinished messages of all connections together may hold beyond each one's
 *  allowance: one message at QEMU's token limit. Each token of a partial value is a live heap
 *  object, and the garbage collector's pauses grow with their number, not their bytes: seven
 *  connections holding 2 Mi-token messages (4.9 M objects, within the byte budget) made every
 *  other client wait ~60 ms at the 99th percentile. A message at QEMU's limits still passes
 *  when no other connection holds a large one; past the total the connection is cut off with
 *  INPUT_BUDGET_TEXT, as for the byte budget. */
export const INPUT_BUDGET_TOKENS = MAX_TOKEN_COUNT;
export const INPUT_BUDGET_TEXT = 'QMP input limit exceeded: unfinished messages of all clients hold too much memory; closing the connection';

/** Received fds (SCM_RIGHTS) all connections together may hold untaken. Each holds at most
 *  one batch (the transport takes at most 16 fds per message, QEMU's TCP_MAX_FDS); past this
 *  total a new batch is closed at once, so strangers cannot fill the daemon's fd table with
 *  fds no command takes. A command then answers "No file descriptor supplied via SCM_RIGHTS". */
export const MAX_HELD_FDS = 2048;

/** The running total of unfinished input across the sessions of one monitor (and of the fds
 *  they hold). */
export class InputBudget {
  used = 0;
  tokens = 0;
  fdsHeld = 0;
  constructor(
    readonly limit = INPUT_BUDGET_BYTES,
    readonly allowance = INPUT_ALLOWANCE_PER_CLIENT,
    readonly fdLimit = MAX_HELD_FDS,
    readonly tokenLimit = INPUT_BUDGET_TOKENS,
  ) {}
}

/** Commands that may start while earlier ones of the connection wait for their journal write
 *  (CommandContext.staged), when they name another object: the key is the object's name. */
function overlapKey(value: JsonValue): string | undefined {
  if (!isJsonObject(value)) return undefined;
  const args = value.arguments;
  if (!isJsonObject(args)) return undefined;
  if (value.execute === 'object-add' || value.execute === 'object-del') return typeof args.id === 'string' ? args.id : undefined;
  // A QOM path's last component is the object's name (a partial path too).
  if (value.execute === 'qom-set' && typeof args.path === 'string') return args.path.slice(args.path.lastIndexOf('/') + 1) || undefined;
  return undefined;
}

/** A request started and not yet answered: replies are written in the order requests came. */
interface Running {
  command?: string;
  key?: string;
  /** Only its durable record is left to wait for. */
  staged: boolean;
  reply?: Reply;
}

/** Replies batched before a flush that checks the transport's backlog. */
const PUMP_FLUSH_REPLIES = 64;

/** Input parsed per event-loop turn: a larger chunk (a WebSocket frame can be 64 MiB, of up to
 *  2.3 M requests) is parsed a slice per turn, the transport paused meanwhile. */
export const FEED_SLICE_BYTES = 64 * 1024;
/** Requests a session runs in a row before the others get a turn (a 64 KiB slice holds ~1,700
 *  query-version requests, ~30 ms of work on a loaded host). */
export const REQUESTS_PER_TURN = 128;

/** Output a reply printed a piece at a time writes per event-loop turn (a 32 Mi-character
 *  non-ASCII id is 192 MB of \uXXXX escapes; printing it at once held the loop for seconds). */
export const STREAM_BYTES_PER_TURN = 256 * 1024;

export type Queued = { kind: 'value'; value: JsonValue } | { kind: 'error'; desc: string };

/** Output waiting in order: text, a reply printed a piece at a time, a reply with fds. */
type OutItem = string | { pieces: Iterator<string> } | { line: string; withFds: WithFds } | { bytes: readonly Buffer[] };

export enum SessionState {
  Negotiating,
  Command,
  Closed,
}

export class QmpSession implements SessionControl {
  state = SessionState.Negotiating;
  private oobEnabled = false;
  private readonly queue: Queued[] = [];
  /** In-band requests started and not answered yet, oldest first. */
  private readonly running: Running[] = [];
  private paused = false;
  private out: OutItem[] = [];
  /** Items of `out` that are not text; and the reply being written a piece per turn, which
   *  everything after it waits for. */
  private outSpecial = 0;
  private streaming: Iterator<string> | undefined;
  private inReceive = false;
  /** A flush is queued for the end of the current cascade (flushSoon). */
  private flushQueued = false;
  /** Output is being gathered for one write: while input is fed (receive), or until the
   *  queued flush (flushSoon). */
  private get batching(): boolean {
    return this.inReceive || this.flushQueued;
  }
  private readonly parser: JsonStreamParser;
  private readonly ctx: CommandContext;
  // Besides the protocol state (negotiating, command mode, closed), a session can be:
  //  - frozen: a handover is in progress: nothing new is run, input beyond a message boundary
  //    is held (thaw() carries on, export() hands the rest to the successor);
  //  - draining: the peer has finished sending (half-close): what it sent is answered, then
  //    the connection ends. Both may hold at once; mayRunNext() is the one guard.
  private frozen = false;
  private inputEnded = false;
  private oobRunning = 0;
  private held: Buffer[] = [];
  private boundaryWaiters: (() => void)[] = [];
  /** The negotiation deadline while negotiating (ms since the epoch), and its timer. */
  private negotiateBy: number | undefined;
  private negotiationTimer: NodeJS.Timeout | undefined;
  /** The deadline passed while frozen: acted on at thaw (an export carries the deadline). */
  private negotiationExpired = false;
  /** This session's share of the monitor's inputBudget.used and .tokens. */
  private inputCharged = 0;
  private tokensCharged = 0;
  /** The transport's output backlog is large: queued requests wait (their replies would pile
   *  up), and the queue's length stops input as usual. */
  private outputBlocked = false;
  /** Input received but not parsed yet (a large chunk, parsed a slice per turn), and whether a
   *  turn to parse it is scheduled. */
  private backlog: Buffer[] = [];
  private feedScheduled = false;
  /** The peer finished sending while its input was still being parsed. */
  private inputEndPending = false;
  /** Requests run since the last yield, and whether running more waits for the next turn. */
  private turnRuns = 0;
  private turnYielded = false;

  /** `negotiationTimeoutMs`: 0 = a client may stay un-negotiated for ever (QEMU's way). */
  constructor(
    private readonly monitor: SessionHost,
    private readonly transportImpl: Transport,
    readonly clientId: string,
    readonly offeredCapabilities: readonly string[],
    private readonly negotiationTimeoutMs = 0,
  ) {
    this.parser = new JsonStreamParser((item) => this.onItem(item));
    this.ctx = { session: this };
    transportImpl.attached?.(clientId);
  }

  get transport(): string {
    return this.transportImpl.kind;
  }

  get fdPassing(): { peer(): PeerCredentials | undefined } | undefined {
    const t = this.transportImpl;
    if (!t.writeWithFds) return undefined;
    return { peer: () => t.peerCredentials?.() };
  }

  get negotiated(): boolean {
    return this.state === SessionState.Command;
  }

  /** Sends the greeting; the connection starts in negotiation mode. `held`: nothing is read
   *  and no negotiation deadline runs until release() (a client greeted while the daemon still
   *  starts: its input waits in the socket and is parsed as usual once it can be answered). */
  start(held = false): void {
    if (held) this.transportImpl.pause();
    else if (this.negotiationTimeoutMs > 0) this.armNegotiationDeadline(Date.now() + this.negotiationTimeoutMs);
    this.send(this.monitor.greeting(this.offeredCapabilities));
  }

  /** Ends start(held): the negotiation deadline starts now, and reading. */
  release(): void {
    if (this.state !== SessionState.Negotiating) return;
    if (this.negotiationTimeoutMs > 0 && this.negotiateBy === undefined) this.armNegotiationDeadline(Date.now() + this.negotiationTimeoutMs);
    this.resumeReading();
  }

  completeNegotiation(caps: readonly string[]): void {
    this.oobEnabled = caps.includes('oob');
    this.state = SessionState.Command;
    this.clearNegotiationDeadline();
  }

  /** Runs the timer to `deadline`; unref'd, so a waiting client never keeps the process alive. */
  private armNegotiationDeadline(deadline: number): void {
    this.clearNegotiationDeadline();
    this.negotiateBy = deadline;
    this.negotiationTimer = setTimeout(() => this.negotiationTimedOut(), Math.max(0, deadline - Date.now()));
    this.negotiationTimer.unref();
  }

  private clearNegotiationDeadline(): void {
    if (this.negotiationTimer !== undefined) clearTimeout(this.negotiationTimer);
    this.negotiationTimer = undefined;
    this.negotiateBy = undefined;
    this.negotiationExpired = false;
  }

  /** The client did not negotiate in time: one GenericError line says why, then the connection
   *  is closed and its client slot is free. During a handover the session's state must stay as
   *  it is (it may be exported): the close waits for the thaw. */
  private negotiationTimedOut(): void {
    this.negotiationTimer = undefined;
    if (this.state !== SessionState.Negotiating) return;
    if (this.frozen) {
      this.negotiationExpired = true;
      return;
    }
    const desc = negotiationTimeoutText(this.negotiationTimeoutMs);
    this.queue.length = 0;
    this.writeReply({ hasId: false, error: { class: 'GenericError', desc } });
    this.flush();
    this.transportImpl.end('QMP negotiation timed out');
    this.close();
  }

  /** Feeds bytes from the peer, and the fds that came with them (SCM_RIGHTS). Replies
   *  produced synchronously are written in one batch. */
  receive(chunk: Buffer, fds?: readonly PassedFd[]): void {
    if (fds && fds.length > 0) this.holdFds(fds);
    if (this.state === SessionState.Closed) return;
    if (this.frozen) return this.receiveFrozen(chunk);
    if (this.backlog.length > 0 || chunk.length > FEED_SLICE_BYTES) {
      this.backlog.push(chunk);
      this.scheduleFeed();
      return;
    }
    this.parseNow(chunk);
  }

  /** Parses the backlog a slice per turn; reading stops until it is all parsed. */
  private scheduleFeed(): void {
    if (this.feedScheduled) return;
    this.feedScheduled = true;
    this.transportImpl.pause();
    setImmediate(() => {
      this.feedScheduled = false;
      if (this.state === SessionState.Closed) {
        this.backlog = [];
        return;
      }
      if (this.frozen) return this.backlogToFrozen();
      const first = this.backlog[0];
      if (first.length > FEED_SLICE_BYTES) this.backlog[0] = first.subarray(FEED_SLICE_BYTES);
      else this.backlog.shift();
      this.parseNow(first.subarray(0, FEED_SLICE_BYTES));
      if (this.isClosed()) this.backlog = [];
      else if (this.backlog.length > 0) this.scheduleFeed();
      else if (this.inputEndPending) this.peerEnded();
      else this.resumeReading();
    });
  }

  /** The state, read afresh (TypeScript narrows it across calls that may close). */
  private isClosed(): boolean {
    return this.state === SessionState.Closed;
  }

  /** Reading resumes unless something else holds it (a long queue, a handover, a backlog). */
  private resumeReading(): void {
    if (this.paused || this.frozen || this.backlog.length > 0 || this.state === SessionState.Closed) return;
    this.transportImpl.resume();
  }

  /** Frozen with input not parsed yet: it goes the frozen way (parsed to the message boundary,
   *  the rest held for the thaw or the successor). */
  private backlogToFrozen(): void {
    const b = this.backlog;
    this.backlog = [];
    for (const c of b) this.receiveFrozen(c);
  }

  private parseNow(chunk: Buffer): void {
    this.inReceive = true;
    try {
      this.parser.feed(chunk);
    } finally {
      this.inReceive = false;
      this.flush();
    }
    this.chargeInput();
  }

  /** Accounts the unfinished message against the input budget; a connection that takes the
   *  total past it is told why (one GenericError line) and closed. Checked after each chunk:
   *  feeding is synchronous, so only one connection at a time can exceed its charged share,
   *  and by at most one message's worth (the per-message limits). */
  private chargeInput(): void {
    if (this.state === SessionState.Closed) return;
    const cost = this.parser.unfinishedCost;
    const tokens = this.parser.unfinishedTokens;
    const inputBudget = this.monitor.inputBudget;
    inputBudget.used += cost - this.inputCharged;
    inputBudget.tokens += tokens - this.tokensCharged;
    this.inputCharged = cost;
    this.tokensCharged = tokens;
    if (cost <= inputBudget.allowance || (inputBudget.used <= inputBudget.limit && inputBudget.tokens <= inputBudget.tokenLimit)) return;
    this.parser.reset();
    this.releaseInput();
    this.queue.length = 0;
    this.writeReply({ hasId: false, error: { class: 'GenericError', desc: INPUT_BUDGET_TEXT } });
    this.flush();
    this.transportImpl.end('QMP input limit exceeded');
    this.close();
  }

  private releaseInput(): void {
    this.monitor.inputBudget.used -= this.inputCharged;
    this.monitor.inputBudget.tokens -= this.tokensCharged;
    this.inputCharged = 0;
    this.tokensCharged = 0;
  }

  /** fds received and not taken by a command yet: QEMU's way (qemu-facts: tcp_chr_recv) is to
   *  hold the latest batch until a command takes it (getfd, add-fd) or another arrives, which
   *  replaces it (the older one is closed). So one connection holds at most one batch. */
  private receivedFds: readonly PassedFd[] = [];

  private holdFds(fds: readonly PassedFd[]): void {
    this.releaseHeld();
    const budget = this.monitor.inputBudget;
    if (this.state === SessionState.Closed || budget.fdsHeld + fds.length > budget.fdLimit) {
      for (const fd of fds) fd.close();
      return;
    }
    this.receivedFds = fds;
    budget.fdsHeld += fds.length;
  }

  private releaseHeld(): void {
    for (const fd of this.receivedFds) fd.close();
    this.monitor.inputBudget.fdsHeld -= this.receivedFds.length;
    this.receivedFds = [];
  }

  /** A command takes the fds held (getfd, add-fd): the first is the caller's, the others are
   *  closed here, as QEMU closes the ones a command does not take. Undefined: none held. */
  takeReceivedFd(): PassedFd | undefined {
    const [first, ...rest] = this.receivedFds;
    this.monitor.inputBudget.fdsHeld -= this.receivedFds.length;
    this.receivedFds = [];
    for (const fd of rest) fd.close();
    return first;
  }

  /** The peer went away: queued requests are dropped, partial input discarded (§1.7). A
   *  command already running finishes; its reply goes nowhere. */
  close(): void {
    if (this.state === SessionState.Closed) return;
    this.releaseHeld();
    this.state = SessionState.Closed;
    this.clearNegotiationDeadline();
    this.queue.length = 0;
    this.dropOutput();
    this.backlog = [];
    this.parser.reset();
    this.releaseInput();
    this.monitor.detach(this);
  }

  /** Writes what is pending and closes the connection (daemon shutdown). */
  shutdown(): void {
    this.flush();
    this.transportImpl.end();
    this.close();
  }

  /** While frozen, input is parsed only up to the next message boundary (byte by byte: a chunk
   *  may hold the end of one message and the start of another); the rest is held unparsed. */
  private receiveFrozen(chunk: Buffer): void {
    let i = 0;
    if (this.held.length === 0) {
      this.inReceive = true;
      try {
        while (i < chunk.length && !this.parser.atBoundary) this.parser.feed(chunk.subarray(i, ++i));
      } finally {
        this.inReceive = false;
        this.flush();
      }
    }
    if (i < chunk.length) this.held.push(chunk.subarray(i));
    if (this.parser.atBoundary) this.reachedBoundary();
  }

  private reachedBoundary(): void {
    this.transportImpl.pause();
    for (const w of this.boundaryWaiters.splice(0)) w();
  }

  /** Handover: stops running requests (they stay queued) and stops reading once no message is
   *  partly received. Resolves then; a command already running still finishes and is answered. */
  freeze(): Promise<void> {
    this.frozen = true;
    this.backlogToFrozen();
    if (this.parser.atBoundary) {
      this.reachedBoundary();
      return Promise.resolve();
    }
    // The rest of the message must arrive, even if a long queue had paused reading.
    this.transportImpl.resume();
    return new Promise((resolve) => this.boundaryWaiters.push(resolve));
  }

  /** The handover failed: carry on as before. */
  thaw(): void {
    if (!this.frozen) return;
    this.frozen = false;
    this.boundaryWaiters = [];
    const held = this.held;
    this.held = [];
    for (const h of held) this.receive(h);
    this.pump();
    if (this.negotiationExpired) return this.negotiationTimedOut();
    this.resumeReading();
  }

  get canHandOver(): boolean {
    return this.transportImpl.handOver !== undefined;
  }

  /** The frozen session's state and its connection's fd; the session stays frozen (its
   *  transport is dropped by the caller once the other process has taken over). */
  async export(): Promise<{ fd: number; state: SessionExport } | undefined> {
    if (!this.frozen) return undefined;
    // A reply being written a piece per turn (and what waits behind it) goes out first.
    const deadline = Date.now() + HANDOVER_OUTPUT_MS;
    while ((this.streaming !== undefined || this.outSpecial > 0) && this.state !== SessionState.Closed) {
      if (Date.now() > deadline) throw new Error('a client did not take its pending output');
      await new Promise((r) => setTimeout(r, 2));
    }
    const h = await this.transportImpl.handOver!();
    if (!h || this.state === SessionState.Closed) return undefined;
    if (!this.frozen) {
      // The handover was abandoned (thawed) while the transport was stopping: read again.
      if (!this.paused) this.transportImpl.resume();
      return undefined;
    }
    const { fd, pending } = h;
    const state: SessionExport = {
      negotiated: this.state === SessionState.Command,
      oob: this.oobEnabled,
      queue: [...this.queue],
      pending: Buffer.concat([...this.held, pending]),
    };
    if (this.state === SessionState.Negotiating && this.negotiateBy !== undefined) state.negotiateBy = this.negotiateBy;
    return { fd, state };
  }

  /** Carries on a session exported by another process: no greeting, its queue and input. An
   *  un-negotiated one keeps the deadline it had, but no later one than this process would give
   *  (a predecessor without a timeout, or with a longer one, does not lift this one's). */
  resumeFrom(state: SessionExport): void {
    if (state.negotiated) this.completeNegotiation(state.oob ? ['oob'] : []);
    else if (this.negotiationTimeoutMs > 0) {
      const own = Date.now() + this.negotiationTimeoutMs;
      this.armNegotiationDeadline(state.negotiateBy !== undefined ? Math.min(state.negotiateBy, own) : own);
    }
    for (const q of state.queue) this.queue.push(q);
    this.pump();
    if (state.pending.length > 0) this.receive(state.pending);
    else this.flush();
  }

  /** Delivers an already encoded event line; dropped while negotiating (§1.3). */
  deliverEvent(line: string): void {
    if (this.state !== SessionState.Command) return;
    this.flushSoon();
    this.send(line);
  }

  private onItem(item: StreamItem): void {
    if (this.transportImpl.admit && !this.transportImpl.admit()) {
      // Cut off by the transport: stop parsing this chunk (reset ends feed()) and drop all.
      this.parser.reset();
      this.close();
      return;
    }
    if (item.kind === 'value' && isOobRequest(item.value) && !this.frozen) {
      // Out-of-band: answered now, overtaking queued in-band requests (§1.5).
      this.answer(this.noteId(item.value, this.monitor.dispatch(item.value, this.ctx, this.oobEnabled)));
      return;
    }
    this.queue.push(item);
    if (this.queue.length >= QUEUE_PAUSE_LENGTH && !this.paused) {
      this.paused = true;
      this.transportImpl.pause();
    }
    this.pump();
  }

  /** Runs queued in-band requests in order; an asynchronous command holds the queue, except
   *  that a change of another object may start once the running ones only wait for their
   *  journal write (group commit within a pipeline). Replies go out in request order. */
  private pump(): void {
    while (this.queue.length > 0 && this.mayRunNext()) {
      const item = this.queue[0];
      const key = item.kind === 'value' ? overlapKey(item.value) : undefined;
      if (this.running.length > 0 && (key === undefined || this.running.some((r) => !r.staged || r.key === key))) break;
      this.queue.shift();
      if (item.kind === 'error') {
        this.writeReply({ hasId: false, error: { class: 'GenericError', desc: item.desc } });
        continue;
      }
      const command = isJsonObject(item.value) ? item.value.execute : undefined;
      const run: Running = { command: typeof command === 'string' ? command : undefined, key, staged: false };
      const ctx: CommandContext =
        key === undefined
          ? this.ctx
          : {
              session: this,
              staged: () => {
                if (run.staged) return;
                run.staged = true;
                // Not from inside the journal's call: the next request starts on a clean stack.
                queueMicrotask(() => this.pump());
              },
            };
      const r = this.noteId(item.value, this.monitor.dispatch(item.value, ctx, this.oobEnabled));
      this.countRun();
      if (r instanceof Promise) {
        this.running.push(run);
        this.monitor.beginCommand();
        void r.then((reply) => {
          this.monitor.endCommand();
          run.reply = reply;
          this.answerRunning();
        });
      } else if (this.running.length > 0) {
        // Answered at once, but after the requests before it.
        run.reply = r;
        this.running.push(run);
      } else {
        this.writeReply(r);
        // Replies are written in one batch per chunk; a long batch checks the backlog.
        if (this.out.length >= PUMP_FLUSH_REPLIES) this.flush();
      }
    }
    if (this.paused && !this.frozen && this.queue.length < QUEUE_PAUSE_LENGTH / 2 && this.state !== SessionState.Closed) {
      this.paused = false;
      this.resumeReading();
    }
    this.endIfDone();
  }

  /** Counts a request run; after REQUESTS_PER_TURN in a row the rest wait for the next turn
   *  (others' input and replies come first). No timer is set until then. */
  private countRun(): void {
    if (++this.turnRuns < REQUESTS_PER_TURN) return;
    this.turnRuns = 0;
    this.turnYielded = true;
    setImmediate(() => {
      this.turnYielded = false;
      if (this.state === SessionState.Closed) return;
      this.inReceive = true; // replies of this turn go out in one write
      try {
        this.pump();
      } finally {
        this.inReceive = false;
        this.flush();
      }
    });
  }

  /** The peer shut down its sending side (`printf ... | socat - UNIX-CONNECT:...`): the
   *  requests it sent complete and are answered, a partial message is discarded (as on a
   *  disconnect, qemu-facts §1.7), then the connection ends. QEMU treats this as a disconnect
   *  and may lose replies of requests it was still running. */
  peerEnded(): void {
    if (this.state === SessionState.Closed || this.inputEnded) return;
    if (this.backlog.length > 0) {
      this.inputEndPending = true; // what it sent is parsed first
      return;
    }
    this.inputEnded = true;
    this.parser.reset();
    this.releaseInput();
    this.endIfDone();
  }

  /** Writes the replies of the oldest running requests that have one, in order. */
  private answerRunning(): void {
    this.flushSoon();
    const done: string[] = [];
    while (this.running.length > 0 && this.running[0].reply) {
      const r = this.running.shift()!;
      this.writeReply(r.reply!);
      if (r.command !== undefined) done.push(r.command);
    }
    this.pump();
    for (const c of done) crashPoint(`${c}:replied`);
  }

  /** The one guard of request execution: nothing runs while frozen for a handover, or once
   *  closed; while requests run, only what pump() lets overlap. */
  private mayRunNext(): boolean {
    return !this.frozen && !this.outputBlocked && !this.turnYielded && this.streaming === undefined && this.state !== SessionState.Closed;
  }

  /** Draining (the peer finished sending) ends once nothing is left to run or answer. */
  private endIfDone(): void {
    if (!this.inputEnded || !this.mayRunNext() || this.running.length > 0 || this.oobRunning > 0 || this.queue.length > 0) return;
    this.flush();
    this.transportImpl.end();
    this.close();
  }

  private answer(r: Reply | Promise<Reply>): void {
    if (r instanceof Promise) {
      this.monitor.beginCommand();
      this.oobRunning++;
      void r.then((reply) => {
        this.monitor.endCommand();
        this.oobRunning--;
        this.flushSoon();
        this.writeReply(reply);
        this.endIfDone();
      });
    } else {
      this.writeReply(r);
    }
  }

  /** Replies whose id is a long string decoded in parts (json/value.ts LONG_PARTS): printed
   *  from the parts. */
  private readonly idParts = new WeakMap<Reply, readonly string[]>();

  /** Notes the parts of the request's id for its reply (the id is echoed as it came). */
  private noteId(msg: JsonValue, r: Reply | Promise<Reply>): Reply | Promise<Reply> {
    const parts = longParts(msg, 'id');
    if (parts === undefined) return r;
    if (!(r instanceof Promise)) {
      this.idParts.set(r, parts);
      return r;
    }
    return r.then((reply) => {
      this.idParts.set(reply, parts);
      return reply;
    });
  }

  private writeReply(reply: Reply): void {
    const withFds = reply.result instanceof WithFds ? reply.result : undefined;
    if (this.state === SessionState.Closed) {
      withFds?.release();
      return;
    }
    if (withFds) return this.sendWithFds(encodeReply(reply), withFds);
    if (reply.hasId && encodingIsLarge(reply.id)) {
      this.out.push({ pieces: encodeReplyPieces(reply, this.idParts.get(reply)) });
      this.outSpecial++;
      if (!this.batching) this.flush();
      return;
    }
    const chunks = reply.result instanceof PreEncoded && !reply.error ? reply.result.chunks : undefined;
    if (chunks && this.transportImpl.writeBytes) return this.sendBytes(replyChunks(reply, chunks));
    this.send(encodeReply(reply));
  }

  /** A reply in byte chunks: what is batched goes first, then the chunks as they are. */
  private sendBytes(chunks: readonly Buffer[]): void {
    const t = this.transportImpl;
    if (this.streaming !== undefined || this.outSpecial > 0) {
      this.out.push({ bytes: chunks }); // after the reply being written a piece per turn
      this.outSpecial++;
      return;
    }
    this.flush();
    t.writeBytes?.(chunks);
    if (!this.outputBlocked && t.backlogged?.(() => this.outputUnblocked())) this.outputBlocked = true;
  }

  /** A reply that carries fds: what is batched goes first, then this reply with its fds. */
  private sendWithFds(line: string, withFds: WithFds): void {
    const t = this.transportImpl;
    if (!t.writeWithFds) {
      // Handlers refuse fd replies on such transports; should one get here, the reply goes
      // without the fds rather than not at all.
      withFds.release();
      return this.send(line);
    }
    if (this.streaming !== undefined || this.outSpecial > 0) {
      this.out.push({ line, withFds }); // after the reply being written a piece per turn
      this.outSpecial++;
      return;
    }
    this.flush();
    t.writeWithFds(line, withFds.fds);
    if (!this.outputBlocked && t.backlogged?.(() => this.outputUnblocked())) this.outputBlocked = true;
  }

  private send(line: string): void {
    this.out.push(line);
    if (!this.batching) this.flush();
  }

  /** Writes what is batched once the current cascade of promise reactions is over: a batch of
   *  journaled changes is answered together, and each change sends an event to every session;
   *  this makes all of it one write per connection, where each reply and each event would
   *  otherwise be a write of its own (16 clients adding at once: 16 writes, not 272). Events
   *  and asynchronous replies queue it (nothing to queue while input is fed: receive() writes
   *  at its end); send() then only batches. process.nextTick runs after the microtasks queued
   *  meanwhile, before any I/O or timer. */
  private flushSoon(): void {
    if (this.batching) return;
    this.flushQueued = true;
    process.nextTick(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.out.length === 0 || this.state === SessionState.Closed || this.streaming !== undefined) return;
    if (this.outSpecial === 0) {
      const text = this.out.length === 1 ? (this.out[0] as string) : this.out.join('');
      this.out = [];
      this.transportImpl.write(text);
    } else {
      // In order: the text up to the next reply in pieces or with fds, that reply, and so on.
      while (this.out.length > 0 && this.streaming === undefined && !this.isClosed()) {
        let k = 0;
        while (k < this.out.length && typeof this.out[k] === 'string') k++;
        if (k > 0) {
          this.transportImpl.write((this.out.splice(0, k) as string[]).join(''));
          continue;
        }
        const item = this.out.shift() as Exclude<OutItem, string>;
        this.outSpecial--;
        if ('pieces' in item) {
          this.streaming = item.pieces;
          this.continueStream(true);
        } else if ('bytes' in item) {
          this.transportImpl.writeBytes!(item.bytes);
        } else {
          this.transportImpl.writeWithFds!(item.line, item.withFds.fds);
        }
      }
    }
    if (this.isClosed()) return;
    if (!this.outputBlocked && this.transportImpl.backlogged?.(() => this.outputUnblocked())) this.outputBlocked = true;
  }

  /** Writes the next STREAM_BYTES_PER_TURN of the reply being printed a piece at a time; the
   *  rest once the peer has taken it (a backlog) or next turn. Once it is all written, what
   *  waited behind it goes out and requests run again (`fromFlush`: flush() goes on itself). */
  private continueStream(fromFlush = false): void {
    const it = this.streaming;
    if (it === undefined) return;
    if (this.state === SessionState.Closed) {
      this.streaming = undefined;
      return;
    }
    let text = '';
    let done = false;
    while (text.length < STREAM_BYTES_PER_TURN) {
      const r = it.next();
      if (r.done === true) {
        done = true;
        break;
      }
      text += r.value;
    }
    if (text !== '') this.transportImpl.write(text);
    if (done) {
      this.streaming = undefined;
      if (fromFlush) return;
      this.flush();
      this.pump();
      return;
    }
    if (this.transportImpl.backlogged?.(() => this.continueStream())) return;
    setImmediate(() => this.continueStream());
  }

  /** The connection is gone: output not written is dropped, fds not sent closed. */
  private dropOutput(): void {
    for (const o of this.out) if (typeof o !== 'string' && 'withFds' in o) o.withFds.release();
    this.out = [];
    this.outSpecial = 0;
    this.streaming = undefined;
  }

  private outputUnblocked(): void {
    this.outputBlocked = false;
    if (this.state === SessionState.Closed) return;
    this.pump();
    this.flush();
  }
}

const RETURN_OPEN = Buffer.from('{"return": ', 'latin1');
const RETURN_CLOSE = Buffer.from('}\r\n', 'latin1');

/** encodeReply's bytes for a result in chunks (PreEncoded): the same text, not joined. */
export function replyChunks(reply: Reply, chunks: readonly Buffer[]): Buffer[] {
  const close = reply.hasId ? Buffer.from(`, "id": ${encodeJson(reply.id ?? null, { qdictOrder: true })}}\r\n`, 'latin1') : RETURN_CLOSE;
  return [RETURN_OPEN, ...chunks, close];
}

/** How long a handover waits for a reply being written a piece per turn. */
const HANDOVER_OUTPUT_MS = 5000;

/** encodeReply()'s text in pieces, for a reply whose id is large to print (encodingIsLarge). */
export function* encodeReplyPieces(reply: Reply, idParts?: readonly string[]): Generator<string, void, undefined> {
  const id = encodeJsonPieces(reply.id ?? null, { qdictOrder: true }, idParts);
  if (reply.error) {
    yield '{"id": ';
    yield* id;
    yield `, "error": {"class": ${encodeJson(reply.error.class)}, "desc": ${encodeJson(reply.error.desc)}}}\r\n`;
    return;
  }
  const result = reply.result;
  const value = result instanceof WithFds ? result.result : result;
  const ret = value instanceof PreEncoded ? value.json : encodeJson(value === undefined ? {} : value, { qdictOrder: true });
  yield `{"return": ${ret}, "id": `;
  yield* id;
  yield '}\r\n';
}

/** Encodes a reply the way QEMU prints it: members in QDict order
 *  (`{"return": R, "id": I}`, `{"id": I, "error": {"class": C, "desc": D}}`), then CRLF. */
export function encodeReply(reply: Reply): string {
  if (reply.error) {
    const err = `"error": {"class": ${encodeJson(reply.error.class)}, "desc": ${encodeJson(reply.error.desc)}}`;
    return reply.hasId ? `{"id": ${encodeJson(reply.id ?? null, { qdictOrder: true })}, ${err}}\r\n` : `{${err}}\r\n`;
  }
  const result = reply.result;
  const value = result instanceof WithFds ? result.result : result;
  const ret = value instanceof PreEncoded ? value.json : encodeJson(value === undefined ? {} : value, { qdictOrder: true });
  return reply.hasId ? `{"return": ${ret}, "id": ${encodeJson(reply.id ?? null, { qdictOrder: true })}}\r\n` : `{"return": ${ret}}\r\n`;
}
