// The object tree: root `/` with the `/objects` container (the only other root child:
// hostmemd has no machine, chardevs or devices; a backend has its memory-region child).
// Absolute and partial path resolution with QEMU's errors (qemu-facts §4.1), indexed so
// lookups do not scan the tree.
import { QomObject, TypeRegistry, registerBaseTypes } from './object';
import { QmpError, genericError } from '../errors/qmp-error';

export type Resolution = { kind: 'found'; obj: QomObject } | { kind: 'none' } | { kind: 'ambiguous' };

export class ObjectTree {
  readonly root: QomObject;
  readonly objects: QomObject;
  /** Every object in the tree by its last path component (for partial paths): the object
   *  itself while its name is unique (nearly always: no Set per object), a Set once shared. */
  private readonly byName = new Map<string, QomObject | Set<QomObject>>();

  constructor(readonly types: TypeRegistry) {
    if (!types.get('container')) registerBaseTypes(types);
    const container = types.get('container')!;
    this.root = new QomObject(container, '');
    this.objects = new QomObject(container, 'objects');
    this.attach(this.root, this.objects);
  }

  /** Adds `child` under `parent`; the caller has checked the name is free. Children the
   *  object already has (a backend's memory region) are indexed with it. */
  attach(parent: QomObject, child: QomObject): void {
    child.parent = parent;
    parent.addChild(child);
    this.index(child);
  }

  detach(child: QomObject): void {
    if (!child.parent) return;
    child.parent.removeChild(child.name);
    child.parent = undefined;
    this.unindex(child);
  }

  private index(obj: QomObject): void {
    const had = this.byName.get(obj.name);
    if (had === undefined) this.byName.set(obj.name, obj);
    else if (had instanceof Set) had.add(obj);
    else if (had !== obj) this.byName.set(obj.name, new Set([had, obj]));
    for (const c of obj.children.values()) this.index(c);
  }

  private unindex(obj: QomObject): void {
    const had = this.byName.get(obj.name);
    if (had === obj) this.byName.delete(obj.name);
    else if (had instanceof Set) {
      had.delete(obj);
      if (had.size === 1) this.byName.set(obj.name, had.values().next().value!);
    }
    for (const c of obj.children.values()) this.unindex(c);
  }

  resolve(path: string): Resolution {
    if (path.startsWith('/')) {
      let o: QomObject | undefined = this.root;
      for (const part of path.split('/')) {
        if (part === '') continue;
        o = o.children.get(part);
        if (!o) return { kind: 'none' };
      }
      return { kind: 'found', obj: o };
    }
    // Partial path: a unique object whose path ends with these components.
    const parts = path.split('/').filter((p) => p !== '');
    // No component at all (''): every object matches, and the tree always holds at least the
    // root and /objects, so the path is ambiguous (QEMU: qom-list '' says so; qom-get and
    // qom-set report ambiguity as not found).
    if (parts.length === 0) return { kind: 'ambiguous' };
    const named = this.byName.get(parts[parts.length - 1]);
    const candidates = named === undefined ? [] : named instanceof Set ? named : [named];
    let found: QomObject | undefined;
    for (const c of candidates) {
      let o: QomObject | undefined = c;
      let ok = true;
      for (let i = parts.length - 1; i >= 0; i--, o = o?.parent) {
        if (!o || o.name !== parts[i]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (found) return { kind: 'ambiguous' };
      found = c;
    }
    return found ? { kind: 'found', obj: found } : { kind: 'none' };
  }

  /** qom-list's lookup: DeviceNotFound when absent, GenericError when ambiguous. */
  lookupForList(path: string): QomObject {
    const r = this.resolve(path);
    if (r.kind === 'found') return r.obj;
    if (r.kind === 'ambiguous') throw genericError(`Path '${path}' is ambiguous`);
    throw new QmpError('DeviceNotFound', `Device '${path}' not found`);
  }

  /** qom-get/qom-set's lookup: DeviceNotFound for absent and ambiguous alike. */
  lookup(path: string): QomObject {
    const r = this.resolve(path);
    if (r.kind === 'found') return r.obj;
    throw new QmpError('DeviceNotFound', `Device '${path}' not found`);
  }
}
