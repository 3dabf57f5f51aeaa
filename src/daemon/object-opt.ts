// `--object` arguments in qemu-system's -object syntax (qemu-facts §5.9): QemuOpts splitting
// (`key=val`, `,,` escapes a comma, implied `qom-type` first), OptsVisitor typing (sizes with
// suffixes, on/off words, repeated keys and ranges for lists, last-one-wins otherwise), or a
// JSON object when the argument starts with `{`. The result is object-add's arguments; the
// caller validates them against the schema like a QMP request.
import { JsonObject, JsonValue } from '../json/value';
import { JsonStreamParser } from '../json/stream';
import { ObjectType as QapiObjectType, SchemaModel } from '../qapi/model';
import { condHolds } from '../qapi/model';

export class ObjectOptError extends Error {}

/** qemu_strtosz: decimal with optional fraction and one-letter 1024-based suffix, or hex. */
export function parseSize(text: string): bigint | undefined {
  const hex = /^0[xX]([0-9a-fA-F]+)$/.exec(text);
  if (hex) return BigInt('0x' + hex[1]);
  const m = /^(\d+)(?:\.(\d+))?([bBkKmMgGtTpPeE]?)$/.exec(text);
  if (!m) return undefined;
  const shift = { '': 0, b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 }[m[3].toLowerCase()] as number;
  if (m[2] !== undefined && shift === 0) return undefined; // a fraction needs a suffix above B
  const whole = BigInt(m[1]) << BigInt(shift);
  let frac = 0n;
  if (m[2] !== undefined) frac = (BigInt(m[2]) << BigInt(shift)) / 10n ** BigInt(m[2].length);
  const v = whole + frac;
  return v > (1n << 64n) - 1n ? undefined : v;
}

/** Integers as OptsVisitor reads them: base 0 (0x.., leading 0 octal, decimal). */
function parseInt0(text: string): bigint | undefined {
  const m = /^(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text.trim());
  if (!m) return undefined;
  const body = m[2];
  const v = /^0[xX]/.test(body) ? BigInt(body) : body.length > 1 && body.startsWith('0') ? BigInt('0o' + body.slice(1)) : BigInt(body);
  return m[1] ? -v : v;
}

const TRUE_WORDS = ['on', 'yes', 'true', 'y'];
const FALSE_WORDS = ['off', 'no', 'false', 'n'];
const SIGNED = new Set(['int', 'int8', 'int16', 'int32', 'int64']);
const UNSIGNED = new Set(['uint8', 'uint16', 'uint32', 'uint64']);

function splitOpts(arg: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < arg.length; i++) {
    if (arg[i] === ',') {
      if (arg[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
    } else cur += arg[i];
  }
  parts.push(cur);
  return parts;
}

export interface ParsedObjectOpt {
  args: JsonObject;
  warnings: string[];
}

/** Member name → QAPI type name of an ObjectOptions branch (base members included). */
export function branchMembers(model: SchemaModel, qomType: string, defined: ReadonlySet<string>): Map<string, string> | undefined {
  const union = model.entities.get('ObjectOptions') as QapiObjectType | undefined;
  const out = new Map<string, string>();
  if (!union || union.meta !== 'object') return undefined;
  for (const m of union.members) if (condHolds(m.if, defined)) out.set(m.name, m.type);
  const v = union.variants?.find((x) => x.case === qomType && condHolds(x.if, defined));
  if (!v) return undefined;
  const branch = model.entities.get(v.type) as QapiObjectType | undefined;
  for (const m of branch?.members ?? []) if (condHolds(m.if, defined)) out.set(m.name, m.type);
  return out;
}

export function parseObjectOpt(arg: string, model: SchemaModel, defined: ReadonlySet<string>): ParsedObjectOpt {
  if (arg.trimStart().startsWith('{')) return { args: parseJsonArg(arg), warnings: [] };
  const warnings: string[] = [];
  const raw: [string, string][] = [];
  splitOpts(arg).forEach((p, i) => {
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (i === 0) raw.push(['qom-type', p]);
      else if (p.startsWith('no') && p.length > 2) {
        warnings.push(`short-form boolean option '${p}' deprecated`);
        raw.push([p.slice(2), 'off']);
      } else {
        warnings.push(`short-form boolean option '${p}' deprecated`);
        raw.push([p, 'on']);
      }
    } else raw.push([p.slice(0, eq), p.slice(eq + 1)]);
  });
  const qomType = [...raw].reverse().find(([k]) => k === 'qom-type')?.[1];
  if (qomType === undefined) throw new ObjectOptError("Parameter 'qom-type' is missing");
  const members = branchMembers(model, qomType, defined);
  if (!members) throw new ObjectOptError(`Parameter 'qom-type' does not accept value '${qomType}'`);
  const args: JsonObject = {};
  for (const [key, text] of raw) {
    const type = members.get(key);
    if (type === undefined) throw new ObjectOptError(`Invalid parameter '${key}'`);
    if (type.startsWith('[')) {
      const elem = type.slice(1, -1);
      const list = (args[key] as JsonValue[] | undefined) ?? [];
      list.push(...parseListItem(key, elem, text));
      args[key] = list;
    } else args[key] = parseScalar(key, type, text, model);
  }
  return { args, warnings };
}

function parseListItem(key: string, elem: string, text: string): JsonValue[] {
  const kind = UNSIGNED.has(elem) ? 'a uint64' : 'an int64';
  const range = /^([^-]+)-(.+)$/.exec(text);
  if (range) {
    const lo = parseInt0(range[1]);
    const hi = parseInt0(range[2]);
    if (lo === undefined || hi === undefined || hi < lo || hi - lo >= 65536n) throw new ObjectOptError(`Parameter '${key}' expects ${kind} value or range`);
    const out: JsonValue[] = [];
    for (let v = lo; v <= hi; v++) out.push(Number(v));
    return out;
  }
  const v = parseInt0(text);
  if (v === undefined || (UNSIGNED.has(elem) && v < 0n)) throw new ObjectOptError(`Parameter '${key}' expects ${kind} value or range`);
  return [v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v];
}

function parseScalar(key: string, type: string, text: string, model: SchemaModel): JsonValue {
  if (type === 'str') return text;
  if (type === 'bool') {
    if (TRUE_WORDS.includes(text)) return true;
    if (FALSE_WORDS.includes(text)) return false;
    throw new ObjectOptError(`Parameter '${key}' expects 'on' or 'off'`);
  }
  if (type === 'size') {
    const v = parseSize(text);
    if (v === undefined) throw new ObjectOptError(`Parameter '${key}' expects a size value`);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  if (SIGNED.has(type) || UNSIGNED.has(type)) {
    const v = parseInt0(text);
    const unsigned = UNSIGNED.has(type);
    if (v === undefined || (unsigned && v < 0n)) throw new ObjectOptError(`Parameter '${key}' expects ${unsigned ? 'a uint64' : 'an int64'} value`);
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  const ent = model.entities.get(type);
  if (ent?.meta === 'enum') return text; // the schema check names bad values
  return text;
}

function parseJsonArg(arg: string): JsonObject {
  const items: JsonValue[] = [];
  let error: string | undefined;
  const p = new JsonStreamParser((it) => (it.kind === 'value' ? items.push(it.value) : (error ??= it.desc)));
  p.feed(Buffer.from(arg + ' '));
  if (error) throw new ObjectOptError(error);
  const v = items[0];
  if (items.length !== 1 || typeof v !== 'object' || v === null || Array.isArray(v)) throw new ObjectOptError('Expecting a JSON object');
  return v as JsonObject;
}
