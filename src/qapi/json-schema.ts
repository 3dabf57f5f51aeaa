// Back end: one JSON Schema per command's arguments, exactly what QEMU's QMP input visitor
// accepts (qemu-facts §3.4, §3.5, §2.5), for ajv 8 and (docs as `description`) the console;
// plus the custom keywords they need, as JSON Schema types cannot tell a QAPI integer from a
// double (value.ts). Compiling and wording refusals QEMU's way is validate.ts's job.
import type Ajv from 'ajv';
import { JsonFloat, isJsonNumber, isJsonObject } from '../json/value';
import { AlternateType, EnumType, IfCond, ObjectType, SchemaModel, condHolds } from './model';

export type JsonSchema = { [keyword: string]: unknown };

/** The custom keywords, by role. */
export const QAPI_KEYWORDS = {
  /** `"qapiInt": "uint16"`: a QAPI integer type, checked as the visitor does (see intCheck). */
  int: 'qapiInt',
  /** `"qapiNumber": true`: any JSON number (QEMU QNum: int64, uint64 or double). */
  number: 'qapiNumber',
  /** `"qapiObject": true`: a JSON object; ajv's `type: object` would also take a JsonFloat. */
  object: 'qapiObject',
  /** `"qapiKind": "number"`: the JSON kind an alternate dispatches on (QEMU's QType). */
  kind: 'qapiKind',
  /** `"qapiAlternate": "Name"`: always fails; an alternate given a kind it has no branch for. */
  alternate: 'qapiAlternate',
} as const;

export type QapiIntType = 'int' | 'int8' | 'int16' | 'int32' | 'int64' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'size';
export type JsonKind = 'string' | 'number' | 'boolean' | 'null' | 'array' | 'object';

interface IntSpec {
  /** Accepted range of the *input* integer (before uint64's modulo-2^64 wrap). */
  lo: bigint;
  hi: bigint;
  /** The same range clipped to safe integers, for the plain-number fast path. */
  loN: number;
  hiN: number;
  /** uint64/size: negative int64 input is accepted and taken modulo 2^64 (§2.5). */
  wraps: boolean;
}

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

function intSpec(lo: bigint, hi: bigint, wraps = false): IntSpec {
  const safe = BigInt(Number.MAX_SAFE_INTEGER);
  return { lo, hi, loN: Number(lo < -safe ? -safe : lo), hiN: Number(hi > safe ? safe : hi), wraps };
}

/** What each integer type accepts over QMP (qobject-input-visitor.c, qapi-visit-core.c):
 *  signed types take int64 values within their range; unsigned ones go through uint64 first,
 *  so uint8..uint32 refuse negatives (they wrap to huge values) while uint64/size take them. */
export const INT_SPECS: Readonly<Record<QapiIntType, IntSpec>> = {
  int: intSpec(I64_MIN, I64_MAX),
  int8: intSpec(-(1n << 7n), (1n << 7n) - 1n),
  int16: intSpec(-(1n << 15n), (1n << 15n) - 1n),
  int32: intSpec(-(1n << 31n), (1n << 31n) - 1n),
  int64: intSpec(I64_MIN, I64_MAX),
  uint8: intSpec(0n, (1n << 8n) - 1n),
  uint16: intSpec(0n, (1n << 16n) - 1n),
  uint32: intSpec(0n, (1n << 32n) - 1n),
  uint64: intSpec(I64_MIN, U64_MAX, true),
  size: intSpec(I64_MIN, U64_MAX, true),
};

export function isIntType(name: string): name is QapiIntType {
  return Object.prototype.hasOwnProperty.call(INT_SPECS, name);
}

/** 0: refused; 1: accepted as is; 2: accepted, but the canonical value is `v + 2^64`. */
export function intCheck(spec: IntSpec, v: unknown): 0 | 1 | 2 {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return 0;
    if (Number.isSafeInteger(v)) return v < spec.loN || v > spec.hiN ? 0 : v < 0 && spec.wraps ? 2 : 1;
    v = BigInt(v);
  }
  if (typeof v === 'bigint') return v < spec.lo || v > spec.hi ? 0 : v < 0n && spec.wraps ? 2 : 1;
  return 0; // strings, JsonFloat (a double, even when integral), ...
}

/** The JSON kind of a value, as QEMU's QType sees it (JsonFloat and bigint are numbers). */
export function jsonKind(v: unknown): JsonKind | undefined {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'number':
    case 'bigint':
      return 'number';
    case 'object':
      if (v instanceof JsonFloat) return 'number';
      return Array.isArray(v) ? 'array' : 'object';
  }
  return undefined;
}

/** Where a validator reports the negative uint64/size values it accepts (their instancePath),
 *  while `current` is set: ArgValidator sets it around a call, so that it can canonicalise them
 *  (QEMU stores `size: -1` as 18446744073709551615); ajv itself never modifies the data. A
 *  module-level hook rather than a closure, so that validators generated ahead of time (at
 *  build, standalone.ts) report to the same place as those compiled at run time. */
export const wrapSink: { current: ((instancePath: string) => void) | undefined } = { current: undefined };

/** Called by the validators' code for a wrapped value (see wrapSink). */
export function wrapped(instancePath: string): void {
  wrapSink.current?.(instancePath);
}

/** How the validators' code reaches this module and value.ts when it is written out ahead of
 *  time: paths from the generated file, which lives beside this one (dist/qapi/). */
const SELF_MODULE = './json-schema';
const VALUE_MODULE = '../json/value';

/**
 * Registers the custom keywords on an ajv instance, as code generators: each keyword's check
 * is a call of a function of this module (or value.ts) inlined into the validator, which ajv
 * can also write out as standalone code (the build does, standalone.ts). With `recordWraps`,
 * qapiInt of uint64/size reports the negative values it accepts through wrapSink.
 */
export function addQapiKeywords(ajv: Ajv, recordWraps = false): void {
  // Loaded with ajv itself, never at start (validate.ts loads ajv after the greeting).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { _, getProperty, strConcat } = require('ajv/dist/compile/codegen') as typeof import('ajv/dist/compile/codegen');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const N = (require('ajv/dist/compile/names') as typeof import('ajv/dist/compile/names')).default;
  type Cxt = import('ajv').KeywordCxt;
  // The functions the checks call, and the module the written-out code requires each from.
  const helpers = {
    intCheck: [intCheck, SELF_MODULE],
    jsonKind: [jsonKind, SELF_MODULE],
    wrapped: [wrapped, SELF_MODULE],
    isJsonNumber: [isJsonNumber, VALUE_MODULE],
    isJsonObject: [isJsonObject, VALUE_MODULE],
  } as const;
  const fn = (cxt: Cxt, name: keyof typeof helpers) => {
    const [ref, from] = helpers[name];
    return cxt.gen.scopeValue('func', { ref, code: _`require(${from})${getProperty(name)}` });
  };
  ajv.addKeyword({
    keyword: QAPI_KEYWORDS.int,
    schemaType: 'string',
    code: (cxt: Cxt) => {
      const type = cxt.schema as string;
      if (!isIntType(type)) throw new Error(`${QAPI_KEYWORDS.int}: unknown integer type '${type}'`);
      const spec = cxt.gen.scopeValue('obj', { ref: INT_SPECS[type], code: _`require(${SELF_MODULE}).INT_SPECS${getProperty(type)}` });
      const check = _`${fn(cxt, 'intCheck')}(${spec}, ${cxt.data})`;
      if (!INT_SPECS[type].wraps || !recordWraps) return cxt.fail(_`${check} === 0`);
      const r = cxt.gen.const('r', check);
      cxt.gen.if(_`${r} === 2`, () => cxt.gen.code(_`${fn(cxt, 'wrapped')}(${strConcat(N.instancePath, cxt.it.errorPath)})`));
      cxt.fail(_`${r} === 0`);
    },
  });
  ajv.addKeyword({ keyword: QAPI_KEYWORDS.number, schemaType: 'boolean', code: (cxt: Cxt) => cxt.fail(_`!${fn(cxt, 'isJsonNumber')}(${cxt.data})`) });
  ajv.addKeyword({ keyword: QAPI_KEYWORDS.object, schemaType: 'boolean', code: (cxt: Cxt) => cxt.fail(_`!${fn(cxt, 'isJsonObject')}(${cxt.data})`) });
  ajv.addKeyword({
    keyword: QAPI_KEYWORDS.kind,
    schemaType: 'string',
    code: (cxt: Cxt) => cxt.fail(_`${fn(cxt, 'jsonKind')}(${cxt.data}) !== ${cxt.schema as string}`),
  });
  ajv.addKeyword({ keyword: QAPI_KEYWORDS.alternate, schemaType: 'string', code: (cxt: Cxt) => cxt.fail() });
}

/**
 * One schema per command whose condition holds, keyed by command name, in definition order.
 * A command without arguments gets the empty object schema (any key is unexpected). Named
 * types live in `$defs` and are referenced by their QAPI name; arrays and union branches are
 * inline. Unions are flattened: base members are checked at the union's level, each branch
 * (selected by ajv's `discriminator`) lists every allowed name so `additionalProperties:
 * false` sees all of them; an enum value without a branch (or with a branch the build
 * conditions away) gets an empty one, as QEMU's implicit `q_empty` branches.
 * Alternates dispatch on the value's JSON kind with an if/then/else chain ending in
 * `qapiAlternate`, which is how QEMU's generated visitor switches on the QType.
 */
export function buildArgSchemas(model: SchemaModel, defined: ReadonlySet<string>): Map<string, JsonSchema> {
  const out = new Map<string, JsonSchema>();
  for (const name of model.definitionOrder) {
    const c = model.entities.get(name);
    if (c?.meta !== 'command' || !condHolds(c.if, defined)) continue;
    const gen = new SchemaGen(model, defined);
    const root: JsonSchema = c.argType === undefined ? { type: 'object', [QAPI_KEYWORDS.object]: true, additionalProperties: false } : gen.rootObject(c.argType);
    // The command's doc describes the form better than its argument type's (if it has one).
    const schema: JsonSchema = { title: name, ...root };
    if (c.doc !== undefined) schema.description = c.doc;
    if (Object.keys(gen.defs).length > 0) schema.$defs = gen.defs;
    out.set(name, schema);
  }
  return out;
}

class SchemaGen {
  readonly defs: Record<string, JsonSchema> = {};

  constructor(
    private readonly model: SchemaModel,
    private readonly defined: ReadonlySet<string>,
  ) {}

  private holds(c: IfCond | undefined): boolean {
    return condHolds(c, this.defined);
  }

  /** The arguments object itself: inline, so the schema's root is that object. */
  rootObject(typeName: string): JsonSchema {
    const e = this.model.entities.get(typeName);
    if (e?.meta !== 'object') throw new Error(`json-schema: argument type '${typeName}' is not an object type`);
    return this.object(e, [], undefined);
  }

  /** The schema of a value of type `typeName` (a member, an element or an alternate branch). */
  ref(typeName: string): JsonSchema {
    if (isIntType(typeName)) return { [QAPI_KEYWORDS.int]: typeName };
    switch (typeName) {
      case 'str':
        return { type: 'string' };
      case 'bool':
        return { type: 'boolean' };
      case 'null':
        return { type: 'null' };
      case 'number':
        return { [QAPI_KEYWORDS.number]: true };
      case 'any':
        return {};
    }
    const e = this.model.entities.get(typeName);
    if (e?.meta === 'array' || (e === undefined && typeName.startsWith('['))) {
      const elem = e?.meta === 'array' ? e.elementType : typeName.slice(1, -1);
      return { type: 'array', items: this.ref(elem) };
    }
    if (e === undefined) throw new Error(`json-schema: unknown type '${typeName}'`);
    if (!Object.prototype.hasOwnProperty.call(this.defs, typeName)) {
      this.defs[typeName] = {}; // placeholder: recursive types refer to themselves
      if (e.meta === 'enum') this.defs[typeName] = this.enumSchema(e);
      else if (e.meta === 'object') this.defs[typeName] = this.object(e, [], undefined);
      else if (e.meta === 'alternate') this.defs[typeName] = this.alternate(e);
      else throw new Error(`json-schema: type '${typeName}' (${e.meta}) cannot be a member type`);
    }
    return { $ref: `#/$defs/${typeName}` };
  }

  private enumSchema(e: EnumType): JsonSchema {
    const values = e.values.filter((v) => this.holds(v.if)).map((v) => v.name);
    // An enum whose every value is conditioned away accepts no string at all.
    const s: JsonSchema = values.length > 0 ? { type: 'string', enum: values } : { type: 'string', not: {} };
    return withDoc(s, e.doc);
  }

  /**
   * A struct or union. `inherited` are the names an enclosing union level already checks
   * (accepted here as `true` so additionalProperties does not flag them); `branchOf` is the
   * enclosing union's tag and this branch's case, which ajv's discriminator needs as `const`.
   */
  private object(t: ObjectType, inherited: string[], branchOf: [string, string] | undefined): JsonSchema {
    const members = t.members.filter((m) => this.holds(m.if));
    const properties: Record<string, JsonSchema | boolean> = {};
    for (const n of inherited) properties[n] = true;
    if (branchOf !== undefined) properties[branchOf[0]] = { const: branchOf[1] };
    for (const m of members) properties[m.name] = withDoc(this.ref(m.type), m.doc);
    const s: JsonSchema = branchOf === undefined ? { type: 'object', [QAPI_KEYWORDS.object]: true } : { type: 'object' };
    if (branchOf === undefined && t.doc !== undefined) s.description = t.doc;
    s.properties = properties;
    const required = members.filter((m) => !m.optional).map((m) => m.name);
    if (required.length > 0) s.required = required;
    if (t.tag === undefined) {
      s.additionalProperties = false;
      return s;
    }
    const tag = t.tag;
    const tagType = this.model.entities.get(members.find((m) => m.name === tag)?.type ?? '');
    if (tagType?.meta !== 'enum') throw new Error(`json-schema: union '${t.name}' has no enum discriminator '${tag}'`);
    const names = [...inherited, ...members.map((m) => m.name)];
    const branches: JsonSchema[] = [];
    for (const value of tagType.values) {
      if (!this.holds(value.if)) continue;
      const variant = (t.variants ?? []).find((v) => v.case === value.name && this.holds(v.if));
      const vt = variant === undefined ? undefined : this.model.entities.get(variant.type);
      const branchType: ObjectType = vt?.meta === 'object' ? vt : { meta: 'object', name: 'q_empty', members: [], features: [], implicit: true };
      branches.push(this.object(branchType, names, [tag, value.name]));
    }
    // No value left: the tag's own enum check refuses every string, nothing to dispatch.
    if (branches.length === 0) return s;
    if (branches.every((b) => !(branchCase(b, tag) in Object.prototype))) {
      s.discriminator = { propertyName: tag };
      s.oneOf = branches;
    } else {
      // ajv's discriminator looks tag values up with `in` on a plain object, so a value such as
      // 'constructor' breaks it; an if/then per value selects the same single branch.
      s.allOf = branches.map((b) => ({ if: { required: [tag], properties: { [tag]: { const: branchCase(b, tag) } } }, then: b }));
    }
    return s;
  }

  private alternate(t: AlternateType): JsonSchema {
    let chain: JsonSchema = { [QAPI_KEYWORDS.alternate]: t.name };
    const branches = t.members.filter((m) => this.holds(m.if));
    for (let i = branches.length - 1; i >= 0; i--) {
      const b = branches[i];
      chain = { if: { [QAPI_KEYWORDS.kind]: typeKind(this.model, b.type) }, then: this.ref(b.type), else: chain };
    }
    return withDoc(chain, t.doc);
  }
}

/** The JSON kind of the values of a type usable as an alternate branch (its QType). */
export function typeKind(model: SchemaModel, typeName: string): JsonKind {
  if (isIntType(typeName) || typeName === 'number') return 'number';
  if (typeName === 'str') return 'string';
  if (typeName === 'bool') return 'boolean';
  if (typeName === 'null') return 'null';
  const e = model.entities.get(typeName);
  if (e?.meta === 'enum') return 'string';
  if (e?.meta === 'array' || typeName.startsWith('[')) return 'array';
  if (e?.meta === 'object') return 'object';
  throw new Error(`json-schema: type '${typeName}' cannot be an alternate branch`);
}

function branchCase(branch: JsonSchema, tag: string): string {
  return ((branch.properties as Record<string, { const: string }>)[tag]).const;
}

function withDoc(s: JsonSchema, doc: string | undefined): JsonSchema {
  return doc === undefined ? s : { ...s, description: doc };
}
