// QOM objects and types: the type registry (parents, abstract types, class property tables
// feeding qom-list-types and qom-list-properties) and the object base class with its
// properties. The tree and path resolution live in tree.ts.
import { JsonValue } from '../json/value';
import { QmpError, genericError } from '../errors/qmp-error';

export type SetPhase = 'init' | 'live';

/** A class property: its QOM type string (as qom-list shows it), description and default,
 *  and accessors. A setter throws QmpError with QEMU's text; it may be asynchronous when a
 *  live change does real work (e.g. prealloc=on). */
export interface PropertyDef<T extends QomObject = QomObject> {
  name: string;
  type: string;
  description?: string;
  defaultValue?: JsonValue;
  /** Describes how the object was made, and QEMU still takes a value after creation, to no
   *  effect: such a qom-set is not journaled, so a restart re-creates the object as it was made
   *  (a value the memory was not made with could fail, or miss its preserved fd). Properties
   *  whose later change would matter are refused after creation instead. */
  inertAfterCreation?: boolean;
  get?(obj: T): JsonValue;
  set?(obj: T, value: JsonValue, phase: SetPhase): void | Promise<void>;
}

export interface TypeInfo {
  name: string;
  parent?: string;
  abstract?: boolean;
  /** Can object-add / --object create it? */
  userCreatable?: boolean;
  properties?: PropertyDef[];
  /** Creates an instance (not yet completed) for a concrete type. */
  create?(id: string): QomObject;
}

export interface RegisteredType {
  info: TypeInfo;
  parent?: RegisteredType;
  /** Own and inherited class properties, parents' first, by name. */
  properties: Map<string, PropertyDef>;
}

export class TypeRegistry {
  private readonly types = new Map<string, RegisteredType>();

  register(info: TypeInfo): RegisteredType {
    const parent = info.parent !== undefined ? this.types.get(info.parent) : undefined;
    if (info.parent !== undefined && !parent) throw new Error(`QOM type ${info.name}: unknown parent ${info.parent}`);
    const properties = new Map(parent?.properties ?? []);
    for (const p of info.properties ?? []) properties.set(p.name, p);
    const t = { info, parent, properties };
    this.types.set(info.name, t);
    return t;
  }

  get(name: string): RegisteredType | undefined {
    return this.types.get(name);
  }

  isA(t: RegisteredType, ancestor: string): boolean {
    for (let c: RegisteredType | undefined = t; c; c = c.parent) if (c.info.name === ancestor) return true;
    return false;
  }

  /** qom-list-types: types derived from `implements` (itself included), abstract ones only
   *  when asked; `abstract` is present only when true (qemu-facts §4.2). */
  list(implementsName?: string, includeAbstract = false): JsonValue[] {
    const out: JsonValue[] = [];
    for (const t of this.types.values()) {
      if (t.info.abstract && !includeAbstract) continue;
      if (implementsName !== undefined && !this.isA(t, implementsName)) continue;
      const e: Record<string, JsonValue> = { name: t.info.name };
      if (t.info.abstract) e.abstract = true;
      if (t.parent) e.parent = t.parent.info.name;
      out.push(e);
    }
    return out;
  }

  /** qom-list-properties. */
  listProperties(typename: string): JsonValue[] {
    const t = this.types.get(typename);
    if (!t) throw new QmpError('DeviceNotFound', `Class '${typename}' not found`);
    return [...t.properties.values()].map((p) => {
      const e: Record<string, JsonValue> = { name: p.name, type: p.type };
      if (p.description !== undefined) e.description = p.description;
      if (p.defaultValue !== undefined) e['default-value'] = p.defaultValue;
      return e;
    });
  }
}

/** Shared by every object without children. */
const NO_CHILDREN: ReadonlyMap<string, QomObject> = new Map();

/** The children of an object that has exactly one (every memory backend: its memory region):
 *  ~40 bytes where a Map costs ~200 (issue 7: 10,000 backends). */
class OneChild implements ReadonlyMap<string, QomObject> {
  constructor(readonly child: QomObject) {}
  get size(): number {
    return 1;
  }
  get(name: string): QomObject | undefined {
    return name === this.child.name ? this.child : undefined;
  }
  has(name: string): boolean {
    return name === this.child.name;
  }
  forEach(fn: (value: QomObject, key: string, map: ReadonlyMap<string, QomObject>) => void): void {
    fn(this.child, this.child.name, this);
  }
  *entries(): MapIterator<[string, QomObject]> {
    yield [this.child.name, this.child];
  }
  *keys(): MapIterator<string> {
    yield this.child.name;
  }
  *values(): MapIterator<QomObject> {
    yield this.child;
  }
  [Symbol.iterator](): MapIterator<[string, QomObject]> {
    return this.entries();
  }
}

/** Base of every object in the tree. Containers hold children; other objects may too. */
export class QomObject {
  parent?: QomObject;
  /** Made on the first child, a Map from the second on: an empty Map costs ~200 bytes per
   *  object (issue 7: 10,000 backends, each with one child). */
  #children?: OneChild | Map<string, QomObject>;

  constructor(
    readonly type: RegisteredType,
    readonly name: string,
  ) {}

  get children(): ReadonlyMap<string, QomObject> {
    return this.#children ?? NO_CHILDREN;
  }

  /** Tree bookkeeping (tree.ts): use ObjectTree.attach/detach, which keep its index too. */
  addChild(child: QomObject): void {
    const c = this.#children;
    if (c === undefined || (c instanceof OneChild && c.child.name === child.name)) this.#children = new OneChild(child);
    else if (c instanceof OneChild) this.#children = new Map([[c.child.name, c.child], [child.name, child]]);
    else c.set(child.name, child);
  }

  removeChild(name: string): void {
    const c = this.#children;
    if (c instanceof OneChild) {
      if (c.child.name === name) this.#children = undefined;
    } else c?.delete(name);
  }

  get typeName(): string {
    return this.type.info.name;
  }

  canonicalPath(): string {
    if (!this.parent) return '/';
    const p = this.parent.canonicalPath();
    return p === '/' ? `/${this.name}` : `${p}/${this.name}`;
  }

  /** qom-list: `type`, class properties, then one `child<T>` per child. */
  listProperties(): JsonValue[] {
    const out: JsonValue[] = [];
    for (const p of this.type.properties.values()) out.push({ name: p.name, type: p.type });
    for (const [name, c] of this.children) out.push({ name, type: `child<${c.typeName}>` });
    return out;
  }

  getProperty(name: string): JsonValue {
    const child = this.children.get(name);
    if (child) return child.canonicalPath();
    const p = this.type.properties.get(name);
    if (!p) throw genericError(`Property '${this.typeName}.${name}' not found`);
    if (!p.get) throw genericError(`Property '${this.typeName}.${name}' is not readable`);
    return p.get(this);
  }

  setProperty(name: string, value: JsonValue, phase: SetPhase): void | Promise<void> {
    if (this.children.has(name)) throw genericError(`Property '${this.typeName}.${name}' is not writable`);
    const p = this.type.properties.get(name);
    if (!p) throw genericError(`Property '${this.typeName}.${name}' not found`);
    if (!p.set) throw genericError(`Property '${this.typeName}.${name}' is not writable`);
    return p.set(this, value, phase);
  }
}

/** The `type` property every object has (read-only string). */
export const TYPE_PROPERTY: PropertyDef = { name: 'type', type: 'string', get: (o) => o.typeName };

export function registerBaseTypes(reg: TypeRegistry): void {
  reg.register({ name: 'object', properties: [TYPE_PROPERTY] });
  reg.register({ name: 'container', parent: 'object' });
}
