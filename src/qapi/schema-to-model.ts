// Turns the checked entities into the SchemaModel that generators consume (model.ts): plain
// data, names instead of object references, optional keys omitted rather than undefined.
// Runs only after schema.ts's check succeeded, so every reference is resolved.

import { Definition } from './expr';
import * as M from './model';
import { CheckedSchema, checkSchema } from './schema';
import { Ent, FeatureEnt, MemberEnt } from './schema-entities';
import { QapiSourceInfo, infoDefn } from './source';
import { QapiDoc } from './doc';

export function buildModel(defs: readonly Definition[], docs: readonly QapiDoc[], pragmas: M.Pragmas): M.SchemaModel {
  const checked: CheckedSchema = checkSchema(defs, docs, pragmas);
  const entities = new Map<string, M.Entity>();
  for (const e of checked.entities) entities.set(e.name, toEntity(e));
  return { entities, definitionOrder: defs.map((d) => d.name), pragmas };
}

/** Copies `if` and `doc` only when present, so models compare and print cleanly. */
function opt<T extends object>(obj: T, extra: { if?: M.IfCond; doc?: string; info?: QapiSourceInfo }): T {
  const out: T & { if?: M.IfCond; doc?: string; info?: M.SourceInfo } = obj;
  if (extra.if !== undefined) out.if = extra.if;
  if (extra.doc !== undefined) out.doc = extra.doc;
  if (extra.info !== undefined) {
    const defn = infoDefn(extra.info);
    out.info = defn === undefined ? { file: extra.info.file, line: extra.info.line } : { file: extra.info.file, line: extra.info.line, defn };
  }
  return out;
}

function features(fs: readonly FeatureEnt[]): M.Feature[] {
  return fs.map((f) => opt({ name: f.name }, { if: f.if }));
}

function member(m: MemberEnt): M.Member {
  return opt({ name: m.name, type: m.typeName, optional: m.optional, features: features(m.features) }, { if: m.if, doc: m.doc });
}

function toEntity(e: Ent): M.Entity {
  const common = { name: e.name, features: features(e.features) };
  const extra = { if: e.if, doc: e.doc?.text, info: e.info };
  switch (e.kind) {
    case 'builtin':
      return { meta: 'builtin', ...common, jsonType: e.jsonType };
    case 'enum': {
      const values = e.values.map((v) => opt({ name: v.name, features: features(v.features) }, { if: v.if, doc: v.doc }));
      const en: M.EnumType = { meta: 'enum', ...common, values };
      if (e.prefix !== undefined) en.prefix = e.prefix;
      return opt(en, extra);
    }
    case 'array':
      // An array is as conditional as its element type (QEMU: ArrayType.ifcond).
      return opt({ meta: 'array', ...common, elementType: e.elementName }, { if: e.element?.if, info: e.info });
    case 'object': {
      const o: M.ObjectType = { meta: 'object', ...common, members: e.members.map(member), implicit: e.name.startsWith('q_') };
      if (e.baseName !== undefined) o.base = e.baseName;
      if (e.variants) {
        o.tag = e.tagName;
        o.variants = e.variants.map((v) => opt({ case: v.name, type: v.typeName }, { if: v.if }));
      }
      return opt(o, extra);
    }
    case 'alternate': {
      const members = e.variants.map((v) => opt({ name: v.name, type: v.typeName }, { if: v.if, doc: v.doc }));
      return opt({ meta: 'alternate', ...common, members }, extra);
    }
    case 'command': {
      const c: M.Command = {
        meta: 'command', ...common, boxed: e.boxed, allowOob: e.allowOob, allowPreconfig: e.allowPreconfig,
        coroutine: e.coroutine, gen: e.gen, successResponse: e.successResponse,
      };
      if (e.argName !== undefined) c.argType = e.argName;
      if (e.retName !== undefined) c.retType = e.retName;
      return opt(c, extra);
    }
    case 'event': {
      const ev: M.Event = { meta: 'event', ...common, boxed: e.boxed };
      if (e.argName !== undefined) ev.argType = e.argName;
      return opt(ev, extra);
    }
  }
}
