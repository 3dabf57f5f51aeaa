// Turns one parsed request into a reply: QEMU's top-level checks (qemu-facts §1.4) in their
// order, command lookup in the table the session's state allows, the OOB rule, ajv argument
// validation, then the handler. It knows nothing of sockets or wire text.
import { JsonValue, JsonObject, isJsonObject, longParts, memberKeys } from '../json/value';
import { qdictKeyOrder } from '../json/writer';
import { CommandContext, Handler, Reply, CommandResult } from './messages';
import { toQmpError, QmpErrorBody } from '../errors/to-qmp';
import { clip, MAX_ECHO_CHARS } from '../errors/text';

/** What the dispatcher needs to know of a command (from the compiled schema). */
export interface DispatchCommand {
  name: string;
  allowOob: boolean;
  handler?: Handler;
}

export interface ArgChecker {
  validate(command: string, args: JsonObject): { ok: true; value: JsonObject } | { ok: false; desc: string };
}

export interface DispatchObserver {
  /** Called once per dispatched request that named a command (for logs and metrics). */
  onCommand(command: string, ctx: CommandContext, error: QmpErrorBody | undefined, startNs: bigint): void;
  onUnexpected(e: unknown, command: string): void;
}

const NEGOTIATION_DESC = "Expecting capabilities negotiation with 'qmp_capabilities'";
export const NEGOTIATION_COMMAND = 'qmp_capabilities';


/** True for a message QEMU runs out of band (has exec-oob, lacks execute), whether or not
 *  OOB is enabled (qemu-facts §1.5). */
export function isOobRequest(msg: JsonValue): boolean {
  return isJsonObject(msg) && 'exec-oob' in msg && !('execute' in msg);
}

export class Dispatcher {
  constructor(
    private readonly commands: ReadonlyMap<string, DispatchCommand>,
    private readonly args: ArgChecker,
    private readonly observer: DispatchObserver,
  ) {}

  /** Dispatches one message. Synchronous handlers give a Reply at once; asynchronous ones a
   *  Promise. `oobEnabled`/negotiation state come from the session via ctx. */
  dispatch(msg: JsonValue, ctx: CommandContext, oobEnabled: boolean): Reply | Promise<Reply> {
    if (!isJsonObject(msg)) {
      return { hasId: false, error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } };
    }
    const hasId = 'id' in msg;
    const id = msg.id;
    const fail = (e: QmpErrorBody): Reply => ({ hasId, id, error: e });

    let execKey: string | undefined;
    // QEMU meets the members in QDict order: the first problem it sees is the one it reports.
    for (const key of qdictKeyOrder(memberKeys(msg))) {
      const v = msg[key];
      if (key === 'execute' || (oobEnabled && key === 'exec-oob')) {
        if (typeof v !== 'string') return fail(generic(`QMP input member '${key}' must be a string`));
        if (execKey !== undefined) return fail(generic(`QMP input member '${key}' clashes with '${execKey}'`));
        execKey = key;
      } else if (key === 'arguments') {
        if (!isJsonObject(v)) return fail(generic("QMP input member 'arguments' must be an object"));
      } else if (key !== 'id') {
        return fail(generic(`QMP input member '${key}' is unexpected`));
      }
    }
    if (execKey === undefined) return fail(generic("QMP input lacks member 'execute'"));
    let name = msg[execKey] as string;
    // No command has a name this long, and only its head is ever echoed or logged (clip):
    // keep just that, from the decoded parts when it has them, so that a 64 MiB name is never
    // copied whole (a fresh allocation of that size is a long stall of page faults).
    if (name.length > MAX_ECHO_CHARS) name = head(name, longParts(msg, execKey), MAX_ECHO_CHARS + 1);
    const startNs = process.hrtime.bigint();

    const negotiated = ctx.session.negotiated;
    const cmd = negotiated || name === NEGOTIATION_COMMAND ? this.commands.get(name) : undefined;
    if (!cmd) {
      // The name is echoed clipped to MAX_ECHO_CHARS (QEMU echoes it whole, however long).
      const desc = negotiated ? `The command ${clip(name)} has not been found` : NEGOTIATION_DESC;
      return this.finish(name, ctx, startNs, fail({ class: 'CommandNotFound', desc }));
    }
    if (execKey === 'exec-oob' && !cmd.allowOob) {
      return this.finish(name, ctx, startNs, fail(generic(`The command ${name} does not support OOB`)));
    }
    const rawArgs = (msg.arguments as JsonObject | undefined) ?? {};
    const checked = this.args.validate(name, rawArgs);
    if (!checked.ok) return this.finish(name, ctx, startNs, fail(generic(checked.desc)));
    if (!cmd.handler) {
      // In the schema but without a handler yet: QEMU's wording for a disabled command.
      const desc = `Command ${name} has been disabled: not implemented by this hostmemd yet`;
      return this.finish(name, ctx, startNs, fail({ class: 'CommandNotFound', desc }));
    }

    let out: CommandResult | Promise<CommandResult>;
    try {
      out = cmd.handler(checked.value, ctx);
    } catch (e) {
      return this.finish(name, ctx, startNs, fail(this.mapError(e, name, negotiated)));
    }
    if (out instanceof Promise) {
      return out.then(
        (result) => this.finish(name, ctx, startNs, { hasId, id, result }),
        (e: unknown) => this.finish(name, ctx, startNs, fail(this.mapError(e, name, negotiated))),
      );
    }
    return this.finish(name, ctx, startNs, { hasId, id, result: out });
  }

  private mapError(e: unknown, name: string, negotiated: boolean): QmpErrorBody {
    const body = toQmpError(e, (err) => this.observer.onUnexpected(err, name));
    // In negotiation mode QEMU rewrites every CommandNotFound (qemu-facts §1.3).
    if (!negotiated && body.class === 'CommandNotFound') {
      return { class: 'CommandNotFound', desc: NEGOTIATION_DESC };
    }
    return body;
  }

  private finish(name: string, ctx: CommandContext, startNs: bigint, reply: Reply): Reply {
    this.observer.onCommand(name, ctx, reply.error, startNs);
    return reply;
  }
}

function generic(desc: string): QmpErrorBody {
  return { class: 'GenericError', desc };
}

/** The first `n` characters of `s`, from `parts` (s's decoded parts) when given. */
function head(s: string, parts: readonly string[] | undefined, n: number): string {
  if (parts === undefined) return s.slice(0, n);
  let out = '';
  for (const p of parts) {
    if (out.length >= n) break;
    out += p.slice(0, n - out.length);
  }
  return out;
}
