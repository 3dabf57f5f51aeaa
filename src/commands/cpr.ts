// Handlers of the restart commands (qapi/hostmemd.json): query-cpr reports, per object, whether
// its memory survives a restart and where it came from, what failed to come back at start, and
// which objects were not re-created because their memory was gone.
// whether the journal can record changes now (a full or read-only state directory degrades it).
import { Handler } from '../qmp/messages';
import { JsonValue } from '../json/value';
import { UserCreatable } from '../qom/user-creatable';
import { ObjectJournal } from '../journal/object-journal';

export interface CprServices {
  journalDir: string;
  fdStore: boolean;
  objects(): Iterable<UserCreatable>;
  cpr: ObjectJournal;
  /** Runs the handover up to the point of no return; the returned step completes it and is
   *  run after the reply is written. */
  handover(channel: string, freezeTimeoutMs?: number): Promise<() => Promise<void>>;
}

/** query-cpr's answer (also `info cpr`'s). */
export function cprInfo(svc: CprServices): JsonValue {
  const objects: JsonValue[] = [];
  for (const o of svc.objects()) {
    const fate = svc.cpr.origin(o.name);
    const entry: Record<string, JsonValue> = {
      id: o.name,
      'qom-type': o.typeName,
      preserved: o.keeping()?.preservable ?? true,
      origin: fate.origin,
    };
    objects.push(entry);
  }
  const problems: JsonValue[] = svc.cpr.problems.map((p) => {
    const e: Record<string, JsonValue> = { problem: p.problem };
    if (p.id !== undefined) e.id = p.id;
    if (p.file !== undefined) e.file = p.file;
    return e;
  });
  const lost: JsonValue[] = svc.cpr.lost.map((l) => {
    const e: Record<string, JsonValue> = { id: l.id, 'qom-type': l.qomType, reason: l.reason };
    if (l.file !== undefined) e.file = l.file;
    return e;
  });
  const health = svc.cpr.health();
  const info: Record<string, JsonValue> = { journal: svc.journalDir, 'fd-store': svc.fdStore, objects, problems, lost, 'journal-state': health.degraded ? 'degraded' : 'writable' };
  if (health.reason !== undefined) info['journal-error'] = health.reason;
  if (health.since !== undefined) info['journal-since'] = health.since;
  info['journal-pending'] = health.pending;
  return info;
}

export function cprHandlers(svc: CprServices): Map<string, Handler> {
  return new Map<string, Handler>([
    ['query-cpr', () => cprInfo(svc)],
    [
      'cpr-handover',
      async (a) => {
        const commit = await svc.handover(a.channel as string, a['freeze-timeout'] as number | undefined);
        // After the reply has been written (replies are written in microtasks).
        setImmediate(() => void commit());
        return {};
      },
    ],
  ]);
}
