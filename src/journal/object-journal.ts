// The object set kept across restarts: records object-add/del/qom-set in the journal (as the
// ObjectManager's persistence), and at start re-creates, in creation order, every journaled
// object whose memory is still there (a preserved fd, a file). An object whose memory is gone
// is never re-created empty under its id: it is reported as lost and its entry moved to
// objects/lost/, so the id is free again. Nothing is dropped silently.
// A state file system that is full or read-only degrades the journal instead of stopping the
// daemon: restore needs no write (rewrites wait), new objects are refused with the reason, and
// the first write that succeeds again (an object-add's probe, the periodic probe, a qom-set)
// ends it.
import { JsonValue } from '../json/value';
import { ObjectManager, ObjectPersistence, UserCreatable } from '../qom/user-creatable';
import * as native from '../native';
import { errorText } from '../errors/text';
import type { Log } from '../log';
import { FdRegistry } from '../fds/registry';
import { FdIdentity, Journal, JournalEntry, idTooLong, isStorageFault } from './journal';

/** While degraded, how often the journal checks whether it can write again (so that query-cpr,
 *  /metrics and deferred rewrites catch up without waiting for an object-add). */
export const PROBE_INTERVAL_MS = 5000;

/** What a probe is called in the reason of a fault it found. */
const TEST_WRITE = 'test write';

/** What a refused object-add says after the reason, while the journal cannot be written. */
export const DEGRADED_SUFFIX = 'the journal is degraded, new objects are refused until it is writable';

/** The journal's health for query-cpr, /metrics and the console. */
export interface JournalHealth {
  degraded: boolean;
  /** Why (the failed write's strerror and what it was), while degraded. */
  reason?: string;
  /** When it became degraded (ISO 8601). */
  since?: string;
  /** Objects whose entry must still be rewritten (a new fd identity found at restore). */
  pending: string[];
}

/** A failure's reason as glibc words it ("No space left on device"), for node's fs errors
 *  (negative errno, libuv's lower-case message with the path) as much as for SysError. */
export function journalFailureText(e: unknown): string {
  const errno = (e as NodeJS.ErrnoException | undefined)?.errno;
  if (typeof (e as NodeJS.ErrnoException | undefined)?.code === 'string' && typeof errno === 'number') return native.strerror(Math.abs(errno));
  return errorText(e);
}

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
  /** Set while writes fail for a reason of the file system (isStorageFault). */
  private fault?: { text: string; what: string; since: Date };
  /** Entries to rewrite once the journal can be written (the fd identity changed at restore). */
  private readonly pending = new Map<string, UserCreatable>();
  private flushing?: Promise<void>;
  private probing?: Promise<boolean>;
  private probeTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    readonly journal: Journal,
    private readonly fds: FdRegistry,
    private readonly log: Log,
  ) {
    if (journal.setupError !== undefined) this.failed(journal.setupError, `creating ${journal.dir}`);
  }

  /** Stops the periodic probe (teardown). */
  close(): void {
    this.closed = true;
    this.journal.close();
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
  }

  health(): JournalHealth {
    const h: JournalHealth = { degraded: this.fault !== undefined, pending: [...this.pending.keys()] };
    if (this.fault) {
      h.reason = `${this.fault.text} (${this.fault.what})`;
      h.since = this.fault.since.toISOString();
    }
    return h;
  }

  /** Notes a failed write; returns the error to answer with (glibc's text, no path). */
  private failed(e: unknown, what: string): Error {
    const text = journalFailureText(e);
    if (isStorageFault(e)) {
      if (!this.fault) {
        this.fault = { text, what, since: new Date() };
        this.log.error({ reason: text, what, dir: this.journal.dir }, `state journal degraded: ${text} (${what}); new objects are refused until it is writable`);
        if (!this.closed) {
          this.probeTimer = setInterval(() => void this.probe(), PROBE_INTERVAL_MS);
          this.probeTimer.unref();
        }
      } else if (what !== TEST_WRITE || text !== this.fault.text) {
        // A test write failing as the last write did says nothing new: the write that showed
        // the fault stays named.
        this.fault.text = text;
        this.fault.what = what;
      }
    }
    return new Error(text);
  }

  /** A write succeeded: the journal is writable, and the rewrites that waited are made. */
  private wrote(): void {
    if (this.fault) {
      this.log.info({ was: this.fault.text, since: this.fault.since.toISOString() }, 'state journal writable again');
      this.fault = undefined;
      clearInterval(this.probeTimer);
      this.probeTimer = undefined;
    }
    if (this.pending.size > 0) void this.flush();
  }

  /** Whether the journal can be written now (ends the degraded state if it can). */
  probe(): Promise<boolean> {
    this.probing ??= (async () => {
      try {
        await this.journal.probe();
        this.wrote();
        return true;
      } catch (e) {
        this.failed(e, TEST_WRITE);
        return false;
      } finally {
        this.probing = undefined;
      }
    })();
    return this.probing;
  }

  /** Rewrites the entries restore could not (their fd identity), each in turn with that
   *  object's other writes; one that fails stays pending. */
  private flush(): Promise<void> {
    this.flushing ??= (async () => {
      try {
        for (const [id, obj] of [...this.pending]) {
          try {
            await this.journal.update(id, (e) => ({ ...e, fd: fdIdentity(obj, this.fds) }), 'restore');
            if (this.pending.get(id) === obj) this.pending.delete(id);
            this.log.info({ id }, 'state journal: deferred rewrite of the entry made');
          } catch (e) {
            this.failed(e, `rewriting the entry of '${id}'`);
            if (isStorageFault(e)) return;
            // Not the file system (the entry is gone): nothing left to rewrite.
            this.pending.delete(id);
            this.log.warn({ id, err: e }, 'state journal: deferred rewrite abandoned');
          }
        }
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  // ---- ObjectPersistence ------------------------------------------------------------------
  /** Before an object is allocated: an id its entry file can be named after, and while
   *  degraded, only if a probe write succeeds now. */
  async admit(id: string): Promise<void> {
    const tooLong = idTooLong(id);
    if (tooLong) throw new Error(journalFailureText(tooLong));
    if (!this.fault) return;
    if (await this.probe()) return;
    throw new Error(`${this.fault!.text}; ${DEGRADED_SUFFIX}`);
  }

  async added(obj: UserCreatable, options: Record<string, JsonValue>, staged?: () => void): Promise<void> {
    const e: JournalEntry = { id: obj.name, seq: this.journal.allocSeq(), args: { ...options }, fd: fdIdentity(obj, this.fds) };
    try {
      await this.journal.put(e, 'object-add', staged);
    } catch (err) {
      const why = this.failed(err, `writing the entry of '${obj.name}'`);
      throw isStorageFault(err) ? new Error(`${why.message}; ${DEGRADED_SUFFIX}`) : why;
    }
    this.wrote();
    this.origins.delete(obj.name);
  }

  async deleting(obj: UserCreatable, staged?: () => void): Promise<void> {
    try {
      await this.journal.remove(obj.name, 'object-del', staged);
    } catch (err) {
      throw this.failed(err, `removing the entry of '${obj.name}'`);
    }
    // A removal succeeds on a full file system: it says nothing about writes.
    this.origins.delete(obj.name);
    this.pending.delete(obj.name);
    delete this.unjournaled[obj.name];
  }

  async changed(obj: UserCreatable, property: string, staged?: () => void): Promise<void> {
    // Objects from --object are not journaled: nothing to update.
    if (obj.name in this.unjournaled) return;
    const value = obj.getProperty(property);
    // While degraded, a change is recorded only once a test write works again, as object-add:
    // a record may still fit in the log's last block, but the entry file could not be written.
    if (this.fault && !(await this.probe())) throw new Error(this.fault.text);
    try {
      await this.journal.update(obj.name, (e) => ({ ...e, args: { ...e.args, [property]: value } }), 'qom-set', staged);
    } catch (err) {
      throw this.failed(err, `updating the entry of '${obj.name}'`);
    }
    this.wrote();
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
        obj = await objects.add(checked.value, { persist: false, restore: (o) => this.memoryStillThere(o, e, mismatch) });
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
      // One line per object only at debug: restore.ts logs the count.
      this.log.debug({ id: e.id, origin: fate.origin }, 'restore: object restored');
      // A reopened file's fd is new: the journal must name the one now held. A state file
      // system that takes no writes does not stop the start: the rewrite waits for it.
      if (!ro && (fresh.fd?.ino !== e.fd?.ino || fresh.fd?.dev !== e.fd?.dev)) {
        try {
          await this.journal.put(fresh, 'restore');
        } catch (err) {
          this.failed(err, `rewriting the entry of '${e.id}'`);
          this.pending.set(e.id, obj);
          this.log.warn({ id: e.id, reason: journalFailureText(err) }, 'restore: the journal entry could not be rewritten; it will be when the journal is writable');
        }
      }
    }
    // The caps guard object-add; they never throw away memory that exists (lowered across a
    // restart: every restored object stays, new object-adds are refused until under them).
    const over = objects.overCaps();
    if (over !== undefined) this.log.warn({ restored }, `restore: over the caps (${over}); restored objects kept, object-add refused until under them`);
    for (const name of fds.unclaimed()) {
      fds.discardPreserved(name);
      this.problem({ problem: `preserved fd '${name}' belongs to no journaled object; closed and removed from the fd store` }, 'warn');
    }
    // A restore from preserved fds writes nothing: one test write tells now, not at the first
    // object-add, whether the journal can record changes (query-cpr, /metrics).
    if (!ro && !this.fault) await this.probe();
    return restored;
  }

  /** The restore check, before anything is allocated: throws MemoryGone unless the object's
   *  memory is still there (a preserved fd of its name, or a file holding its contents). */
  private memoryStillThere(obj: UserCreatable, e: JournalEntry, mismatch: string | undefined): void {
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
