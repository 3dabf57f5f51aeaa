// QEMU's QemuOpts option syntax (`-chardev socket,id=mon,path=P,server=on`), parsed with QEMU
// 7.2's rules and error texts: `,,` is a literal comma, a bare first item may name the list's
// implied key, a bare `foo`/`nofoo` is a deprecated short-form boolean (warned about), the
// first `id=` names the options, and every key is checked against the list's parameters.

export type OptType = 'string' | 'bool' | 'number' | 'size';

export interface OptsList {
  /** The list's name, as QEMU's "Duplicate ID 'x' for <name>" prints it. */
  name: string;
  /** The key a bare first item sets (`-chardev socket` sets backend). */
  implied?: string;
  /** Accepted keys and how their values are checked; `id` is always accepted. */
  params: Readonly<Record<string, OptType>>;
}

export type OptValue = string | boolean | bigint;

export interface ParsedOpts {
  id?: string;
  /** Values by key; a repeated key keeps its last value, as QemuOpts' lookups do. */
  values: Map<string, OptValue>;
}

/** A QEMU option error: the text QEMU prints after `<option> <argument>: `, and the hint line
 *  some errors carry. */
export class OptsError extends Error {
  /** Warnings the text gave before the error (QEMU prints them first). */
  warnings: [string, string][] = [];
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export const ID_HINT = "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

/** QEMU's id_wellformed(). */
export function idWellformed(id: string): boolean {
  return /^[A-Za-z][A-Za-z0-9_.-]*$/.test(id);
}

/** QEMU's boolean spellings (qapi_bool_parse). */
export function parseBool(name: string, value: string): boolean {
  if (['on', 'yes', 'true', 'y'].includes(value)) return true;
  if (['off', 'no', 'false', 'n'].includes(value)) return false;
  throw new OptsError(`Parameter '${name}' expects 'on' or 'off'`);
}

const U64_MAX = (1n << 64n) - 1n;

/** qemu_strtou64 with base 0: decimal, 0x hex or 0 octal, a leading '-' wraps around. */
export function parseNumber(name: string, value: string): bigint {
  const m = /^\s*(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(value);
  if (!m) throw new OptsError(`Parameter '${name}' expects a number`);
  const digits = m[2];
  const n = /^0[xX]/.test(digits) ? BigInt(digits) : digits.length > 1 && digits[0] === '0' ? BigInt('0o' + digits.slice(1)) : BigInt(digits);
  if (n > U64_MAX) throw new OptsError(`Parameter '${name}' expects a number`);
  return m[1] === '-' ? (U64_MAX + 1n - n) & U64_MAX : n;
}

/** One value up to the next single comma; `,,` stands for a comma. Returns it and the index
 *  after its terminating comma (or the end). */
function optValue(text: string, from: number): [string, number] {
  let out = '';
  let i = from;
  for (; i < text.length; i++) {
    if (text[i] === ',') {
      if (text[i + 1] !== ',') return [out, i + 1];
      i++;
    }
    out += text[i];
  }
  return [out, i];
}

/**
 * Parses `text` for `list`. `warnOnFlag` is QEMU's: true for -chardev, -mon and -name, false
 * for the spec of -qmp. Returns the options and the warnings QEMU prints (each a message and
 * a hint line) in order.
 * @throws OptsError with QEMU's text for the first bad item.
 */
export function parseOpts(list: OptsList, text: string, warnOnFlag: boolean, ids?: Set<string>): { opts: ParsedOpts; warnings: [string, string][] } {
  const items: [string, string][] = [];
  const warnings: [string, string][] = [];
  let i = 0;
  let first = true;
  while (i < text.length) {
    const rest = text.slice(i);
    let len = rest.search(/[=,]/);
    if (len < 0) len = rest.length;
    if (rest[len] !== '=') {
      if (first && list.implied) {
        const [v, next] = optValue(text, i);
        items.push([list.implied, v]);
        i = next;
      } else {
        let name = rest.slice(0, len);
        let value = 'on';
        const printed = name;
        if (name.startsWith('no')) {
          name = name.slice(2);
          value = 'off';
        }
        if (warnOnFlag) warnings.push([`warning: short-form boolean option '${printed}' deprecated`, `Please use ${name}=${value} instead`]);
        items.push([name, value]);
        i += len + (rest[len] === ',' ? 1 : 0);
      }
    } else {
      const name = rest.slice(0, len);
      const [v, next] = optValue(text, i + len + 1);
      items.push([name, v]);
      i = next;
    }
    first = false;
  }
  try {
    return { opts: checkItems(list, items, ids), warnings };
  } catch (e) {
    if (e instanceof OptsError) e.warnings = warnings;
    throw e;
  }
}

function checkItems(list: OptsList, items: [string, string][], ids?: Set<string>): ParsedOpts {
  // The id is looked for first, and the first one counts (QEMU's opts_parse_id).
  const idItem = items.find(([k]) => k === 'id');
  const id = idItem?.[1];
  if (id !== undefined && !idWellformed(id)) throw new OptsError("Parameter 'id' expects an identifier", ID_HINT);
  if (id !== undefined && ids) {
    if (ids.has(id)) throw new OptsError(`Duplicate ID '${id}' for ${list.name}`);
    ids.add(id);
  }
  const values = new Map<string, OptValue>();
  for (const [name, value] of items) {
    if (name === 'id') continue;
    const type = list.params[name];
    if (type === undefined) throw new OptsError(`Invalid parameter '${name}'`);
    if (type === 'bool') values.set(name, parseBool(name, value));
    else if (type === 'number') values.set(name, parseNumber(name, value));
    else if (type === 'size') {
      if (!/^[0-9]+(\.[0-9]+)?[kKMGTPE]?$/.test(value)) throw new OptsError(`Parameter '${name}' expects a non-negative number below 2^64`);
      values.set(name, value);
    } else values.set(name, value);
  }
  return { id, values };
}
