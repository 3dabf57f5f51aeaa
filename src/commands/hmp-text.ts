// Text forms the human monitor prints, as QEMU 7.2 prints them: values in QEMU's pretty JSON
// (qom-get), number lists as ranges (info memdev's host nodes), the QOM composition tree, and
// the string-to-value reading of `qom-set` without -j (QEMU's string input visitor).
import { JsonValue, isJsonObject, memberKeys } from '../json/value';
import { encodeJson, qdictKeyOrder } from '../json/writer';
import { JsonStreamParser } from '../json/stream';
import { genericError } from '../errors/qmp-error';
import { QomObject } from '../qom/object';

/** QEMU's pretty JSON: one member or element per line (members in QDict order), four spaces
 *  a level, the closing bracket on a line of its own even when empty. */
export function prettyJson(v: JsonValue, level = 0): string {
  const pad = (n: number): string => ' '.repeat(4 * n);
  if (Array.isArray(v)) {
    const items = v.map((e) => `\n${pad(level + 1)}${prettyJson(e, level + 1)}`);
    return `[${items.join(',')}\n${pad(level)}]`;
  }
  if (isJsonObject(v)) {
    const items = qdictKeyOrder(memberKeys(v)).map((k) => `\n${pad(level + 1)}${encodeJson(k)}: ${prettyJson(v[k], level + 1)}`);
    return `{${items.join(',')}\n${pad(level)}}`;
  }
  return encodeJson(v);
}

/** Sorted numbers as QEMU's string output visitor prints a list: runs as `a-b`, comma-separated. */
export function rangesText(values: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < values.length; ) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[j] + 1) j++;
    out.push(j === i ? `${values[i]}` : `${values[i]}-${values[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/** `info qom-tree`: each object as `/name (type)`, children sorted by name, two spaces a level. */
export function qomTreeText(obj: QomObject, root: QomObject, indent = 0): string {
  const name = obj === root ? '' : obj.name;
  let text = `${' '.repeat(indent)}/${name} (${obj.typeName})\n`;
  const children = [...obj.children.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const c of children) text += qomTreeText(c, root, indent + 2);
  return text;
}

const UINT64_MAX = (1n << 64n) - 1n;
const TRUE_WORDS = ['on', 'yes', 'true', 'y'];
const FALSE_WORDS = ['off', 'no', 'false', 'n'];
/** The `int` properties QEMU visits as sizes (suffixes allowed): the rest are plain numbers. */
const SIZE_PROPERTIES = new Set(['size', 'align', 'offset', 'hugetlbsize']);
/** QEMU's string input visitor refuses lists longer than this. */
const MAX_LIST_RANGE = 65536n;

/** qemu_strtou64 with base 0: decimal, 0x hex, leading-0 octal; a minus sign wraps. */
export function parseUint64Text(text: string): bigint | undefined {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return undefined;
  const body = m[2];
  const v = /^0[xX]/.test(body) ? BigInt(body) : body.length > 1 && body.startsWith('0') ? BigInt('0o' + body.slice(1)) : BigInt(body);
  if (v > UINT64_MAX) return undefined;
  return m[1] === '-' ? (v === 0n ? 0n : (1n << 64n) - v) : v;
}

/** qemu_strtosz: a decimal (with an optional fraction) and a 1024-based suffix, or hex. */
export function parseSizeText(text: string): bigint | undefined {
  const hex = /^0[xX]([0-9a-fA-F]+)$/.exec(text);
  if (hex) {
    const v = BigInt('0x' + hex[1]);
    return v > UINT64_MAX ? undefined : v;
  }
  const m = /^(\d+)(?:\.(\d+))?([bBkKmMgGtTpPeE]?)$/.exec(text);
  if (!m) return undefined;
  const shift = { '': 0, b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 }[m[3].toLowerCase()] as number;
  if (m[2] !== undefined && shift === 0) return undefined;
  let v = BigInt(m[1]) << BigInt(shift);
  if (m[2] !== undefined) v += (BigInt(m[2]) << BigInt(shift)) / 10n ** BigInt(m[2].length);
  return v > UINT64_MAX ? undefined : v;
}

const num = (v: bigint): JsonValue => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

/** `qom-set PATH PROP VALUE` (no -j): the text read as the property's type, as QEMU's string
 *  input visitor reads it, with its complaints. Properties of other types (strings, enums,
 *  links) take the text as it is; their setters judge it. */
export function valueFromText(obj: QomObject, property: string, text: string): JsonValue {
  const def = obj.children.has(property) ? undefined : obj.type.properties.get(property);
  if (!def?.set) return text; // the setter path names what is wrong (not found, not writable)
  if (def.type === 'bool') {
    if (TRUE_WORDS.includes(text)) return true;
    if (FALSE_WORDS.includes(text)) return false;
    throw genericError(`Parameter '${property}' expects 'on' or 'off'`);
  }
  if (def.type !== 'int') return text;
  if (SIZE_PROPERTIES.has(property)) {
    const v = parseSizeText(text);
    if (v === undefined) throw genericError(`Parameter '${property}' expects size`);
    return num(v);
  }
  if (Array.isArray(def.get?.(obj))) return listFromText(text);
  const v = parseUint64Text(text);
  if (v === undefined) throw genericError(`Parameter '${property}' expects uint64`);
  return num(v);
}

/** A list of numbers and ranges (`0-2,5`); QEMU names the elements 'null'. */
function listFromText(text: string): JsonValue[] {
  const bad = (): never => {
    throw genericError("Parameter 'null' expects list of uint64 values or ranges");
  };
  const out: JsonValue[] = [];
  for (const part of text.split(',')) {
    const r = /^([^-]+)-(.+)$/.exec(part);
    const lo = parseUint64Text(r ? r[1] : part) ?? bad();
    const hi = r ? (parseUint64Text(r[2]) ?? bad()) : lo;
    if (hi < lo || hi - lo >= MAX_LIST_RANGE) bad();
    for (let v = lo; v <= hi; v++) out.push(num(v));
  }
  return out;
}

/** One JSON text (qom-set -j's value, a JSON object_add), with QEMU's complaints. */
export function parseOneJson(text: string): JsonValue {
  const items: JsonValue[] = [];
  let err: string | undefined;
  const parser = new JsonStreamParser((it) => (it.kind === 'value' ? items.push(it.value) : (err ??= it.desc)));
  parser.feed(Buffer.from(`${text} `));
  if (err !== undefined) throw genericError(err);
  if (items.length > 1) throw genericError('Expecting at most one JSON value');
  const end = parser.endOfInput();
  if (end?.kind === 'error') throw genericError(end.desc);
  if (items.length === 0) throw genericError('JSON parse error, premature EOI');
  return items[0];
}
