// Restore, the daemon's second phase: the objects of --object (before any client can
// connect; a bad one stops the start), then the journaled objects of earlier runs with their
// preserved memory, and, for a handover's successor, the decision to take over: only if every
// object came back with its memory, else the running daemon goes on.
import { JsonValue } from '../json/value';
import { toQmpError } from '../errors/to-qmp';
import { errorText } from '../errors/text';
import { IncomingStart, IncomingTakeover, receiveHandoverTakeover } from '../handover/handover';
import { CONFIG_SYMBOLS } from './config';
import { parseObjectOpt } from './object-opt';
import type { Parts } from './assemble';
import type { Logger } from './logger';

/** Creates the --object objects in order; throws `-object ARG: message` for the first bad one. */
async function createCommandLineObjects(parts: Parts, specs: readonly string[], logger: Logger): Promise<Set<string>> {
  const seen = new Set<string>();
  for (const arg of specs) {
    const fail = (msg: string): never => {
      throw new Error(`-object ${arg}: ${msg}`);
    };
    let parsed: ReturnType<typeof parseObjectOpt>;
    try {
      parsed = parseObjectOpt(arg, parts.model, CONFIG_SYMBOLS);
    } catch (e) {
      return fail(errorText(e));
    }
    for (const w of parsed.warnings) logger.warn({ object: arg }, w);
    const checked = parts.validator.validate('object-add', parsed.args);
    if (!checked.ok) return fail(checked.desc);
    const args = checked.value as Record<string, JsonValue>;
    if (seen.has(args.id as string)) fail(`Duplicate ID '${String(args.id)}' for object`);
    seen.add(args.id as string);
    try {
      parts.journal.noteCreated(await parts.objects.add(args, { persist: false }));
    } catch (e) {
      fail(toQmpError(e).desc);
    }
  }
  return seen;
}

/** Why a successor cannot take over (an object lost or not restored: every one is a
 *  problem), or undefined. */
function lostObject(parts: Parts): string | undefined {
  const lost = parts.journal.problems.map((p) => (p.id !== undefined ? `object '${p.id}': ${p.problem}` : p.problem));
  return lost.length > 0 ? `the new hostmemd could not take every object: ${lost[0]}` : undefined;
}

/** Runs the phase; returns what a handover's successor takes over (undefined otherwise). On
 *  failure a waiting predecessor is told why, so that it keeps serving. */
export async function restore(
  parts: Parts,
  objectSpecs: readonly string[],
  incoming: IncomingStart | undefined,
  logger: Logger,
  journalRestoring: (running: boolean) => void = () => undefined,
): Promise<IncomingTakeover | undefined> {
  let acknowledged = false;
  try {
    const taken = await createCommandLineObjects(parts, objectSpecs, logger);
    journalRestoring(true);
    let restored: number;
    try {
      restored = await parts.journal.restore(parts.objects, parts.validator, taken, { readOnly: incoming !== undefined });
    } finally {
      journalRestoring(false);
    }
    if (restored > 0 || parts.journal.problems.length > 0) logger.info({ restored, problems: parts.journal.problems.length }, 'objects restored from the state journal');
    if (!incoming) return undefined;
    acknowledged = true; // receiveHandoverTakeover tells the predecessor itself, either way
    return await receiveHandoverTakeover(incoming, lostObject(parts));
  } catch (e) {
    if (incoming && !acknowledged) await receiveHandoverTakeover(incoming, errorText(e)).catch(() => undefined);
    throw e;
  }
}
