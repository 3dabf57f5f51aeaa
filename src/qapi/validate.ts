// Command arguments checked as QEMU's QMP input visitor does (qemu-facts §3.5, §2.5): ajv,
// compiled once per command from json-schema.ts, decides; on refusal its errors are ranked in
// QEMU's visit order by walking the model along each instancePath, and the first is worded as
// QEMU words it. Command lookup and -compat policies are the dispatcher's.
import type Ajv from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { JsonObject, JsonValue, MEMBER_ORDER, isJsonNumber, isJsonObject, memberKeys } from '../json/value';
import { INT_SPECS, JsonSchema, addQapiKeywords, buildArgSchemas, intCheck, isIntType, jsonKind, typeKind, wrapSink } from './json-schema';
import { IfCond, Member, SchemaModel, condHolds } from './model';
import { Precompiled, ajvOptions, schemaHash } from './standalone';

export type ValidationResult = { ok: true; value: JsonObject } | { ok: false; desc: string };

interface CompiledCommand {
  schema: JsonSchema;
  /** Its arguments can hold lists (so large ones are checked fail-fast first). */
  hasLists?: boolean;
  /** Compiled on first use or by compileAll(), then kept: never compiled per call. */
  fn?: ValidateFunction;
  argType?: string;
}

/** Where an ajv error points, resolved against the model. */
interface Location {
  /** Visit-order position of each step: member index in its object's visit order, or list index. */
  keys: number[];
  /** Type at that point (undefined: the arguments of a command that takes none). */
  type: string | undefined;
  value: JsonValue;
  /** QEMU's full name (`a.b`, `a[3].c`; '' at the root) and local name (null in lists). */
  full: string;
  local: string | null;
}

interface Ranked {
  key: number[];
  desc: string;
}

const TWO_64 = 1n << 64n;

/** Arguments holding more list elements than this (all lists together) are first checked by a
 *  fail-fast validator: with allErrors, one wrongly typed element is one ajv error, so an
 *  object-add with 1 M bad host-nodes made 1 M errors, ranked one by one (10 s, 700 MB; ranking
 *  costs ~0.1 ms per error). */
export const LIST_ELEMENTS_FULL_CHECK = 64;
/** Lists cut short per validation before falling back to checking everything. */
const MAX_PRUNE_ROUNDS = 64;

/** Parts of ajv loaded one per warm-up step, in dependency order (~5-15 ms each). */
const WARM_UP_AJV_MODULES = ['ajv/dist/compile/codegen', 'ajv/dist/compile/validate', 'ajv/dist/core', 'ajv/dist/vocabularies/applicator', 'ajv/dist/vocabularies/validation', 'ajv/dist/vocabularies/draft7'];

export class ArgValidator {
  private readonly commands = new Map<string, CompiledCommand>();
  /** instancePaths of negative uint64/size values accepted by the current validation. */
  private readonly wrapped: string[] = [];

  constructor(
    private readonly model: SchemaModel,
    private readonly defined: ReadonlySet<string>,
    /** Check each generated JSON Schema against ajv's meta-schema before compiling it (compiling
     *  the meta-schema takes ~25 ms). The daemon turns it off: its schemas come from this build
     *  and the unit tests compile every one of them with the check on. */
    private readonly checkSchemas = true,
    /** LIST_ELEMENTS_FULL_CHECK; tests lower it to check the fail-fast path against QEMU's order. */
    private readonly fullCheckListElements = LIST_ELEMENTS_FULL_CHECK,
    /** Validators the build compiled (standalone.ts): each is taken for the command whose
     *  schema hashes as the one it was compiled from; the others compile as usual. */
    precompiled?: Precompiled,
  ) {
    for (const [name, schema] of buildArgSchemas(model, defined)) {
      const cmd = model.entities.get(name);
      const argType = cmd?.meta === 'command' ? cmd.argType : undefined;
      const c: CompiledCommand = argType === undefined ? { schema } : { schema, argType };
      const json = JSON.stringify(schema);
      if (json.includes('"array"')) c.hasLists = true;
      if (precompiled !== undefined && Object.hasOwn(precompiled.hashes, name) && precompiled.hashes[name] === schemaHash(json)) {
        c.fn = precompiled.full[name];
        const quick = Object.hasOwn(precompiled.quick, name) ? precompiled.quick[name] : undefined;
        if (c.hasLists && quick !== undefined) this.quickFns.set(c, quick);
        this.precompiledCount++;
      }
      this.commands.set(name, c);
    }
  }

  /** How many commands got a validator compiled by the build (the rest compile here). */
  readonly precompiledCount: number = 0;

  /** Made on first use: loading ajv takes ~30 ms, which the daemon's start to greeting need
   *  not wait for (see warmUpStep). */
  private ajvInstance?: Ajv;

  private get ajv(): Ajv {
    if (this.ajvInstance === undefined) {
      // A synchronous, deferred load: validate() must stay synchronous.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const AjvClass = (require('ajv') as typeof import('ajv')).default;
      const ajv = new AjvClass(ajvOptions(true, this.checkSchemas));
      addQapiKeywords(ajv, true);
      this.ajvInstance = ajv;
    }
    return this.ajvInstance;
  }

  private compiled(c: CompiledCommand): ValidateFunction {
    return (c.fn ??= this.ajv.compile(c.schema));
  }

  /** The same schemas compiled to stop at their first error (ajv's order, not QEMU's); made
   *  only when large arguments arrive. */
  private quickAjv?: Ajv;
  private readonly quickFns = new Map<CompiledCommand, ValidateFunction>();

  private quickCompiled(c: CompiledCommand): ValidateFunction {
    let fn = this.quickFns.get(c);
    if (fn === undefined) {
      if (this.quickAjv === undefined) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const AjvClass = (require('ajv') as typeof import('ajv')).default;
        this.quickAjv = new AjvClass(ajvOptions(false));
        addQapiKeywords(this.quickAjv);
      }
      fn = this.quickAjv.compile(c.schema);
      this.quickFns.set(c, fn);
    }
    return fn;
  }

  /** Compiles every command's validator now. */
  compileAll(): void {
    for (const c of this.commands.values()) this.compiled(c);
  }

  /** Set while firstError ranks errors: members per object and type. */
  private memberCache?: Map<JsonObject, Map<string, Member[]>>;

  private warmUp?: Iterator<void>;

  /** One small step of getting every validator ready: loading one part of ajv, or compiling
   *  one command's validator (a few ms each). Returns false once everything is ready. The
   *  daemon runs one step per event-loop turn after it starts listening, so clients are
   *  accepted and greeted in between instead of waiting ~100 ms for all of it; a command that
   *  arrives first compiles its own validator on demand. */
  warmUpStep(): boolean {
    this.warmUp ??= this.warmUpSteps();
    return this.warmUp.next().done !== true;
  }

  private *warmUpSteps(): Generator<void> {
    const left = [...this.commands.values()].some((c) => c.fn === undefined || (c.hasLists === true && !this.quickFns.has(c)));
    if (!left) return;
    if (this.ajvInstance === undefined) {
      // ajv's largest modules, one per step (each is cached by require for the next).
      for (const part of WARM_UP_AJV_MODULES) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        require(part);
        yield;
      }
      void this.ajv;
      yield;
    }
    for (const c of this.commands.values()) {
      if (c.fn !== undefined) continue;
      this.compiled(c);
      yield;
    }
    // The fail-fast twins, so that the first large list does not wait for one (object-add's
    // takes ~200 ms to compile).
    for (const c of this.commands.values()) {
      if (!c.hasLists || this.quickFns.has(c)) continue;
      this.quickCompiled(c);
      yield;
    }
  }

  /** Checks `args` of `command` (a command of this build's schema, else it throws). On success
   *  `value` is `args` itself, or a copy where negative uint64/size values are taken modulo 2^64. */
  validate(command: string, args: JsonObject): ValidationResult {
    const c = this.commands.get(command);
    if (c === undefined) throw new Error(`ArgValidator: '${command}' is not a command of this build's schema`);
    const fn = this.compiled(c);
    const checked = c.hasLists === true && countListElements(args, this.fullCheckListElements) > this.fullCheckListElements ? this.pruned(c, args) : args;
    this.wrapped.length = 0;
    if (this.check(fn, checked)) {
      if (this.wrapped.length === 0) return { ok: true, value: args };
      return { ok: true, value: unwrapNegatives(args, this.wrapped) };
    }
    const errors = fn.errors ?? [];
    fn.errors = null; // ajv keeps the last errors on the function: do not pin them
    return { ok: false, desc: this.firstError(c.argType, checked, errors) };
  }

  private readonly onWrap = (instancePath: string): void => void this.wrapped.push(instancePath);

  /** `fn(args)` with the negative uint64/size values it accepts recorded in `wrapped`. */
  private check(fn: ValidateFunction, args: JsonObject): boolean {
    const outer = wrapSink.current;
    wrapSink.current = this.onWrap;
    try {
      return fn(args);
    } finally {
      wrapSink.current = outer;
    }
  }

  /** `args` with every list cut just after the element where the fail-fast validator stops
   *  (the args themselves when they are valid). ajv checks list elements in order, so the ones
   *  before it are valid, and any error after it comes later in QEMU's visit than the one at
   *  it: the first error is the same, found among few. An error outside every list ends it. */
  private pruned(c: CompiledCommand, args: JsonObject): JsonObject {
    const quick = this.quickCompiled(c);
    let cur = args;
    for (let round = 0; round < MAX_PRUNE_ROUNDS; round++) {
      const ok = quick(cur);
      const first = quick.errors?.[0];
      quick.errors = null;
      if (ok || first === undefined) return cur;
      const next = truncateAt(cur, decodePointer(first.instancePath));
      if (next === undefined) return cur;
      cur = next;
    }
    return cur;
  }

  private holds(c: IfCond | undefined): boolean {
    return condHolds(c, this.defined);
  }

  /**
   * QEMU stops at the first problem of a depth-first visit: an object's members in schema order
   * (base, then the selected branch), each fully before the next, and only then its leftover
   * keys. So every error gets a key: the visit-order position of each step down to it, then
   * -1 for a problem with the value itself (it precedes anything inside it), the member's index
   * for a missing member, and (member count, key position) for an unexpected key. The least key
   * wins. Among unexpected keys QEMU takes the first in GLib hash-table order; we take the
   * first in the object's own key order (a documented divergence).
   */
  private firstError(argType: string | undefined, args: JsonObject, errors: ErrorObject[]): string {
    let best: Ranked | undefined;
    this.memberCache = new Map();
    try {
      for (const e of errors) {
        const r = this.rank(argType, args, e);
        if (r !== undefined && (best === undefined || compareKeys(r.key, best.key) < 0)) best = r;
      }
    } finally {
      this.memberCache = undefined;
    }
    if (best !== undefined) return best.desc;
    // Unreachable while the schemas and this ranking agree; say something true anyway.
    const first = errors[0];
    const where = first === undefined ? '' : decodePointer(first.instancePath).join('.');
    return `Parameter '${where}' is invalid`;
  }

  private rank(argType: string | undefined, args: JsonObject, e: ErrorObject): Ranked | undefined {
    const loc = this.locate(argType, args, decodePointer(e.instancePath));
    if (loc === undefined) return undefined;
    if (e.keyword === 'required' || e.keyword === 'additionalProperties') {
      const type = this.resolveAlternate(loc.type, loc.value);
      if (!isJsonObject(loc.value) || type === null) return undefined;
      const members = this.visitMembers(type, loc.value);
      if (e.keyword === 'required') {
        const name = String((e.params as { missingProperty: string }).missingProperty);
        const i = members.findIndex((m) => m.name === name);
        if (i < 0) return undefined;
        return { key: [...loc.keys, i], desc: `Parameter '${joinName(loc.full, name)}' is missing` };
      }
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      return {
        key: [...loc.keys, members.length, memberKeys(loc.value).indexOf(key)],
        desc: `Parameter '${joinName(loc.full, key)}' is unexpected`,
      };
    }
    // Anything else (type, enum, the qapi* keywords) is about the value at loc; word it from
    // the model and the value, so ajv's keyword choice does not matter. Structural keywords
    // (discriminator, if, const) whose cause is reported separately word to nothing.
    if (loc.type === undefined) return undefined;
    const desc = this.valueError(loc.type, loc.value, loc.full, loc.local);
    return desc === undefined ? undefined : { key: [...loc.keys, -1], desc };
  }

  /** Walks the model along a path into the data (QEMU's visit, without checking). */
  private locate(argType: string | undefined, args: JsonObject, path: string[]): Location | undefined {
    const loc: Location = { keys: [], type: argType, value: args, full: '', local: null };
    for (const seg of path) {
      const type = this.resolveAlternate(loc.type, loc.value);
      if (type === null) return undefined;
      const elem = this.elementType(type);
      if (elem !== undefined) {
        const i = Number(seg);
        if (!Array.isArray(loc.value) || !Number.isInteger(i) || i < 0 || i >= loc.value.length) return undefined;
        loc.keys.push(i);
        loc.value = loc.value[i];
        loc.type = elem;
        loc.full += `[${i}]`;
        loc.local = null;
        continue;
      }
      if (!isJsonObject(loc.value) || !Object.prototype.hasOwnProperty.call(loc.value, seg)) return undefined;
      const members = this.visitMembers(type, loc.value);
      const i = members.findIndex((m) => m.name === seg);
      if (i < 0) return undefined;
      loc.keys.push(i);
      loc.value = loc.value[seg];
      loc.type = members[i].type;
      loc.full = joinName(loc.full, seg);
      loc.local = seg;
    }
    return loc;
  }

  /** The members QEMU visits for this object, in order: the type's own (base first), then
   *  for a union the members of the branch its tag selects (none if the tag is bad). */
  private visitMembers(typeName: string | undefined, obj: JsonObject): Member[] {
    if (typeName === undefined) return [];
    // While ranking, many errors share their parents: work each object's members out once.
    const cache = this.memberCache;
    if (cache !== undefined) {
      let byType = cache.get(obj);
      if (byType === undefined) cache.set(obj, (byType = new Map()));
      let members = byType.get(typeName);
      if (members === undefined) byType.set(typeName, (members = this.membersOf(typeName, obj)));
      return members;
    }
    return this.membersOf(typeName, obj);
  }

  private membersOf(typeName: string, obj: JsonObject): Member[] {
    const t = this.model.entities.get(typeName);
    if (t?.meta !== 'object') return [];
    const out = t.members.filter((m) => this.holds(m.if));
    if (t.tag !== undefined && Object.prototype.hasOwnProperty.call(obj, t.tag)) {
      const tv = obj[t.tag];
      const tagMember = out.find((m) => m.name === t.tag);
      if (typeof tv === 'string' && tagMember !== undefined && this.enumAccepts(tagMember.type, tv)) {
        const variant = (t.variants ?? []).find((v) => v.case === tv && this.holds(v.if));
        if (variant !== undefined) out.push(...this.membersOf(variant.type, obj));
      }
    }
    return out;
  }

  private enumAccepts(typeName: string, v: string): boolean {
    const e = this.model.entities.get(typeName);
    return e?.meta === 'enum' && e.values.some((x) => x.name === v && this.holds(x.if));
  }

  private elementType(typeName: string | undefined): string | undefined {
    if (typeName === undefined) return undefined;
    const e = this.model.entities.get(typeName);
    if (e?.meta === 'array') return e.elementType;
    return e === undefined && typeName.startsWith('[') ? typeName.slice(1, -1) : undefined;
  }

  /** For an alternate, the branch the value's JSON kind selects (null: none); else the type. */
  private resolveAlternate(typeName: string | undefined, v: JsonValue): string | undefined | null {
    if (typeName === undefined) return undefined;
    const e = this.model.entities.get(typeName);
    if (e?.meta !== 'alternate') return typeName;
    const kind = jsonKind(v);
    const b = e.members.find((m) => this.holds(m.if) && typeKind(this.model, m.type) === kind);
    return b === undefined ? null : b.type;
  }

  /** QEMU's complaint about value `v` of type `typeName` itself, or undefined if it has none
   *  (qobject-input-visitor.c type_* functions, qapi-visit-core.c range and enum checks). */
  private valueError(typeName: string, v: JsonValue, full: string, local: string | null): string | undefined {
    const localName = local ?? 'null';
    const typeError = (expected: string): string => `Invalid parameter type for '${full}', expected: ${expected}`;
    if (isIntType(typeName)) {
      const spec = INT_SPECS[typeName];
      if (typeName.startsWith('uint') || typeName === 'size') {
        // uintN visits a uint64 first (full name), then checks the range (local name).
        if (intCheck(INT_SPECS.uint64, v) === 0) return `Parameter '${full}' expects uint64`;
      } else if (intCheck(INT_SPECS.int64, v) === 0) {
        // Also for a uint64 QNum beyond INT64_MAX: qnum_get_try_int() fails and type_int64
        // says "expected: integer" (observed on QEMU 7.2 with 9223372036854775808).
        return typeError('integer');
      }
      return intCheck(spec, v) === 0 ? `Parameter '${localName}' expects ${typeName}_t` : undefined;
    }
    switch (typeName) {
      case 'str':
        return typeof v === 'string' ? undefined : typeError('string');
      case 'bool':
        return typeof v === 'boolean' ? undefined : typeError('boolean');
      case 'null':
        return v === null ? undefined : typeError('null');
      case 'number':
        return isJsonNumber(v) ? undefined : typeError('number');
      case 'any':
        return undefined;
    }
    if (this.elementType(typeName) !== undefined) return Array.isArray(v) ? undefined : typeError('array');
    const e = this.model.entities.get(typeName);
    switch (e?.meta) {
      case 'enum':
        if (typeof v !== 'string') return typeError('string');
        return this.enumAccepts(typeName, v) ? undefined : `Parameter '${localName}' does not accept value '${v}'`;
      case 'object':
        return isJsonObject(v) ? undefined : typeError('object');
      case 'alternate': {
        // The generated visitor switches on the QType; no branch → its own message, which
        // names the alternate type and uses the *local* name (observed on QEMU 7.2).
        const branch = this.resolveAlternate(typeName, v);
        if (branch === null || branch === undefined) return `Invalid parameter type for '${localName}', expected: ${typeName}`;
        return this.valueError(branch, v, full, local);
      }
    }
    return undefined;
  }
}

function joinName(full: string, name: string): string {
  return full === '' ? name : `${full}.${name}`;
}

function compareKeys(a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** RFC 6901 JSON Pointer (ajv's instancePath) to its unescaped segments. */
function decodePointer(p: string): string[] {
  if (p === '') return [];
  return p
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/**
 * A copy of `args` in which the values at `paths` (negative int64 accepted for uint64/size)
 * become `v + 2^64`, as QEMU stores them; only the containers on those paths are copied, and
 * copied objects keep their recorded member order.
 */
function unwrapNegatives(args: JsonObject, paths: readonly string[]): JsonObject {
  const copies = new Map<object, JsonObject | JsonValue[]>();
  const copyOf = (c: JsonObject | JsonValue[]): JsonObject | JsonValue[] => {
    let out = copies.get(c);
    if (out === undefined) {
      if (Array.isArray(c)) {
        out = c.slice();
      } else {
        const o: JsonObject = {};
        for (const k of memberKeys(c)) o[k] = c[k];
        const order = (c as { [MEMBER_ORDER]?: string[] })[MEMBER_ORDER];
        if (order !== undefined) Object.defineProperty(o, MEMBER_ORDER, { value: order, enumerable: false });
        out = o;
      }
      copies.set(c, out);
    }
    return out;
  };
  const root = copyOf(args) as JsonObject;
  for (const p of paths) {
    const segs = decodePointer(p);
    if (segs.length === 0) continue;
    let orig: JsonValue = args;
    let copy: JsonObject | JsonValue[] = root;
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i];
      const child: JsonValue = Array.isArray(orig) ? orig[Number(seg)] : (orig as JsonObject)[seg];
      if (i === segs.length - 1) {
        const n = typeof child === 'bigint' ? child : typeof child === 'number' ? BigInt(child) : undefined;
        if (n !== undefined && n < 0n) setChild(copy, seg, n + TWO_64);
      } else {
        const next = copyOf(child as JsonObject | JsonValue[]);
        setChild(copy, seg, next);
        orig = child;
        copy = next;
      }
    }
  }
  return root;
}

/** How many list elements `v` holds, counting stops past `limit`. */
function countListElements(v: JsonValue, limit: number): number {
  let count = 0;
  const stack: JsonValue[] = [v];
  while (stack.length > 0 && count <= limit) {
    const x = stack.pop() as JsonValue;
    if (Array.isArray(x)) {
      count += x.length;
      for (let i = 0; i < x.length && i <= limit; i++) if (typeof x[i] === 'object' && x[i] !== null) stack.push(x[i]);
    } else if (isJsonObject(x)) {
      for (const k of Object.keys(x)) if (typeof x[k] === 'object' && x[k] !== null) stack.push(x[k]);
    }
  }
  return count;
}

/** A copy of `root` where the outermost list on `path` that goes on past the path's element is
 *  cut just after it (the copies along the path keep their member order); undefined: no such
 *  list. */
function truncateAt(root: JsonObject, path: string[]): JsonObject | undefined {
  let node: JsonValue = root;
  let cutDepth = -1;
  for (let i = 0; i < path.length; i++) {
    if (Array.isArray(node)) {
      const idx = Number(path[i]);
      if (!Number.isInteger(idx) || idx < 0 || idx >= node.length) return undefined;
      if (idx + 1 < node.length) {
        cutDepth = i;
        break;
      }
      node = node[idx];
    } else if (isJsonObject(node) && Object.prototype.hasOwnProperty.call(node, path[i])) {
      node = node[path[i]];
    } else return undefined;
  }
  if (cutDepth < 0) return undefined;
  const copy = (x: JsonObject | JsonValue[], depth: number): JsonObject | JsonValue[] => {
    if (Array.isArray(x)) {
      const idx = Number(path[depth]);
      if (depth === cutDepth) return x.slice(0, idx + 1);
      const out = x.slice();
      out[idx] = copy(x[idx] as JsonObject | JsonValue[], depth + 1);
      return out;
    }
    const o: JsonObject = {};
    for (const k of memberKeys(x)) o[k] = x[k];
    const order = (x as { [MEMBER_ORDER]?: string[] })[MEMBER_ORDER];
    if (order !== undefined) Object.defineProperty(o, MEMBER_ORDER, { value: order, enumerable: false });
    o[path[depth]] = copy(x[path[depth]] as JsonObject | JsonValue[], depth + 1);
    return o;
  };
  return copy(root, 0) as JsonObject;
}

function setChild(container: JsonObject | JsonValue[], seg: string, v: JsonValue): void {
  if (Array.isArray(container)) container[Number(seg)] = v;
  else container[seg] = v;
}
