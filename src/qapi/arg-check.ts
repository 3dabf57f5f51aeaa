// Argument validation of every command: ajv validators compiled once from JSON Schemas that
// the model generates (the fast path: valid arguments pass through ajv alone); when ajv
// refuses, a walk of the model in QEMU's visit order (qemu-facts §3.5: members in schema
// order, base first, missing before unexpected) names the first problem in QEMU's words and
// the canonical value (negative uint64 taken modulo 2^64) is produced the same way.
import Ajv, { ValidateFunction } from 'ajv';
import { JsonFloat, JsonObject, JsonValue, isJsonObject, isJsonNumber } from '../qmp/json-value';
import { ObjectType, SchemaModel, condHolds } from './model';

type JsonSchema = Record<string, unknown>;
export type CheckResult = { ok: true; value: JsonObject } | { ok: false; desc: string };

const INT_RANGES: Record<string, [bigint, bigint]> = {
  int8: [-(1n << 7n), (1n << 7n) - 1n],
  int16: [-(1n << 15n), (1n << 15n) - 1n],
  int32: [-(1n << 31n), (1n << 31n) - 1n],
  int64: [-(1n << 63n), (1n << 63n) - 1n],
  int: [-(1n << 63n), (1n << 63n) - 1n],
  uint8: [0n, (1n << 8n) - 1n],
  uint16: [0n, (1n << 16n) - 1n],
  uint32: [0n, (1n << 32n) - 1n],
  uint64: [0n, (1n << 64n) - 1n],
  size: [0n, (1n << 64n) - 1n],
};
const UINT64_MAX = (1n << 64n) - 1n;

/** An exact integer value of a JSON number, or undefined for doubles and non-numbers. */
function intOf(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return undefined;
}

/** The QAPI integer rule as an ajv keyword: exact ints only; uint64/size also take
 *  negative int64 (QEMU accepts them modulo 2^64). */
function qintOk(kind: string, v: unknown): boolean {
  const i = intOf(v);
  if (i === undefined) return false;
  if (kind === 'uint64' || kind === 'size') return i >= -(1n << 63n) && i <= UINT64_MAX;
  if (kind.startsWith('uint')) {
    // uintN visits uint64 first: negatives wrap to huge values, out of range.
    return i >= 0n && i <= INT_RANGES[kind][1];
  }
  const [lo, hi] = INT_RANGES[kind];
  return i >= lo && i <= hi;
}

class SchemaGen {
  readonly defs: Record<string, JsonSchema> = {};
  constructor(
    private readonly model: SchemaModel,
    private readonly defined: ReadonlySet<string>,
  ) {}

  ref(typeName: string): JsonSchema {
    if (INT_RANGES[typeName]) return { qint: typeName };
    switch (typeName) {
      case 'str':
        return { type: 'string' };
      case 'bool':
        return { type: 'boolean' };
      case 'null':
        return { type: 'null' };
      case 'any':
        return {};
      case 'number':
        return { qnum: true };
    }
    if (typeName.startsWith('[')) return { type: 'array', items: this.ref(typeName.slice(1, -1)) };
    const key = typeName.replace(/[^A-Za-z0-9_-]/g, '_');
    if (!(key in this.defs)) {
      this.defs[key] = {};
      this.defs[key] = this.build(typeName);
    }
    return { $ref: `#/$defs/${key}` };
  }

  private build(typeName: string): JsonSchema {
    const e = this.model.entities.get(typeName);
    if (!e) throw new Error(`unknown type ${typeName}`);
    const holds = (c: Parameters<typeof condHolds>[0]): boolean => condHolds(c, this.defined);
    if (e.meta === 'enum') return { type: 'string', enum: e.values.filter((v) => holds(v.if)).map((v) => v.name) };
    if (e.meta === 'alternate') return { anyOf: e.members.filter((m) => holds(m.if)).map((m) => this.ref(m.type)) };
    if (e.meta !== 'object') return this.ref(e.name);
    const flat = (members: ObjectType['members'], extra: JsonSchema = {}): JsonSchema => {
      const properties: Record<string, JsonSchema> = {};
      const required: string[] = [];
      for (const m of members) {
        if (!holds(m.if)) continue;
        properties[m.name] = this.ref(m.type);
        if (!m.optional) required.push(m.name);
      }
      Object.assign(properties, extra);
      return { type: 'object', properties, required, additionalProperties: false };
    };
    if (e.tag === undefined) return flat(e.members);
    const tag = e.tag;
    const branches = (e.variants ?? [])
      .filter((v) => holds(v.if))
      .map((v) => {
        const branch = this.model.entities.get(v.type) as ObjectType;
        const base = e.members.filter((m) => m.name !== tag);
        return flat([...base, ...branch.members], { [tag]: { const: v.case } });
      });
    return { type: 'object', required: [tag], properties: { [tag]: this.ref(e.members.find((m) => m.name === tag)!.type) }, discriminator: { propertyName: tag }, oneOf: branches };
  }
}

export class ArgValidator {
  private readonly validators = new Map<string, { fn: ValidateFunction; argType?: string; needsCanon: boolean }>();

  constructor(
    private readonly model: SchemaModel,
    private readonly defined: ReadonlySet<string>,
  ) {
    const ajv = new Ajv({ discriminator: true, strict: false, allErrors: false, validateSchema: false });
    ajv.addKeyword({ keyword: 'qint', schemaType: 'string', errors: false, validate: (kind: string, v: unknown) => qintOk(kind, v) });
    ajv.addKeyword({ keyword: 'qnum', schemaType: 'boolean', errors: false, validate: (_s: boolean, v: unknown) => isJsonNumber(v) });
    for (const name of model.definitionOrder) {
      const c = model.entities.get(name);
      if (c?.meta !== 'command' || !condHolds(c.if, defined)) continue;
      const gen = new SchemaGen(model, defined);
      const root = c.argType ? gen.ref(c.argType) : { type: 'object', additionalProperties: false };
      const schema = { ...root, $defs: gen.defs };
      const text = JSON.stringify(gen.defs);
      this.validators.set(name, { fn: ajv.compile(schema), argType: c.argType, needsCanon: /"qint":"(uint64|size)"/.test(text) || /"qint":"(uint64|size)"/.test(JSON.stringify(root)) });
    }
  }

  validate(command: string, args: JsonObject): CheckResult {
    const v = this.validators.get(command);
    if (!v) return { ok: true, value: args };
    if (v.fn(args)) {
      if (!v.needsCanon) return { ok: true, value: args };
      // Negative uint64/size values are valid but must be reinterpreted: walk once.
      return this.walk(v.argType as string, args);
    }
    const r = v.argType ? this.walk(v.argType, args) : this.walkNone(args);
    // ajv and the walk agree by construction; should they not, ajv's refusal stands.
    return r.ok ? { ok: false, desc: 'Invalid arguments' } : r;
  }

  private walkNone(args: JsonObject): CheckResult {
    const k = Object.keys(args)[0];
    return k === undefined ? { ok: true, value: args } : { ok: false, desc: `Parameter '${k}' is unexpected` };
  }

  private walk(argType: string, args: JsonObject): CheckResult {
    try {
      return { ok: true, value: new Visitor(this.model, this.defined).object(argType, args, '') as JsonObject };
    } catch (e) {
      if (e instanceof VisitError) return { ok: false, desc: e.message };
      throw e;
    }
  }
}

class VisitError extends Error {}

/** QEMU's qobject input visitor, in miniature: the reference for messages and canonical values. */
class Visitor {
  constructor(
    private readonly model: SchemaModel,
    private readonly defined: ReadonlySet<string>,
  ) {}

  private holds(c: Parameters<typeof condHolds>[0]): boolean {
    return condHolds(c, this.defined);
  }

  private static full(prefix: string, name: string): string {
    return prefix ? `${prefix}.${name}` : name;
  }

  object(typeName: string, v: JsonValue, full: string): JsonValue {
    const e = this.model.entities.get(typeName) as ObjectType;
    if (!isJsonObject(v)) throw new VisitError(`Invalid parameter type for '${full}', expected: object`);
    const out: JsonObject = {};
    const seen = new Set<string>();
    const visitMembers = (members: ObjectType['members']): void => {
      for (const m of members) {
        if (!this.holds(m.if) || seen.has(m.name)) continue;
        seen.add(m.name);
        if (!(m.name in v)) {
          if (m.optional) continue;
          throw new VisitError(`Parameter '${Visitor.full(full, m.name)}' is missing`);
        }
        out[m.name] = this.value(m.type, v[m.name], Visitor.full(full, m.name), m.name);
      }
    };
    visitMembers(e.members);
    if (e.tag !== undefined) {
      const variant = (e.variants ?? []).find((x) => x.case === v[e.tag as string] && this.holds(x.if));
      if (variant) visitMembers((this.model.entities.get(variant.type) as ObjectType).members);
    }
    for (const k of Object.keys(v)) if (!seen.has(k)) throw new VisitError(`Parameter '${Visitor.full(full, k)}' is unexpected`);
    return out;
  }

  /** `local` is the member name, or null for list elements (QEMU prints 'null'). */
  private value(typeName: string, v: JsonValue, full: string, local: string | null): JsonValue {
    const loc = local ?? 'null';
    const typeErr = (what: string): VisitError => new VisitError(`Invalid parameter type for '${full}', expected: ${what}`);
    if (INT_RANGES[typeName]) {
      const unsigned = typeName.startsWith('uint') || typeName === 'size';
      if (!isJsonNumber(v)) {
        if (unsigned) throw new VisitError(`Parameter '${full}' expects uint64`);
        throw typeErr('integer');
      }
      let i = intOf(v instanceof JsonFloat ? undefined : v);
      if (unsigned) {
        if (i === undefined || i > UINT64_MAX || i < -(1n << 63n)) throw new VisitError(`Parameter '${full}' expects uint64`);
        if (i < 0n) i += 1n << 64n;
        if (typeName !== 'uint64' && typeName !== 'size' && i > INT_RANGES[typeName][1]) throw new VisitError(`Parameter '${loc}' expects ${typeName}_t`);
        return i > BigInt(Number.MAX_SAFE_INTEGER) ? i : Number(i);
      }
      if (i === undefined || i < INT_RANGES.int64[0] || i > INT_RANGES.int64[1]) throw new VisitError(`Parameter '${full}' expects int64`);
      const [lo, hi] = INT_RANGES[typeName];
      if (i < lo || i > hi) throw new VisitError(`Parameter '${loc}' expects ${typeName}_t`);
      return v;
    }
    switch (typeName) {
      case 'str':
        if (typeof v !== 'string') throw typeErr('string');
        return v;
      case 'bool':
        if (typeof v !== 'boolean') throw typeErr('boolean');
        return v;
      case 'null':
        if (v !== null) throw typeErr('null');
        return v;
      case 'number':
        if (!isJsonNumber(v)) throw typeErr('number');
        return v;
      case 'any':
        return v;
    }
    if (typeName.startsWith('[')) {
      if (!Array.isArray(v)) throw typeErr('array');
      const elem = typeName.slice(1, -1);
      return v.map((x, i) => this.value(elem, x, `${full}[${i}]`, null));
    }
    const e = this.model.entities.get(typeName);
    if (e?.meta === 'enum') {
      if (typeof v !== 'string') throw typeErr('string');
      if (!e.values.some((x) => x.name === v && this.holds(x.if))) throw new VisitError(`Parameter '${loc}' does not accept value '${v}'`);
      return v;
    }
    if (e?.meta === 'alternate') {
      for (const m of e.members) {
        if (!this.holds(m.if)) continue;
        try {
          return this.value(m.type, v, full, local);
        } catch (err) {
          if (!(err instanceof VisitError)) throw err;
        }
      }
      throw typeErr(typeName);
    }
    return this.object(typeName, v, full);
  }
}
