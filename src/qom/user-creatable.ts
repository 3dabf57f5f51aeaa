// object-add and object-del as transactions in QEMU's order (qemu-facts §4.3, §4.4):
// id syntax → type checks → property setters (QDict order) → duplicate check → complete();
// any failure releases what was made and leaves the tree as it was. Ids being completed are
// reserved, so two concurrent object-adds of one id cannot both win.
import { crashPoint } from '../crash-point';
import { JsonValue } from '../json/value';
import { qdictKeyOrder } from '../json/writer';
import { genericError } from '../errors/qmp-error';
import { QomObject } from './object';
import { ObjectTree } from './tree';
import { errorText } from '../errors/text';

/** Why an object lets go of what it holds:
 *  - 'deleted': gone for good (object-del): its memory may be discarded;
 *  - 'failed': an object-add that failed: gone for good, but it never existed, so a file's
 *    contents are not discarded (QEMU discards only when an added object is unparented);
 *  - 'exit': this process ends and the object stays journaled (shutdown, quit): its memory
 *    stays wherever it is preserved (fd store), discard-data applies as at QEMU's exit;
 *  - 'kept': another holder carries on with the memory (a handover's successor, or the
 *    daemon a failed successor leaves serving): nothing of the memory is touched. */
export type ReleaseMode = 'deleted' | 'failed' | 'exit' | 'kept';

/** What a restart can keep of an object, asked by the state journal (which knows no types). */
export interface Keeping {
  /** The contents outlive this process (shared memory behind an fd). */
  preservable: boolean;
  /** Name of the object's fd in the fd registry, when it holds one. */
  fdName?: string;
  /** Where this incarnation's contents came from: a preserved fd, a path reopened (the
   *  contents live in the file), or newly allocated. */
  source: 'preserved-fd' | 'path' | 'new';
}

/** Where an object's memory would come from if it were completed now, asked at restore before
 *  anything is allocated: a restore re-creates only objects whose memory is still there. */
export type RestoreSource =
  | { from: 'preserved-fd' }
  | { from: 'path' }
  /** share=off memory: gone with the process. */
  | { from: 'private' }
  /** Nothing holds it any more (`detail`: why, when more can be said). */
  | { from: 'new'; detail?: string };

/** An object object-add can create: it completes (allocates) and releases (frees). */
export abstract class UserCreatable extends QomObject {
  /** Makes the object usable (allocation); on failure it must have released what it took. */
  abstract complete(): Promise<void>;
  /** Lets go of everything the object holds (see ReleaseMode). Idempotent. */
  abstract release(mode: ReleaseMode): void;
  /** What a restart keeps of it; undefined: the object holds no memory (its properties, in
   *  the journal, are all there is to keep). */
  keeping(): Keeping | undefined {
    return undefined;
  }
  /** Before complete(): where its memory would come from (see RestoreSource); undefined: the
   *  object holds no memory. */
  restoreSource(): RestoreSource | undefined {
    return undefined;
  }
  /** object-del refuses while this is false (memory mapped into a user, etc.). */
  canBeDeleted(): boolean {
    return true;
  }
  /** Bytes this object counts against --max-backend-bytes (memory backends: their size). */
  chargedBytes(): bigint {
    return 0n;
  }
  /** Called before a live qom-set of `property`: returns how to put it back as it is now, for
   *  a change the state journal could not record (undefined: it cannot be put back). By
   *  default the current value is set again; a property whose setter merges values in rather
   *  than replacing them (host-nodes) overrides this. */
  undoFor(property: string): (() => void | Promise<void>) | undefined {
    let before: JsonValue;
    try {
      before = this.getProperty(property);
    } catch {
      return undefined;
    }
    return () => this.setProperty(property, before, 'live');
  }
}

/** Operator caps on what object-add may create (undefined: no cap). */
export interface ObjectLimits {
  maxObjects?: number;
  maxBytes?: bigint;
}

/** QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
const ID_RE = /^[A-Za-z][A-Za-z0-9._-]*$/;

export interface ObjectEvents {
  added(obj: UserCreatable): void;
  deleted(obj: UserCreatable): void;
}

/** Durable record of the object set (the CPR journal). Each step resolves once it is durable;
 *  object-add and object-del reply only after it, and a failure undoes the command. `staged`
 *  (optional) is called once the record is queued and only its durable write is left: the
 *  connection may start its next request then (see CommandContext.staged). */
export interface ObjectPersistence {
  /** Before a new object is allocated: throws why it could not be recorded now (a journal on a
   *  full or read-only file system), so that nothing is allocated only to be undone. */
  admit?(id: string): Promise<void>;
  /** The object is made: record it (with its creation arguments) before it is announced. */
  added(obj: UserCreatable, options: Record<string, JsonValue>, staged?: () => void): Promise<void>;
  /** About to be deleted: forget it first, so a failure leaves the object usable. */
  deleting(obj: UserCreatable, staged?: () => void): Promise<void>;
  /** A property was changed by qom-set: record its new value. */
  changed(obj: UserCreatable, property: string, staged?: () => void): Promise<void>;
}


export class ObjectManager {
  private readonly pending = new Set<string>();
  private readonly deleting = new Set<string>();
  /** The qom-set in progress on each journaled object (see setProperty). */
  private readonly setting = new Map<QomObject, Promise<void>>();
  private count = 0;
  private bytes = 0n;

  constructor(
    private readonly tree: ObjectTree,
    private readonly events: ObjectEvents,
    readonly limits: ObjectLimits = {},
    /** The state journal, when one is kept. */
    private readonly persistence?: ObjectPersistence,
  ) {}

  /** Objects and charged bytes, pending creations included (what the caps compare against). */
  get usage(): { objects: number; bytes: bigint } {
    return { objects: this.count, bytes: this.bytes };
  }

  /** Whether more objects or bytes are in use than the caps allow (after a restart with lower
   *  caps: restored objects are admitted, new object-adds refused until under the caps). */
  overCaps(): string | undefined {
    const { maxObjects, maxBytes } = this.limits;
    if (maxObjects !== undefined && this.count > maxObjects) return `${this.count} objects exist and --max-objects is ${maxObjects}`;
    if (maxBytes !== undefined && this.bytes > maxBytes) return `${this.bytes} bytes are in use and --max-backend-bytes is ${maxBytes}`;
    return undefined;
  }

  /** Reserves room for one more object under the caps, or refuses with a clear error. The
   *  caps guard object-add; objects a restore brings back (`admit`) are never thrown away for
   *  them: their memory already exists. */
  private reserve(obj: UserCreatable, admit = false): void {
    const { maxObjects, maxBytes } = this.limits;
    if (admit) {
      this.count++;
      this.bytes += obj.chargedBytes();
      return;
    }
    if (maxObjects !== undefined && this.count >= maxObjects) {
      throw genericError(`object limit reached: ${this.count} objects exist and --max-objects is ${maxObjects}`);
    }
    const need = obj.chargedBytes();
    if (maxBytes !== undefined && this.bytes + need > maxBytes) {
      // Over the cap already (restored past a lowered one): nothing is left, not a negative.
      const left = maxBytes > this.bytes ? maxBytes - this.bytes : 0n;
      throw genericError(`backend memory limit reached: ${need} bytes requested, ${left} of ${maxBytes} bytes (--max-backend-bytes) left`);
    }
    this.count++;
    this.bytes += need;
  }

  private unreserve(obj: UserCreatable): void {
    this.count--;
    this.bytes -= obj.chargedBytes();
  }

  /** The user-created objects, in creation order. */
  *list(): IterableIterator<UserCreatable> {
    for (const c of this.tree.objects.children.values()) if (c instanceof UserCreatable) yield c;
  }

  get(id: string): UserCreatable | undefined {
    const o = this.tree.objects.children.get(id);
    return o instanceof UserCreatable ? o : undefined;
  }

  /** `options` are validated ObjectOptions: qom-type, id and the type's properties.
   *  `how.restore` (a journal restore): asked before anything is allocated whether the object
   *  may come back (a thrown error refuses it); the caps do not apply to it. */
  async add(options: Record<string, JsonValue>, how: { persist?: boolean; restore?: (obj: UserCreatable) => void; staged?: () => void } = {}): Promise<UserCreatable> {
    const { 'qom-type': qomType, id, ...props } = options as Record<string, JsonValue> & { 'qom-type': string; id: string };
    if (!ID_RE.test(id)) throw genericError("Parameter 'id' expects an identifier");
    const t = this.tree.types.get(qomType);
    if (!t) throw genericError(`invalid object type: ${qomType}`);
    if (t.info.abstract) throw genericError(`object type '${qomType}' is abstract`);
    if (!t.info.userCreatable || !t.info.create) throw genericError(`object type '${qomType}' isn't supported by object-add`);
    const obj = t.info.create(id);
    if (!(obj instanceof UserCreatable)) throw genericError(`object type '${qomType}' isn't supported by object-add`);
    try {
      // Setters run in the order QEMU's QDict iterates the visited options.
      for (const key of qdictKeyOrder(Object.keys(props))) await obj.setProperty(key, props[key], 'init');
      if (this.tree.objects.children.has(id) || this.pending.has(id)) {
        throw genericError(`attempt to add duplicate property '${id}' to object (type 'container')`);
      }
      how.restore?.(obj);
      this.reserve(obj, how.restore !== undefined);
      this.pending.add(id);
      try {
        if (this.persistence?.admit && how.persist !== false) {
          try {
            await this.persistence.admit(id);
          } catch (e) {
            throw genericError(`cannot record object '${id}' in the state journal: ${errorText(e)}`);
          }
        }
        if (how.persist !== false) crashPoint('object-add:admitted');
        await obj.complete();
        if (how.persist !== false) crashPoint('object-add:allocated');
        if (this.persistence && how.persist !== false) {
          try {
            await this.persistence.added(obj, options, how.staged);
          } catch (e) {
            throw genericError(`cannot record object '${id}' in the state journal: ${errorText(e)}`);
          }
        }
      } catch (e) {
        this.unreserve(obj);
        throw e;
      } finally {
        this.pending.delete(id);
      }
    } catch (e) {
      obj.release('failed');
      throw e;
    }
    this.tree.attach(this.tree.objects, obj);
    this.events.added(obj);
    if (how.persist !== false) crashPoint('object-add:attached');
    return obj;
  }

  /** Synchronous when no journal is kept (the object is gone when this returns). */
  async del(id: string, staged?: () => void): Promise<void> {
    const obj = this.get(id);
    if (!obj || this.deleting.has(id)) throw genericError(`object '${id}' not found`);
    if (!obj.canBeDeleted()) throw genericError(`object '${id}' is in use, can not be deleted`);
    if (this.persistence) {
      this.deleting.add(id);
      try {
        await this.persistence.deleting(obj, staged);
      } catch (e) {
        throw genericError(`cannot remove object '${id}' from the state journal: ${errorText(e)}`);
      } finally {
        this.deleting.delete(id);
      }
    }
    crashPoint('object-del:unjournaled');
    this.tree.detach(obj);
    obj.release('deleted');
    this.unreserve(obj);
    this.events.deleted(obj);
    crashPoint('object-del:released');
  }

  /** After a successful qom-set on `obj`: records the change if `obj` is one of ours and the
   *  change is one a restart should repeat (not an inertAfterCreation property: the record
   *  keeps the value the object was made with). */
  async changed(obj: QomObject, property: string, staged?: () => void): Promise<void> {
    if (!this.persistence || !(obj instanceof UserCreatable) || this.get(obj.name) !== obj) return;
    if (obj.type.properties.get(property)?.inertAfterCreation) return;
    await this.persistence.changed(obj, property, staged);
  }

  /** qom-set: sets the property (live) and records it; a change the journal cannot record is
   *  undone, so that the reply, the live value and the journal agree. The sets of one
   *  journaled object run one at a time, so an undo never overwrites a later set. */
  async setProperty(obj: QomObject, property: string, value: JsonValue, staged?: () => void): Promise<void> {
    if (!(this.persistence && obj instanceof UserCreatable && this.get(obj.name) === obj)) {
      await obj.setProperty(property, value, 'live');
      return;
    }
    const prev = this.setting.get(obj) ?? Promise.resolve();
    const run = async (): Promise<void> => {
      const undo = obj.undoFor(property);
      await obj.setProperty(property, value, 'live');
      crashPoint('qom-set:set-live');
      try {
        await this.changed(obj, property, staged);
      } catch (e) {
        let undone = 'the change was undone';
        try {
          if (!undo) throw new Error('the property cannot be read back');
          await undo();
        } catch (u) {
          undone = `undoing the change failed: ${errorText(u)}`;
        }
        throw genericError(`cannot record property '${property}' of object '${obj.name}' in the state journal: ${errorText(e)}; ${undone}`);
      }
    };
    const next = prev.then(run, run);
    this.setting.set(obj, next);
    const clear = (): void => {
      if (this.setting.get(obj) === next) this.setting.delete(obj);
    };
    next.then(clear, clear);
    return next;
  }

  /** Releases every object as this process stops (`mode`: see ReleaseMode); the journal
   *  still lists them. */
  releaseAll(mode: Exclude<ReleaseMode, 'deleted' | 'failed'>): void {
    for (const o of [...this.list()]) {
      this.tree.detach(o);
      o.release(mode);
      this.unreserve(o);
    }
  }
}
