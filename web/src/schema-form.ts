// A form for a command, generated from query-qmp-schema introspection: object-add's argument
// type is a union whose tag (qom-type) selects a branch; every member of the base and of the
// chosen branch becomes a field by its introspected type (enum → select, bool → tri-state,
// int → digits with optional K/M/G/T suffix, arrays → comma lists, objects → nested fields,
// anything else → JSON). New types or properties in the schema appear without UI changes.
import { h, Child } from './dom';
import type { Json, JsonObject } from './qmp';

export interface SchemaMember {
  name: string;
  type: string;
  default?: Json;
  features?: string[];
}

export interface SchemaInfo {
  name: string;
  'meta-type': 'builtin' | 'enum' | 'array' | 'object' | 'alternate' | 'command' | 'event';
  'json-type'?: string;
  values?: string[];
  'element-type'?: string;
  members?: SchemaMember[];
  tag?: string;
  variants?: { case: string; type: string }[];
  'arg-type'?: string;
  features?: string[];
}

export class Schema {
  private readonly byName = new Map<string, SchemaInfo>();
  constructor(list: SchemaInfo[]) {
    for (const e of list) this.byName.set(e.name, e);
  }
  get(name: string): SchemaInfo | undefined {
    return this.byName.get(name);
  }
  /** The argument type of a command, if it has one. */
  argType(command: string): SchemaInfo | undefined {
    const c = this.byName.get(command);
    return c && c['arg-type'] ? this.byName.get(c['arg-type']) : undefined;
  }
}

/** Exact JSON text for a value the form produced: integers stay digit strings. */
export class RawNumber {
  constructor(readonly text: string) {}
}
/** A value the user typed as JSON, sent as typed (re-encoded). */
export class JsonLiteral {
  constructor(readonly value: Json) {}
}
export type FormValue = null | boolean | string | RawNumber | JsonLiteral | FormValue[] | { [k: string]: FormValue };

export function encodeFormValue(v: FormValue): string {
  if (v instanceof RawNumber) return v.text;
  if (v instanceof JsonLiteral) return JSON.stringify(v.value);
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(encodeFormValue).join(',')}]`;
  return `{${Object.entries(v as Record<string, FormValue>)
    .map(([k, x]) => `${JSON.stringify(k)}:${encodeFormValue(x)}`)
    .join(',')}}`;
}

const SUFFIX: Record<string, bigint> = { '': 1n, b: 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n, p: 1n << 50n, e: 1n << 60n };

/** "4096", "-3", "1G", "512M", "1.5G" → exact digits; undefined when not a number. */
export function parseInteger(text: string): string | undefined {
  const t = text.trim();
  if (/^-?\d+$/.test(t)) return BigInt(t).toString();
  const m = /^(\d+)(?:\.(\d+))?\s*([bkmgtpe])(?:i?b)?$/i.exec(t);
  if (!m) return undefined;
  const mul = SUFFIX[m[3].toLowerCase()];
  const frac = m[2] ?? '';
  const scaled = (BigInt(m[1] + frac) * mul) / 10n ** BigInt(frac.length);
  return scaled.toString();
}

class FieldError extends Error {}

/** One generated field: its element and how to read its value (undefined = leave out). */
interface Field {
  el: HTMLElement;
  read(): FormValue | undefined;
}

function label(name: string, optional: boolean, typeText: string, input: HTMLElement, hint?: string): HTMLElement {
  return h(
    'label',
    { class: 'field', 'data-member': name },
    h('span', { class: 'name' }, name, optional ? '' : h('span', { class: 'req', title: 'required' }, ' *')),
    input,
    h('span', { class: 'type' }, typeText, hint ? ` · ${hint}` : ''),
  );
}

function typeName(schema: Schema, type: string): string {
  const t = schema.get(type);
  if (!t) return type;
  if (t['meta-type'] === 'builtin') return t.name;
  if (t['meta-type'] === 'array') return `[${typeName(schema, t['element-type'] ?? '?')}]`;
  return t['meta-type'];
}

export function fieldFor(schema: Schema, m: SchemaMember, path: string): Field {
  const optional = 'default' in m;
  const t = schema.get(m.type);
  const id = `f-${path}`;
  const meta = t?.['meta-type'];
  const deprecated = m.features?.includes('deprecated');
  const tn = typeName(schema, m.type) + (deprecated ? ' (deprecated)' : '');

  if (meta === 'enum' || (meta === 'builtin' && t?.['json-type'] === 'boolean')) {
    const values = meta === 'enum' ? (t?.values ?? []) : ['true', 'false'];
    const sel = h('select', { id, name: m.name }, optional ? h('option', { value: '' }, '(default)') : null, ...values.map((v) => h('option', { value: v }, v)));
    return {
      el: label(m.name, optional, tn, sel),
      read: () => {
        if (sel.value === '') return undefined;
        return meta === 'enum' ? sel.value : sel.value === 'true';
      },
    };
  }
  if (meta === 'builtin' && (t?.['json-type'] === 'int' || t?.['json-type'] === 'number')) {
    const isInt = t?.['json-type'] === 'int';
    const inp = h('input', { id, name: m.name, type: 'text', inputmode: 'numeric', autocomplete: 'off', placeholder: isInt ? 'e.g. 1073741824 or 1G' : 'number' });
    return {
      el: label(m.name, optional, tn, inp, isInt ? 'K/M/G/T suffixes allowed' : undefined),
      read: () => {
        const v = inp.value.trim();
        if (v === '') {
          if (!optional) throw new FieldError(`${m.name} is required`);
          return undefined;
        }
        if (isInt) {
          const n = parseInteger(v);
          if (n === undefined) throw new FieldError(`${m.name}: '${v}' is not an integer`);
          return new RawNumber(n);
        }
        if (!Number.isFinite(Number(v))) throw new FieldError(`${m.name}: '${v}' is not a number`);
        return new RawNumber(String(Number(v)));
      },
    };
  }
  if (meta === 'builtin' && t?.['json-type'] === 'string') {
    const inp = h('input', { id, name: m.name, type: 'text', autocomplete: 'off' });
    return {
      el: label(m.name, optional, tn, inp),
      read: () => {
        if (inp.value === '') {
          if (!optional) throw new FieldError(`${m.name} is required`);
          return undefined;
        }
        return inp.value;
      },
    };
  }
  if (meta === 'array') {
    const elem = schema.get(t?.['element-type'] ?? '');
    const scalar = elem?.['meta-type'] === 'enum' || (elem?.['meta-type'] === 'builtin' && ['int', 'string', 'number', 'boolean'].includes(elem['json-type'] ?? ''));
    const inp = h('input', { id, name: m.name, type: 'text', autocomplete: 'off', placeholder: scalar ? 'comma-separated, e.g. 0,1' : 'JSON array' });
    return {
      el: label(m.name, optional, tn, inp, scalar ? 'comma-separated' : 'JSON'),
      read: () => {
        const v = inp.value.trim();
        if (v === '') {
          if (!optional) throw new FieldError(`${m.name} is required`);
          return undefined;
        }
        if (!scalar || v.startsWith('[')) return parseJsonField(m.name, v);
        return v.split(',').map((part) => {
          const p = part.trim();
          const jt = elem?.['json-type'];
          if (jt === 'int') {
            const n = parseInteger(p);
            if (n === undefined) throw new FieldError(`${m.name}: '${p}' is not an integer`);
            return new RawNumber(n);
          }
          if (jt === 'number') return new RawNumber(String(Number(p)));
          if (jt === 'boolean') return p === 'true';
          return p;
        });
      },
    };
  }
  if (meta === 'object' && !t?.variants) {
    const subs = (t?.members ?? []).map((sm) => ({ m: sm, f: fieldFor(schema, sm, `${path}.${sm.name}`) }));
    const include = h('input', { type: 'checkbox', id: `${id}-on` });
    if (!optional) include.checked = true;
    const box = h('fieldset', { class: 'nested', 'data-member': m.name }, h('legend', {}, optional ? include : null, ` ${m.name} `, h('span', { class: 'type' }, 'object')), ...subs.map((s) => s.f.el));
    return {
      el: box,
      read: () => {
        if (optional && !include.checked) return undefined;
        const out: Record<string, FormValue> = {};
        for (const s of subs) {
          const v = s.f.read();
          if (v !== undefined) out[s.m.name] = v;
        }
        return out;
      },
    };
  }
  // alternate, 'any', 'null', flat unions: JSON text, checked for syntax here and for meaning
  // by the daemon (its error text comes back verbatim).
  const inp = h('input', { id, name: m.name, type: 'text', autocomplete: 'off', placeholder: 'JSON value' });
  return {
    el: label(m.name, optional, tn, inp, 'JSON'),
    read: () => {
      const v = inp.value.trim();
      if (v === '') {
        if (!optional) throw new FieldError(`${m.name} is required`);
        return undefined;
      }
      return parseJsonField(m.name, v);
    },
  };
}

function parseJsonField(name: string, text: string): FormValue {
  try {
    return new JsonLiteral(JSON.parse(text) as Json);
  } catch {
    throw new FieldError(`${name}: not valid JSON`);
  }
}

export interface UnionForm {
  el: HTMLElement;
  /** The chosen tag value (e.g. the qom-type). */
  tag(): string;
  /** The arguments as exact JSON text; throws with a message for the user on bad input. */
  argsJson(): string;
  reset(): void;
}

/** The form for a command whose argument type is a (possibly tagged) object. */
export function commandForm(schema: Schema, command: string, onTagChange?: () => void): UnionForm | undefined {
  const arg = schema.argType(command);
  if (!arg || arg['meta-type'] !== 'object') return undefined;
  const base = arg.members ?? [];
  const tagName = arg.tag;
  const branchBox = h('div', { class: 'branch' });
  let baseFields: { m: SchemaMember; f: Field }[] = [];
  let branchFields: { m: SchemaMember; f: Field }[] = [];
  let tagSelect: HTMLSelectElement | undefined;

  const renderBranch = (): void => {
    const v = tagSelect?.value ?? '';
    const variant = arg.variants?.find((x) => x.case === v);
    const members = variant ? (schema.get(variant.type)?.members ?? []) : [];
    // Required members first, each group in schema order: what must be filled is on top.
    const ordered = [...members.filter((m) => !('default' in m)), ...members.filter((m) => 'default' in m)];
    branchFields = ordered.map((m) => ({ m, f: fieldFor(schema, m, `${command}.${m.name}`) }));
    const children: Child[] = branchFields.map((b) => b.f.el);
    branchBox.replaceChildren(...(children as Node[]));
    onTagChange?.();
  };

  const build = (): HTMLElement[] => {
    baseFields = [];
    const els: HTMLElement[] = [];
    for (const m of base) {
      if (m.name === tagName) {
        const t = schema.get(m.type);
        tagSelect = h('select', { id: `f-${command}.${m.name}`, name: m.name }, ...(t?.values ?? []).map((v) => h('option', { value: v }, v)));
        tagSelect.addEventListener('change', renderBranch);
        els.push(label(m.name, false, 'enum', tagSelect));
        continue;
      }
      const f = fieldFor(schema, m, `${command}.${m.name}`);
      baseFields.push({ m, f });
      els.push(f.el);
    }
    return els;
  };

  const el = h('div', { class: 'schema-form' }, ...build(), branchBox);
  renderBranch();
  return {
    el,
    tag: () => tagSelect?.value ?? '',
    argsJson: () => {
      const out: Record<string, FormValue> = {};
      if (tagName && tagSelect) out[tagName] = tagSelect.value;
      for (const { m, f } of [...baseFields, ...branchFields]) {
        const v = f.read();
        if (v !== undefined) out[m.name] = v;
      }
      return encodeFormValue(out);
    },
    reset: () => {
      for (const inp of el.querySelectorAll<HTMLInputElement>('input[type=text]')) inp.value = '';
      for (const sel of branchBox.querySelectorAll<HTMLSelectElement>('select')) sel.value = sel.options[0]?.value ?? '';
    },
  };
}

export function isFieldError(e: unknown): e is Error {
  return e instanceof FieldError;
}

export type { JsonObject };
