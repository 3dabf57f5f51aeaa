// Shapes exchanged between the dispatcher, the session and the command handlers.
// Handlers return plain values (or PreEncoded for precomputed answers); only the session
// turns replies into wire text.
import type { JsonValue } from '../json/value';
import type { QmpErrorBody } from '../errors/to-qmp';

/** A result that is already QMP-encoded JSON text (e.g. the precomputed query-qmp-schema). */
export class PreEncoded {
  constructor(readonly json: string) {}
}

export type CommandResult = JsonValue | PreEncoded | undefined;

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
