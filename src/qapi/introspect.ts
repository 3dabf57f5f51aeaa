// Back end: the query-qmp-schema answer (qemu-facts §3.6) built from the semantic model.
// Reproduces QEMU's generator: which types appear, their masked names and order, integer
// folding, and which parts a build's `if` conditions remove. Printing (QDict member order,
// CRLF) is the QMP writer's job; the deprecated-output=hide filter is the command's.
import { Entity, Feature, IfCond, SchemaModel, TypeEntity, condHolds } from './model';

/** Introspection json-type of a builtin (qapi/introspect.json JSONType). */
export type SchemaInfoJsonType = 'string' | 'number' | 'int' | 'boolean' | 'null' | 'object' | 'array' | 'value';

export interface SchemaInfoBuiltin {
  'json-type': SchemaInfoJsonType;
  'meta-type': 'builtin';
  name: string;
}

export interface SchemaInfoEnumMember {
  features?: string[];
  name: string;
}

export interface SchemaInfoEnum {
  features?: string[];
  members: SchemaInfoEnumMember[];
  'meta-type': 'enum';
  name: string;
  /** Deprecated twin of `members`, still sent (§3.6). */
  values: string[];
}

export interface SchemaInfoArray {
  'element-type': string;
  'meta-type': 'array';
  name: string;
}

export interface SchemaInfoObjectMember {
  /** Present (and null) exactly when the member is optional. */
  default?: null;
  features?: string[];
  name: string;
  type: string;
}

export interface SchemaInfoObjectVariant {
  case: string;
  type: string;
}

export interface SchemaInfoObject {
  features?: string[];
  members: SchemaInfoObjectMember[];
  'meta-type': 'object';
  name: string;
  tag?: string;
  variants?: SchemaInfoObjectVariant[];
}

export interface SchemaInfoAlternateMember {
  type: string;
}

export interface SchemaInfoAlternate {
  features?: string[];
  members: SchemaInfoAlternateMember[];
  'meta-type': 'alternate';
  name: string;
}

export interface SchemaInfoCommand {
  'allow-oob'?: true;
  'arg-type': string;
  features?: string[];
  'meta-type': 'command';
  name: string;
  'ret-type': string;
}

export interface SchemaInfoEvent {
  'arg-type': string;
  features?: string[];
  'meta-type': 'event';
  name: string;
}

export type SchemaInfo =
  | SchemaInfoBuiltin
  | SchemaInfoEnum
  | SchemaInfoArray
  | SchemaInfoObject
  | SchemaInfoAlternate
  | SchemaInfoCommand
  | SchemaInfoEvent;

/** Builtins whose json-type is int: all fold into `int` (§3.4, §3.6). */
const INT_TYPES: ReadonlySet<string> = new Set(['int', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'size']);
const EMPTY_OBJECT = 'q_empty';
const INT_LIST = '[int]';

/** A generated piece plus the condition QEMU would wrap it in (`#if`). */
interface Guarded<T> {
  value: T;
  if?: IfCond;
}

/**
 * The SchemaInfo list of query-qmp-schema for a build with the `defined` config symbols.
 *
 * Like QEMU, the *shape* is fixed when the generator runs, before any build condition is
 * known: the set of types (those reachable from any command or event), their order (commands
 * and events in definition order, then types in first-use order) and their masked names
 * ("0", "1", ... in order of first reference) are computed over the whole schema. Conditions
 * then only remove entries (QEMU's `#if` around QLIT entries), so a build without some symbol
 * can show gaps in the numbering, and a `features` list whose features are all conditioned
 * away stays as `[]`. Keys are inserted in sorted order, as QEMU's QLIT dicts are
 * (introspect.py `_tree_to_qlit` sorts them), which decides ties in QDict print order (§1.1).
 */
export function buildIntrospection(model: SchemaModel, defined: ReadonlySet<string>): SchemaInfo[] {
  const holds = (c: IfCond | undefined): boolean => condHolds(c, defined);
  const masked = new Map<string, string>();
  const used: string[] = [];
  const usedSet = new Set<string>();

  const maskName = (name: string): string => {
    let n = masked.get(name);
    if (n === undefined) {
      n = String(masked.size);
      masked.set(name, n);
    }
    return n;
  };

  const isBuiltin = (name: string): boolean => model.entities.get(name)?.meta === 'builtin';
  const isArray = (name: string): boolean => name.startsWith('[');
  const elementOf = (name: string): string => {
    const e = model.entities.get(name);
    return e?.meta === 'array' ? e.elementType : name.slice(1, -1);
  };

  /** QEMU's _use_type: fold integers, queue the type on first use, return its wire name. */
  const useType = (name: string): string => {
    let t = name;
    if (INT_TYPES.has(t)) t = 'int';
    else if (isArray(t) && INT_TYPES.has(elementOf(t))) t = INT_LIST;
    if (!usedSet.has(t)) {
      usedSet.add(t);
      used.push(t);
    }
    if (isBuiltin(t)) return t;
    if (isArray(t)) return `[${useType(elementOf(t))}]`;
    return maskName(t);
  };

  /** `features` as QEMU emits it: present when the schema declares any, filtered by the build. */
  const withFeatures = <T extends object>(obj: T, features: Feature[]): T & { features?: string[] } => {
    if (features.length === 0) return obj;
    return sortKeys({ ...obj, features: features.filter((f) => holds(f.if)).map((f) => f.name) });
  };

  const out: Guarded<SchemaInfo>[] = [];

  for (const name of model.definitionOrder) {
    const e = model.entities.get(name);
    if (e?.meta === 'command') {
      const argType = useType(e.argType ?? EMPTY_OBJECT);
      const retType = useType(e.retType ?? EMPTY_OBJECT);
      const info: SchemaInfoCommand = e.allowOob
        ? { 'allow-oob': true, 'arg-type': argType, 'meta-type': 'command', name, 'ret-type': retType }
        : { 'arg-type': argType, 'meta-type': 'command', name, 'ret-type': retType };
      out.push({ value: withFeatures(info, e.features), if: e.if });
    } else if (e?.meta === 'event') {
      const info: SchemaInfoEvent = { 'arg-type': useType(e.argType ?? EMPTY_OBJECT), 'meta-type': 'event', name };
      out.push({ value: withFeatures(info, e.features), if: e.if });
    }
  }

  // The queue grows while it is walked: a type's members queue further types (visit_end).
  for (let i = 0; i < used.length; i++) {
    const g = typeInfo(used[i]);
    if (g !== undefined) out.push(g);
  }
  return out.filter((g) => holds(g.if)).map((g) => g.value);

  function typeInfo(name: string): Guarded<SchemaInfo> | undefined {
    const e: Entity | undefined = model.entities.get(name);
    if (e === undefined) {
      // `[int]` (QEMU's intList) and `q_empty` exist in every QEMU schema; a model may omit
      // them when nothing names them directly.
      if (name === INT_LIST) return { value: { 'element-type': useType('int'), 'meta-type': 'array', name: INT_LIST } };
      if (name === EMPTY_OBJECT) return { value: { members: [], 'meta-type': 'object', name: maskName(name) } };
      throw new Error(`introspection: unknown type '${name}'`);
    }
    const t = e as TypeEntity;
    switch (t.meta) {
      case 'builtin':
        return { value: { 'json-type': t.jsonType, 'meta-type': 'builtin', name } };
      case 'array': {
        const elem = useType(t.elementType);
        return { value: { 'element-type': elem, 'meta-type': 'array', name: `[${elem}]` }, if: t.if };
      }
      case 'enum': {
        const values = t.values.filter((v) => holds(v.if));
        const info: SchemaInfoEnum = {
          members: values.map((v) => withFeatures({ name: v.name }, v.features)),
          'meta-type': 'enum',
          name: maskName(name),
          values: values.map((v) => v.name),
        };
        return { value: withFeatures(info, t.features), if: t.if };
      }
      case 'object': {
        // Every member and branch is *used* (numbered, queued) even when its condition fails.
        const members = t.members.map((m) => {
          const type = useType(m.type);
          const mi: SchemaInfoObjectMember = m.optional ? { default: null, name: m.name, type } : { name: m.name, type };
          return { value: withFeatures(mi, m.features), if: m.if };
        });
        const variants = (t.variants ?? []).map((v) => ({ value: { case: v.case, type: useType(v.type) }, if: v.if }));
        const info: SchemaInfoObject = {
          members: members.filter((m) => holds(m.if)).map((m) => m.value),
          'meta-type': 'object',
          name: maskName(name),
        };
        if (t.tag !== undefined) {
          info.tag = t.tag;
          info.variants = variants.filter((v) => holds(v.if)).map((v) => v.value);
        }
        return { value: withFeatures(info, t.features), if: t.if };
      }
      case 'alternate': {
        const members = t.members.map((m) => ({ value: { type: useType(m.type) }, if: m.if }));
        const info: SchemaInfoAlternate = {
          members: members.filter((m) => holds(m.if)).map((m) => m.value),
          'meta-type': 'alternate',
          name: maskName(name),
        };
        return { value: withFeatures(info, t.features), if: t.if };
      }
    }
    return undefined;
  }
}

/** A copy with keys inserted in sorted order (QLIT dict order, see buildIntrospection). */
function sortKeys<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o).sort()) out[k] = (o as Record<string, unknown>)[k];
  return out as T;
}
