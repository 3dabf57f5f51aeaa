// The object set kept across restarts: records object-add/del/qom-set in the journal (as the
// ObjectManager's persistence), and at start re-creates, in creation order, every journaled
// object whose memory is still there (a preserved fd, a file). An object whose memory is gone
// is never re-created empty under its id: it is reported as lost and its entry moved to
// objects/lost/, so the id is free again. Nothing is dropped silently.
import { JsonValue } from '../json/value';
import { ObjectManager, ObjectPersistence, UserCreatable } from '../qom/user-creatable';
import * as native from '../native';
import { errorText } from '../errors/text';
import type { Log } from '../log';
import { FdRegistry } from '../fds/registry';
import { FdIdentity, Journal, JournalEntry } from './journal';

export type CprOrigin = 'created' | 'reattached' | 'reopened';

/** A journaled object not re-created because its memory is gone (query-cpr's `lost`). */
export interface CprLost {
  id: string;
  qomType: string;
  reason: string;
  /** Where its journal entry was moved (undefined: left in place, e.g. a handover's successor). */
  file?: string;
}

/** Thrown from the restore check: the object's memory is gone, it must not be re-created. */
class MemoryGone extends Error {
  constructor(
    readonly reason: string,
    readonly qomType: string,
  ) {
    super(reason);
  }
}

export interface CprProblem {
  id?: string;
  problem: string;
  file?: string;
}

interface Validator {
  validate(command: string, args: Record<string, JsonValue>): { ok: true; value: Record<string, JsonValue> } | { ok: false; desc: string };
}


/** The file an object's memory is in, as the fd registry holds it (checked at restore). */
function fdIdentity(obj: UserCreatable, fds: FdRegistry): FdIdentity | undefined {
  const name = obj.keeping()?.fdName;
  const fd = name === undefined ? undefined : fds.find(name);
  if (name === undefined || !fd) return undefined;
  const st = native.fstat(fd);
  return { name, dev: st.dev.toString(), ino: st.ino.toString() };
}

export class ObjectJournal implements ObjectPersistence {
  /** Origins other than 'created' (objects restored at start); nothing is kept per object
   *  otherwise: the journal files are the record. */
  private readonly origins = new Map<string, { origin: CprOrigin }>();
  readonly problems: CprProblem[] = [];
  readonly lost: CprLost[] = [];

  constructor(
    readonly journal: Journal,
    private readonly fds: FdRegistry,
    private readonly log: Log,
  ) {}

  // ---- ObjectPersistence ------------------------------------------------------------------
  async added(obj: UserCreatable, options: Record<string, JsonValue>): Promise<void> {
    const e: JournalEntry = { id: obj.name, seq: this.journal.allocSeq(), args: { ...options }, fd: fdIdentity(obj, this.fds) };
    await this.journal.put(e);
    this.origins.delete(obj.name);
  }

  async deleting(obj: UserCreatable): Promise<void> {
    await this.journal.remove(obj.name);
    this.origins.delete(obj.name);
    delete this.unjournaled[obj.name];
  }

  async changed(obj: UserCreatable, property: string): Promise<void> {
    // Objects from --object are not journaled: nothing to update.
    if (obj.name in this.unjournaled) return;
    const value = obj.getProperty(property);
    await this.journal.update(obj.name, (e) => ({ ...e, args: { ...e.args, [property]: value } }));
  }

  /** Ids of objects made outside the journal (--object). */
  private readonly unjournaled: Record<string, true> = Object.create(null) as Record<string, true>;

  /** An object made outside the journal (--object): listed, not recorded. */
  noteCreated(obj: UserCreatable): void {
    this.unjournaled[obj.name] = true;
  }

  origin(id: string): { origin: CprOrigin } {
    return this.origins.get(id) ?? { origin: 'created' };
  }

  // ---- restore ------------------------------------------------------------------------------
  private problem(p: CprProblem, level: 'warn' | 'error' = 'error'): void {
    this.problems.push(p);
    this.log[level]({ id: p.id, file: p.file }, `restore: ${p.problem}`);
  }

  /** Re-creates every journaled object (ids in `taken` exist already, from --object), then gives
   *  up preserved fds no object claimed. Returns the number of objects restored. */
  async restore(objects: ObjectManager, validator: Validator, taken: ReadonlySet<string>, how: { readOnly?: boolean } = {}): Promise<number> {
    // Read-only (a handover's successor): the journal still belongs to the running daemon,
    // which carries on with it if this process does not take over.
    const ro = how.readOnly === true;
    const fds = this.fds;
    const { entries, problems } = this.journal.load({ keepTemp: ro });
    // Moving aside can fail too (the entry vanished, a read-only state dir): the entry is still
    // not acted on, and the report says where it stayed.
    let failedAside: string | undefined;
    const aside = (file: string, folder: 'rejected' | 'lost' = 'rejected'): string | undefined => {
      failedAside = undefined;
      if (ro) return undefined;
      try {
        return this.journal.reject(file, folder);
      } catch (err) {
        failedAside = errorText(err);
        return file;
      }
    };
    const moved = (): string => (ro ? 'left in place' : failedAside !== undefined ? `left in place (moving it aside failed: ${failedAside})` : 'moved aside');
    for (const p of problems) {
      const file = aside(p.file);
      this.problem({ id: p.id, problem: `journal entry unreadable (${p.reason}); ${moved()}, object not restored`, file });
    }
    let restored = 0;
    for (const e of entries) {
      const reject = (problem: () => string): void => {
        const file = aside(this.journal.fileFor(e.id));
        this.problem({ id: e.id, problem: problem(), file });
      };
      if (taken.has(e.id)) {
        reject(() => `an object '${e.id}' was already created by --object; journal entry ${moved()}`);
        continue;
      }
      const checked = validator.validate('object-add', e.args);
      if (!checked.ok) {
        reject(() => `journal entry no longer valid: ${checked.desc}; ${moved()}, object not restored`);
        continue;
      }
      // A preserved fd must be the very file the backend had: anything else is not its memory.
      let mismatch: string | undefined;
      if (e.fd && fds.isPreserved(e.fd.name)) {
        const st = native.fstat(fds.find(e.fd.name)!);
        if (st.dev.toString() !== e.fd.dev || st.ino.toString() !== e.fd.ino) {
          mismatch = `the preserved fd named '${e.fd.name}' is another file (inode ${st.ino}, journal says ${e.fd.ino})`;
          fds.discardPreserved(e.fd.name);
        }
      }
      let obj: UserCreatable;
      try {
        obj = await objects.add(checked.value, { persist: false, restore: (o) => this.admit(o, e, mismatch) });
      } catch (err) {
        if (err instanceof MemoryGone) {
          const file = aside(this.journal.fileFor(e.id), 'lost');
          const where = ro ? 'left in place' : failedAside !== undefined ? moved() : `moved to ${file}, the id is free`;
          this.lost.push({ id: e.id, qomType: err.qomType, reason: err.reason, file: ro || failedAside !== undefined ? undefined : file });
          this.problem({ id: e.id, problem: `memory lost (${err.reason}); object not re-created, journal entry ${where}`, file }, 'warn');
        } else {
          reject(() => `could not be re-created: ${errorText(err)}; journal entry ${moved()}`);
        }
        continue;
      }
      restored++;
      const fresh: JournalEntry = { ...e, fd: fdIdentity(obj, fds) };
      const fate = this.fateOf(obj);
      if (fate.origin !== 'created') this.origins.set(e.id, fate);
      this.log.info({ id: e.id, origin: fate.origin }, 'restore: object restored');
      // A reopened file's fd is new: the journal must name the one now held.
      if (!ro && (fresh.fd?.ino !== e.fd?.ino || fresh.fd?.dev !== e.fd?.dev)) await this.journal.put(fresh);
    }
    // The caps guard object-add; they never throw away memory that exists (lowered across a
    // restart: every restored object stays, new object-adds are refused until under them).
    const over = objects.overCaps();
    if (over !== undefined) this.log.warn({ restored }, `restore: over the caps (${over}); restored objects kept, object-add refused until under them`);
    for (const name of fds.unclaimed()) {
      fds.discardPreserved(name);
      this.problem({ problem: `preserved fd '${name}' belongs to no journaled object; closed and removed from the fd store` }, 'warn');
    }
    return restored;
  }

  /** The restore check, before anything is allocated: throws MemoryGone unless the object's
   *  memory is still there (a preserved fd of its name, or a file holding its contents). */
  private admit(obj: UserCreatable, e: JournalEntry, mismatch: string | undefined): void {
    const src = obj.restoreSource();
    if (src === undefined || src.from === 'preserved-fd' || src.from === 'path') return;
    if (src.from === 'private') throw new MemoryGone('private memory (share=off) does not outlive the process', obj.typeName);
    const name = e.fd?.name ?? obj.name;
    throw new MemoryGone(src.detail ?? mismatch ?? `no preserved fd named '${name}' was passed in (fd store or handover)`, obj.typeName);
  }

  private fateOf(obj: UserCreatable): { origin: CprOrigin } {
    // An object without memory is whole again once its properties are.
    const k = obj.keeping();
    return { origin: k?.source === 'path' ? 'reopened' : 'reattached' };
  }
}
