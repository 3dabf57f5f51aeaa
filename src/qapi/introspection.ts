// Generates the query-qmp-schema answer from the model (qemu-facts §3.6): commands and
// events in definition order, then the types they use in first-use order, non-builtin type
// names masked as numbers, integer widths folded into `int`, conditions evaluated.
import { Entity, Feature, IfCond, SchemaModel, TypeEntity, condHolds } from './model';

export type SchemaInfo = Record<string, unknown> & { name: string; 'meta-type': string };

const INT_TYPES = new Set(['int', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'size']);

export function buildIntrospection(model: SchemaModel, defined: ReadonlySet<string>): SchemaInfo[] {
  const holds = (c: IfCond | undefined): boolean => condHolds(c, defined);
  const features = (fs: Feature[]): string[] => fs.filter((f) => holds(f.if)).map((f) => f.name);
  const withFeatures = (o: Record<string, unknown>, fs: Feature[]): Record<string, unknown> => {
    const f = features(fs);
    if (f.length > 0) o.features = f;
    return o;
  };
  const names = new Map<string, string>();
  const queue: string[] = [];
  const queued = new Set<string>();

  /** QEMU's _use_type: folds ints, queues the type, returns its (masked) name. */
  const use = (typeName: string): string => {
    let t = typeName;
    if (INT_TYPES.has(t)) t = 'int';
    else if (t.startsWith('[') && INT_TYPES.has(t.slice(1, -1))) t = '[int]';
    if (!queued.has(t)) {
      queued.add(t);
      queue.push(t);
    }
    const ent = model.entities.get(t);
    if (!ent && t === '[int]') return '[int]';
    if (ent?.meta === 'builtin') return t;
    if (ent?.meta === 'array' || t.startsWith('[')) return `[${use(t.slice(1, -1))}]`;
    let n = names.get(t);
    if (n === undefined) names.set(t, (n = String(names.size)));
    return n;
  };

  const out: SchemaInfo[] = [];
  for (const name of model.definitionOrder) {
    const e = model.entities.get(name) as Entity;
    if (!holds(e.if)) continue;
    if (e.meta === 'command') {
      const o: Record<string, unknown> = { name, 'meta-type': 'command', 'arg-type': use(e.argType ?? 'q_empty'), 'ret-type': use(e.retType ?? 'q_empty') };
      if (e.allowOob) o['allow-oob'] = true;
      out.push(withFeatures(o, e.features) as SchemaInfo);
    } else if (e.meta === 'event') {
      out.push(withFeatures({ name, 'meta-type': 'event', 'arg-type': use(e.argType ?? 'q_empty') }, e.features) as SchemaInfo);
    }
  }
  while (queue.length > 0) {
    const t = queue.shift() as string;
    const masked = use(t);
    const ent = model.entities.get(t) as TypeEntity | undefined;
    if (!ent) {
      if (t === '[int]') out.push({ name: '[int]', 'meta-type': 'array', 'element-type': 'int' });
      continue;
    }
    switch (ent.meta) {
      case 'builtin':
        out.push({ name: t, 'meta-type': 'builtin', 'json-type': ent.jsonType });
        break;
      case 'enum': {
        const vals = ent.values.filter((v) => holds(v.if));
        out.push(
          withFeatures(
            { name: masked, 'meta-type': 'enum', members: vals.map((v) => withFeatures({ name: v.name }, v.features)), values: vals.map((v) => v.name) },
            ent.features,
          ) as SchemaInfo,
        );
        break;
      }
      case 'array':
        out.push({ name: masked, 'meta-type': 'array', 'element-type': use(ent.elementType) });
        break;
      case 'object': {
        const members = ent.members
          .filter((m) => holds(m.if))
          .map((m) => {
            const o: Record<string, unknown> = { name: m.name, type: use(m.type) };
            if (m.optional) o.default = null;
            return withFeatures(o, m.features);
          });
        const o: Record<string, unknown> = { name: masked, 'meta-type': 'object', members };
        if (ent.tag !== undefined) {
          o.tag = ent.tag;
          o.variants = (ent.variants ?? []).filter((v) => holds(v.if)).map((v) => ({ case: v.case, type: use(v.type) }));
        }
        out.push(withFeatures(o, ent.features) as SchemaInfo);
        break;
      }
      case 'alternate':
        out.push(withFeatures({ name: masked, 'meta-type': 'alternate', members: ent.members.filter((m) => holds(m.if)).map((m) => ({ type: use(m.type) })) }, ent.features) as SchemaInfo);
        break;
    }
  }
  return out;
}

export interface CommandSpec {
  name: string;
  argType?: string;
  retType?: string;
  boxed: boolean;
  allowOob: boolean;
  allowPreconfig: boolean;
  features: string[];
}

/** The commands whose condition holds, in definition order. */
export function buildCommandTable(model: SchemaModel, defined: ReadonlySet<string>): CommandSpec[] {
  const out: CommandSpec[] = [];
  for (const name of model.definitionOrder) {
    const e = model.entities.get(name);
    if (e?.meta !== 'command' || !condHolds(e.if, defined)) continue;
    out.push({
      name,
      argType: e.argType,
      retType: e.retType,
      boxed: e.boxed,
      allowOob: e.allowOob,
      allowPreconfig: e.allowPreconfig,
      features: e.features.filter((f) => condHolds(f.if, defined)).map((f) => f.name),
    });
  }
  return out;
}
