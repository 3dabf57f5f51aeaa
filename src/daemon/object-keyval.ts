// HMP object_add's argument as QEMU 7.2 reads it (not -object's QemuOpts, object-opt.ts):
// keyval syntax (`type,key=value,list.0=v`, implied `qom-type` first, `,,` a comma, the last
// of a repeated key wins, `help` asks for help) typed by the ObjectOptions branch the way the
// keyval input visitor types strings, or a JSON object when it starts with `{`.
import { JsonObject, JsonValue } from '../json/value';
import { genericError } from '../errors/qmp-error';
import { SchemaModel } from '../qapi/model';
import type { ArgValidator } from '../qapi/validate';
import { ObjectArgText } from '../commands/hmp';
import { branchMembers, parseSize } from './object-opt';
import { parseOneJson } from '../commands/hmp-text';

/** QEMU's keyval refuses longer key fragments. */
const MAX_KEY_FRAGMENT = 127;
const TRUE_WORDS = ['on', 'yes', 'true', 'y'];
const FALSE_WORDS = ['off', 'no', 'false', 'n'];
const UNSIGNED = new Set(['uint8', 'uint16', 'uint32', 'uint64']);
const SIGNED = new Set(['int', 'int8', 'int16', 'int32', 'int64']);
const UINT64_MAX = (1n << 64n) - 1n;

type Tree = { [key: string]: string | Tree };

/** Splits keyval text into a tree of strings, with keyval's complaints. */
export function keyvalParse(text: string, impliedKey: string): { tree: Tree; help: boolean } {
  const tree: Tree = {};
  let help = false;
  let p = 0;
  let first = true;
  while (p < text.length || first) {
    const keyEnd = scanTo(text, p, '=,');
    const key = text.slice(p, keyEnd);
    if (text[keyEnd] !== '=' && (key === 'help' || key === '?')) {
      help = true;
      p = keyEnd + 1;
      first = false;
      continue;
    }
    // The first parameter without '=' is the implied key's value, up to the first comma
    // (`,,` escapes a comma only in key=value).
    const implied = first && key !== '' && text[keyEnd] !== '=';
    let path = [impliedKey];
    if (!implied) {
      path = key.split('.');
      for (const f of path) {
        if (!/^[A-Za-z0-9_-]+$/.test(f)) throw genericError(`Invalid parameter '${key}'`);
        if (f.length > MAX_KEY_FRAGMENT) throw genericError(`Parameter${path.length > 1 ? ' fragment' : ''} '${f}' is too long`);
      }
      if (text[keyEnd] !== '=') throw genericError(`Expected '=' after parameter '${key}'`);
    }
    let value = implied ? key : '';
    let i = implied ? keyEnd : keyEnd + 1;
    // Sliced between commas, not added a character at a time: a value may be megabytes long.
    for (let from = i; !implied; ) {
      i = scanTo(text, i, ',');
      if (text[i + 1] !== ',' || i >= text.length) {
        value += text.slice(from, i);
        break;
      }
      value += text.slice(from, i + 1);
      i += 2;
      from = i;
    }
    put(tree, path, value);
    p = i + 1;
    first = false;
  }
  return { tree, help };
}

/** Index of the first of `stops` at or after `from`, or the text's length. */
function scanTo(text: string, from: number, stops: ',' | '=,'): number {
  const comma = text.indexOf(',', from);
  const end = comma < 0 ? text.length : comma;
  if (stops === ',') return end;
  const eq = text.indexOf('=', from);
  return eq >= 0 && eq < end ? eq : end;
}

/** Reads and writes only own members: a key `__proto__` is a member like any other (plain
 *  reads and assignments would reach or replace the prototype). */
function own<T>(obj: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function put(tree: Tree, path: string[], value: string): void {
  let t = tree;
  for (let i = 0; i < path.length - 1; i++) {
    const next = own(t, path[i]);
    if (typeof next === 'string') throw genericError(`Parameters '${path.slice(0, i + 1).join('.')}.*' used inconsistently`);
    if (next === undefined) {
      const made: Tree = {};
      setOwn(t, path[i], made);
      t = made;
    } else t = next;
  }
  const last = path[path.length - 1];
  if (typeof own(t, last) === 'object') throw genericError(`Parameter '${path.join('.')}' used inconsistently`);
  setOwn(t, last, value);
}

/** HMP object_add's argument as the handler needs it: a help request, or object-add's
 *  arguments parsed (keyval or JSON) and then checked as a QMP object-add's are. */
export function objectAddArgs(text: string, model: SchemaModel, defined: ReadonlySet<string>, validator: Pick<ArgValidator, 'validate'>): ObjectArgText {
  const parsed = parseObjectKeyval(text, model, defined);
  if (parsed.help) return parsed;
  const checked = validator.validate('object-add', parsed.args);
  if (!checked.ok) throw genericError(checked.desc);
  return { help: false, args: checked.value };
}

/** object_add's argument: a help request, or object-add's arguments typed by the schema (the
 *  caller checks them as a QMP object-add: objectAddArgs). */
export function parseObjectKeyval(text: string, model: SchemaModel, defined: ReadonlySet<string>): ObjectArgText {
  if (text.startsWith('{')) {
    const v = parseOneJson(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw genericError("Invalid parameter type for 'null', expected: object");
    return { help: false, args: v as JsonObject };
  }
  const { tree, help } = keyvalParse(text, 'qom-type');
  const qomType = own(tree, 'qom-type');
  if (help) return { help: true, qomType: typeof qomType === 'string' ? qomType : undefined };
  if (qomType === undefined) throw genericError("Parameter 'qom-type' is missing");
  if (typeof qomType !== 'string') throw genericError("Invalid parameter type for 'qom-type', expected: string");
  const members = branchMembers(model, qomType, defined);
  if (!members) throw genericError(`Parameter 'qom-type' does not accept value '${qomType}'`);
  // The visitor meets `id` (a base member) before the branch's members.
  if (own(tree, 'id') === undefined) throw genericError("Parameter 'id' is missing");
  const args: JsonObject = {};
  for (const [name, type] of members) {
    const v = own(tree, name);
    if (v === undefined) continue;
    setOwn(args, name, typed(name, type, v));
  }
  // Members the branch lacks stay as they are: the object-add check names them.
  for (const [k, v] of Object.entries(tree)) if (!members.has(k)) setOwn(args, k, v as JsonValue);
  return { help: false, args };
}

function typed(name: string, type: string, v: string | Tree): JsonValue {
  if (type.startsWith('[')) {
    if (typeof v === 'string') throw genericError(`Invalid parameter type for '${name}', expected: array`);
    const out: JsonValue[] = [];
    const count = Object.keys(v).length;
    for (let i = 0; i < count; i++) {
      const e = own(v, String(i));
      if (e === undefined) throw genericError(`Parameter '${name}.${i}' missing`);
      out.push(typed(`${name}.${i}`, type.slice(1, -1), e));
    }
    return out;
  }
  if (typeof v !== 'string') return v as JsonValue; // a structure where a scalar belongs: the check names it
  if (type === 'bool') {
    if (TRUE_WORDS.includes(v)) return true;
    if (FALSE_WORDS.includes(v)) return false;
    throw genericError(`Parameter '${name}' expects 'on' or 'off'`);
  }
  if (type === 'size') {
    const n = parseSize(v);
    if (n === undefined) throw genericError(`Parameter '${name}' expects size`);
    return num(n);
  }
  if (UNSIGNED.has(type) || SIGNED.has(type)) {
    const n = parseInt0(v, UNSIGNED.has(type));
    if (n === undefined) throw genericError(`Parameter '${name}' expects integer`);
    return num(n);
  }
  return v;
}

/** qemu_strtou64 / qemu_strtoi64 with base 0; for unsigned, a minus sign wraps modulo 2^64. */
function parseInt0(text: string, unsigned: boolean): bigint | undefined {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return undefined;
  const body = m[2];
  const v = /^0[xX]/.test(body) ? BigInt(body) : body.length > 1 && body.startsWith('0') ? BigInt('0o' + body.slice(1)) : BigInt(body);
  if (unsigned) {
    if (v > UINT64_MAX) return undefined;
    return m[1] === '-' && v !== 0n ? (1n << 64n) - v : v;
  }
  const s = m[1] === '-' ? -v : v;
  return s < -(1n << 63n) || s >= 1n << 63n ? undefined : s;
}

const num = (v: bigint): JsonValue => (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
