// Stage 3 of the QAPI compiler: the semantic check. Defines the predefined types (facts §3.4),
// turns Definitions into entities (making `[T]` arrays and implicit `q_obj_*` types), then
// resolves names and checks bases, cycles, clashes, unions, alternates, commands, events and
// docs in QEMU's order, so the first error is QEMU's. The model itself: schema-to-model.ts.

import { QapiSemError, QapiSourceError } from './errors';
import { QapiDoc } from './doc';
import { BranchDef, Definition, FeatureDef, MemberDef } from './expr';
import { cName } from './names';
import { BuiltinType, IfCond, Pragmas } from './model';
import { QapiSourceInfo } from './source';
import { DocConnector } from './schema-docs';
import {
  AlternateEnt, ArrayEnt, CommandEnt, Ent, EnumEnt, EnumValueEnt, EventEnt, FeatureEnt, MemberEnt, ObjectEnt,
  TypeEnt, describeEnt, describeMember, isImplicit, isTypeEnt,
} from './schema-entities';

/** Predefined built-in types and their introspection JSON types (facts §3.4). */
const BUILTINS: readonly [string, BuiltinType['jsonType']][] = [
  ['str', 'string'], ['number', 'number'],
  ['int', 'int'], ['int8', 'int'], ['int16', 'int'], ['int32', 'int'], ['int64', 'int'],
  ['uint8', 'int'], ['uint16', 'int'], ['uint32', 'int'], ['uint64', 'int'], ['size', 'int'],
  ['bool', 'boolean'], ['any', 'value'], ['null', 'null'],
];
const QTYPE_VALUES = ['none', 'qnull', 'qnum', 'qstring', 'qdict', 'qlist', 'qbool'];
/** Features every schema knows; not allowed on types (facts §3.2). */
const SPECIAL_FEATURES = ['deprecated', 'unstable'];
/** QEMU keeps feature flags in a 64-bit mask. */
const MAX_FEATURES = 64;

type QType = 'QNULL' | 'QSTRING' | 'QNUM' | 'QBOOL' | 'QLIST' | 'QDICT';

export interface CheckedSchema {
  /** Every entity in QEMU's definition order (predefined first; arrays and implicit
   *  types just before the definition that first needs them). */
  entities: Ent[];
  byName: Map<string, Ent>;
}

export function checkSchema(defs: readonly Definition[], docs: readonly QapiDoc[], pragmas: Pragmas): CheckedSchema {
  const s = new Schema(pragmas);
  for (const d of defs) s.define(d);
  s.check(docs);
  return { entities: s.list, byName: s.dict };
}

class Schema {
  readonly list: Ent[] = [];
  readonly dict = new Map<string, Ent>();
  /** Distinct feature names in order of first use, for the 64-feature limit. */
  private readonly featureNames = new Map<string, QapiSourceInfo | undefined>(SPECIAL_FEATURES.map((f) => [f, undefined]));
  private readonly docs: DocConnector;

  constructor(private readonly pragmas: Pragmas) {
    this.docs = new DocConnector(pragmas);
    for (const [name, jsonType] of BUILTINS) {
      this.add({ kind: 'builtin', name, info: undefined, doc: undefined, if: undefined, features: [], checked: false, jsonType });
    }
    this.add(this.object('q_empty', undefined, undefined, undefined, [], [], undefined, undefined, undefined));
    this.add({
      kind: 'enum', name: 'QType', info: undefined, doc: undefined, if: undefined, features: [], checked: false,
      values: QTYPE_VALUES.map((v) => ({ role: 'value', name: v, definedIn: 'QType', if: undefined, features: [] })),
      prefix: undefined,
    });
  }

  private add(e: Ent): void {
    const other = this.dict.get(e.name);
    if (other) {
      if (other.info) {
        const where = new QapiSourceError(other.info, 'previous definition').message;
        throw new QapiSemError(e.info!, `'${e.name}' is already defined\n${where}`);
      }
      throw new QapiSemError(e.info!, `${describeEnt(other)} is already defined`);
    }
    this.list.push(e);
    this.dict.set(e.name, e);
  }

  private object(
    name: string,
    info: QapiSourceInfo | undefined,
    doc: QapiDoc | undefined,
    cond: IfCond | undefined,
    features: FeatureEnt[],
    local: MemberEnt[],
    baseName: string | undefined,
    tagName: string | undefined,
    variants: MemberEnt[] | undefined,
  ): ObjectEnt {
    return {
      kind: 'object', name, info, doc, if: cond, features, checked: false, baseName, base: undefined, local, tagName,
      variants, tag: undefined, members: [], complete: false,
    };
  }

  // ---- definition: entities hold names only ----

  define(d: Definition): void {
    const { info, name, doc } = d;
    const cond = d.if;
    const features = this.features(d.features, name, info);
    // Literals rather than spreads, for speed (see expr.ts).
    switch (d.meta) {
      case 'enum': {
        const values = d.values.map((v): EnumValueEnt => ({
          role: 'value', name: v.name, definedIn: name, if: v.if, features: this.features(v.features, v.name, info),
        }));
        return this.add({ kind: 'enum', name, info, doc, if: cond, features, checked: false, values, prefix: d.prefix });
      }
      case 'struct': {
        const local = this.members(d.members, name, info);
        return this.add(this.object(name, info, doc, cond, features, local, d.base, undefined, undefined));
      }
      case 'union': {
        const baseName = typeof d.base === 'string' ? d.base : this.implicitObject(name, 'base', cond, d.base, info);
        const variants = this.branches(d.branches, name, info);
        return this.add(this.object(name, info, doc, cond, features, [], baseName, d.discriminator, variants));
      }
      case 'alternate': {
        const variants = this.branches(d.branches, name, info);
        return this.add({ kind: 'alternate', name, info, doc, if: cond, features, checked: false, variants });
      }
      case 'command': {
        const argName = typeof d.data === 'string' ? d.data : d.data && this.implicitObject(name, 'arg', cond, d.data, info);
        const retName = d.returns === undefined ? undefined : this.typeRef(d.returns, info);
        return this.add({
          kind: 'command', name, info, doc, if: cond, features, checked: false, argName, retName, boxed: d.boxed,
          gen: d.gen, successResponse: d.successResponse, allowOob: d.allowOob, allowPreconfig: d.allowPreconfig,
          coroutine: d.coroutine, arg: undefined, ret: undefined,
        });
      }
      case 'event': {
        const argName = typeof d.data === 'string' ? d.data : d.data && this.implicitObject(name, 'arg', cond, d.data, info);
        return this.add({ kind: 'event', name, info, doc, if: cond, features, checked: false, argName, boxed: d.boxed, arg: undefined });
      }
    }
  }

  private features(defs: FeatureDef[], definedIn: string, info: QapiSourceInfo): FeatureEnt[] {
    return defs.map((f) => {
      if (!this.featureNames.has(f.name)) this.featureNames.set(f.name, info);
      return { role: 'feature', name: f.name, definedIn, if: f.if };
    });
  }

  /** `[T]` references create the array entity on first use, before their user (QEMU order). */
  private typeRef(type: string, info: QapiSourceInfo): string {
    if (type.startsWith('[') && !this.dict.has(type)) {
      this.add({
        kind: 'array', name: type, info, doc: undefined, if: undefined, features: [], checked: false,
        elementName: type.slice(1, -1), element: undefined,
      });
    }
    return type;
  }

  private members(defs: MemberDef[], definedIn: string, info: QapiSourceInfo): MemberEnt[] {
    return defs.map((m) => ({
      role: 'member', name: m.name, definedIn, info, typeName: this.typeRef(m.type, info), optional: m.optional,
      if: m.if, features: this.features(m.features, m.name, info), type: undefined, doc: undefined,
    }));
  }

  private branches(defs: BranchDef[], definedIn: string, info: QapiSourceInfo): MemberEnt[] {
    return defs.map((b) => ({
      role: 'branch', name: b.name, definedIn, info, typeName: this.typeRef(b.type, info), optional: false, if: b.if,
      features: [], type: undefined, doc: undefined,
    }));
  }

  /** `q_obj_<name>-arg` / `q_obj_<name>-base` for inline members; none when there are no
   *  members. A second user can only be a duplicate definition, reported when it is added. */
  private implicitObject(owner: string, role: 'arg' | 'base', cond: IfCond | undefined, defs: MemberDef[], info: QapiSourceInfo): string | undefined {
    if (defs.length === 0) return undefined;
    const name = `q_obj_${owner}-${role}`;
    const local = this.members(defs, name, info);
    if (!this.dict.has(name)) this.add(this.object(name, info, undefined, cond, [], local, undefined, undefined, undefined));
    return name;
  }

  // ---- check: resolve names, then the rules ----

  check(docs: readonly QapiDoc[]): void {
    // QEMU connects an entity's doc right after checking it, so doc errors interleave.
    for (const e of this.list) {
      this.checkEnt(e);
      this.docs.connect(e);
    }
    for (const doc of docs) this.docs.checkAllUsed(doc);
    const features = [...this.featureNames.values()];
    if (features.length > MAX_FEATURES) {
      throw new QapiSemError(features[MAX_FEATURES]!, `Maximum of ${MAX_FEATURES} schema features is permitted`);
    }
  }

  private checkEnt(e: Ent): void {
    switch (e.kind) {
      case 'object':
        return this.checkObject(e);
      case 'builtin':
        return this.checkDefinition(e);
      case 'enum':
        return this.checkEnum(e);
      case 'array':
        return this.checkArray(e);
      case 'alternate':
        return this.checkAlternate(e);
      case 'command':
        return this.checkCommand(e);
      case 'event':
        return this.checkEvent(e);
    }
  }

  private resolveType(name: string, info: QapiSourceInfo | undefined, what: string | (() => string)): TypeEnt {
    const t = this.dict.get(name);
    if (!t || !isTypeEnt(t)) {
      throw new QapiSemError(info!, `${typeof what === 'string' ? what : what()} uses unknown type '${name}'`);
    }
    return t;
  }

  /** Records `m` under its C name; `a-b` and `a_b` collide (facts §3.2). */
  private clash(m: MemberEnt | FeatureEnt | EnumValueEnt, info: QapiSourceInfo | undefined, seen: Map<string, MemberEnt | FeatureEnt | EnumValueEnt>): void {
    const c = cName(m.name);
    const other = seen.get(c);
    if (other) throw new QapiSemError(info!, `${describeMember(m, info)} collides with ${describeMember(other, info)}`);
    seen.set(c, m);
  }

  private checkDefinition(e: Ent): void {
    e.checked = true;
    const seen = new Map();
    for (const f of e.features) this.clash(f, e.info, seen);
    if (isTypeEnt(e)) {
      for (const f of e.features) {
        if (SPECIAL_FEATURES.includes(f.name)) throw new QapiSemError(e.info!, `feature '${f.name}' is not supported for types`);
      }
    }
  }

  private checkEnum(e: EnumEnt): void {
    this.checkDefinition(e);
    const seen = new Map();
    for (const v of e.values) this.clash(v, e.info, seen);
  }

  private checkArray(a: ArrayEnt): void {
    if (a.checked) return;
    this.checkDefinition(a);
    // Reported as e.g. "struct uses unknown type 'Foo'": the array's first user's meta.
    a.element = this.resolveType(a.elementName, a.info, a.info?.defn?.meta ?? 'array');
  }

  private checkMember(m: MemberEnt): void {
    m.type = this.resolveType(m.typeName, m.info, () => describeMember(m, m.info));
    if (m.type.kind === 'array') this.checkArray(m.type);
    const seen = new Map();
    for (const f of m.features) this.clash(f, m.info, seen);
  }

  /** Objects check their base and union branches first: a C struct that contains itself
   *  (through them; pointers don't count) is a cycle. */
  private checkObject(t: ObjectEnt): void {
    if (t.complete) return;
    if (t.checked) throw new QapiSemError(t.info!, `object ${t.name} contains itself`);
    this.checkDefinition(t);
    const seen = new Map<string, MemberEnt>();
    if (t.baseName !== undefined) {
      const base = this.resolveType(t.baseName, t.info, `'base'`);
      if (base.kind !== 'object' || base.variants) {
        throw new QapiSemError(t.info!, `'base' requires a struct type, ${describeEnt(base)} isn't`);
      }
      t.base = base;
      this.checkObject(base);
      this.checkClash(base, t.info, seen);
    }
    for (const m of t.local) {
      this.checkMember(m);
      this.clash(m, t.info, seen);
    }
    const members = [...seen.values()];
    if (t.variants) {
      this.checkUnionBranches(t, t.variants, seen);
      for (const v of t.variants) this.checkClash(v.type as ObjectEnt, t.info, new Map(seen));
    }
    t.members = members;
    t.complete = true;
  }

  /** Adds `t`'s members (and each branch's, separately) to `seen`, reporting on `info`. */
  private checkClash(t: ObjectEnt, info: QapiSourceInfo | undefined, seen: Map<string, MemberEnt>): void {
    for (const m of t.members) this.clash(m, info, seen);
    for (const v of t.variants ?? []) this.checkClash(v.type as ObjectEnt, info, new Map(seen));
  }

  /** Union rules (facts §3.2): the discriminator is a mandatory, unconditional enum member
   *  of the base; branches are values of that enum and object types; values without a
   *  branch get `q_empty`. */
  private checkUnionBranches(u: ObjectEnt, variants: MemberEnt[], seen: Map<string, MemberEnt>): void {
    const info = u.info!;
    const tagName = u.tagName!;
    const tag = seen.get(cName(tagName));
    if (!tag || tag.name !== tagName) throw new QapiSemError(info, `discriminator '${tagName}' is not a member of 'base'`);
    u.tag = tag;
    const baseType = this.dict.get(tag.definedIn)!;
    const base = isImplicit(baseType) ? `'base'` : `base type '${tag.definedIn}'`;
    const tagType = tag.type!;
    if (tagType.kind !== 'enum') throw new QapiSemError(info, `discriminator member '${tagName}' of ${base} must be of enum type`);
    if (tag.optional) throw new QapiSemError(info, `discriminator member '${tagName}' of ${base} must not be optional`);
    if (tag.if !== undefined) throw new QapiSemError(info, `discriminator member '${tagName}' of ${base} must not be conditional`);
    const cases = new Set(variants.map((v) => v.name));
    for (const value of tagType.values) {
      if (cases.has(value.name)) continue;
      variants.push({
        role: 'branch', name: value.name, definedIn: tag.definedIn, info, typeName: 'q_empty', optional: false, if: value.if, features: [],
      });
    }
    if (variants.length === 0) throw new QapiSemError(info, 'union has no branches');
    const values = new Set(tagType.values.map((v) => v.name));
    for (const v of variants) {
      this.checkMember(v);
      if (!values.has(v.name)) throw new QapiSemError(info, `branch '${v.name}' is not a value of ${describeEnt(tagType)}`);
      const vt = v.type!;
      if (vt.kind !== 'object') throw new QapiSemError(info, `${describeMember(v, info)} cannot use ${describeEnt(vt)}`);
      this.checkObject(vt);
    }
  }

  /** Alternate rules (facts §3.2): each branch must be told apart by its JSON type alone. */
  private checkAlternate(a: AlternateEnt): void {
    this.checkDefinition(a);
    const info = a.info!;
    for (const v of a.variants) this.checkMember(v);
    const seen = new Map();
    const typesSeen = new Map<QType, string>();
    for (const v of a.variants) {
      this.clash(v, info, seen);
      const vt = v.type!;
      const qtype = alternateQType(vt);
      if (!qtype) throw new QapiSemError(info, `${describeMember(v, info)} cannot use ${describeEnt(vt)}`);
      const conflicting = new Set<QType>([qtype]);
      if (qtype === 'QSTRING') {
        // keyval input (-object, -device) turns everything into strings, so an enum value
        // that looks like a bool or number, or any str branch, is ambiguous with those.
        if (vt.kind === 'enum') {
          for (const value of vt.values) {
            if (value.name === 'on' || value.name === 'off') conflicting.add('QBOOL');
            if (/^[-+0-9.]/.test(value.name)) conflicting.add('QNUM');
          }
        } else {
          conflicting.add('QNUM');
          conflicting.add('QBOOL');
        }
      }
      for (const qt of conflicting) {
        const other = typesSeen.get(qt);
        if (other !== undefined) throw new QapiSemError(info, `${describeMember(v, info)} can't be distinguished from '${other}'`);
        typesSeen.set(qt, v.name);
      }
    }
  }

  /** Shared by commands and events: `data` names an object type, a union only when boxed,
   *  and conditional members need boxed too (the C signature can't be conditional). */
  private checkArgType(c: CommandEnt | EventEnt): void {
    if (c.argName === undefined) return;
    const info = c.info!;
    const what = `${c.kind}'s 'data'`;
    const t = this.resolveType(c.argName, info, what);
    if (t.kind !== 'object') throw new QapiSemError(info, `${what} cannot take ${describeEnt(t)}`);
    c.arg = t;
    if (t.variants && !c.boxed) throw new QapiSemError(info, `${what} can take ${describeEnt(t)} only with 'boxed': true`);
    this.checkObject(t);
    if (!c.boxed && t.members.some((m) => m.if !== undefined)) {
      throw new QapiSemError(info, `conditional ${c.kind} arguments require 'boxed': true`);
    }
  }

  private checkCommand(c: CommandEnt): void {
    this.checkDefinition(c);
    this.checkArgType(c);
    if (c.retName === undefined) return;
    const info = c.info!;
    const ret = this.resolveType(c.retName, info, `command's 'returns'`);
    c.ret = ret;
    if (this.pragmas.commandReturnsExceptions.includes(c.name)) return;
    if (ret.kind === 'array') this.checkArray(ret);
    const t = ret.kind === 'array' ? ret.element! : ret;
    if (t.kind !== 'object') throw new QapiSemError(info, `command's 'returns' cannot take ${describeEnt(ret)}`);
  }

  private checkEvent(e: EventEnt): void {
    this.checkDefinition(e);
    this.checkArgType(e);
  }
}

function alternateQType(t: TypeEnt): QType | undefined {
  switch (t.kind) {
    case 'builtin':
      return ({ string: 'QSTRING', number: 'QNUM', int: 'QNUM', boolean: 'QBOOL', null: 'QNULL', value: undefined } as const)[t.jsonType];
    case 'enum':
      return 'QSTRING';
    case 'array':
      return 'QLIST';
    case 'object':
      return 'QDICT';
    case 'alternate':
      return undefined;
  }
}
