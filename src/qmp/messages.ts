// Shapes exchanged between the dispatcher, the session and the command handlers.
// Handlers return plain values (or PreEncoded for precomputed answers); only the session
// turns replies into wire text.
import type { JsonValue } from '../json/value';
import type { QmpErrorBody } from '../errors/to-qmp';

/** A result that is already QMP-encoded JSON text (e.g. the precomputed query-qmp-schema), or
 *  ASCII bytes in chunks that a transport able to (the UNIX socket) writes as they are, with no
 *  copy into one string (query-memdev's and qom-list's 10,000 entries kept as ready blocks). */
export class PreEncoded {
  #json?: string;
  readonly chunks?: readonly Buffer[];
  constructor(json: string | readonly Buffer[]) {
    if (typeof json === 'string') this.#json = json;
    else this.chunks = json;
  }
  /** The text; for chunks, joined once (latin1: they are ASCII) when a transport needs text. */
  get json(): string {
    return (this.#json ??= Buffer.concat(this.chunks ?? []).toString('latin1'));
  }
}

/** An fd a reply carries: opaque here (the native layer's Fd fits); the transport passes its
 *  number with SCM_RIGHTS and closes it once sent or once the connection is gone. */
export interface PassedFd {
  raw(syscall: string): number;
  close(): void;
}

/** A result whose reply carries fds (memdev-export). Only transports that can pass fds (the
 *  UNIX socket) are given one: handlers check SessionControl.fdPassing first. */
export class WithFds {
  constructor(
    readonly result: JsonValue,
    readonly fds: readonly PassedFd[],
  ) {}
  /** The reply was not sent (the connection went away, an error): the fds are let go. */
  release(): void {
    for (const fd of this.fds) fd.close();
  }
}

export type CommandResult = JsonValue | PreEncoded | WithFds | undefined;

/** Who is at the other end of a connection that can pass fds (SO_PEERCRED). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** What one request produced: a result or an error, and the id to echo if there was one. */
export interface Reply {
  hasId: boolean;
  id?: JsonValue;
  result?: CommandResult;
  error?: QmpErrorBody;
}

/** The per-connection state a handler may see or change (qmp_capabilities needs it). */
export interface SessionControl {
  readonly clientId: string;
  readonly transport: string;
  readonly negotiated: boolean;
  readonly offeredCapabilities: readonly string[];
  /** Present when the connection can carry fds (a UNIX socket): the peer's credentials as
   *  the kernel reports them. */
  readonly fdPassing?: { peer(): PeerCredentials | undefined };
  /** Takes the fd the client sent (SCM_RIGHTS) and no command took yet; extra fds of the same
   *  batch are closed. Undefined when none is held (or the transport cannot carry fds). */
  takeReceivedFd?(): PassedFd | undefined;
  /** Leaves negotiation mode with the given capabilities enabled. */
  completeNegotiation(caps: readonly string[]): void;
}

export interface CommandContext {
  session: SessionControl;
  /** Present for a command that may let the connection's next one start early: called once
   *  only its durable record is left to wait for (the journal has queued it), so that a
   *  pipeline's changes can share one durable write. Replies still go out in order. */
  staged?: () => void;
}

export type Handler = (args: Record<string, JsonValue>, ctx: CommandContext) => CommandResult | Promise<CommandResult>;
