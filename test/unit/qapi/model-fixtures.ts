// Test helper: builds SchemaModels by hand, the way the front end would produce them from a
// schema (model.ts contract): builtins, QType and q_empty predefined; `*name` = optional;
// struct bases flattened; implicit `q_obj_*` types for inline data; implicit q_empty branches
// for enum values a union does not cover; array entities for every `[T]` used.
import {
  AlternateType,
  ArrayType,
  BuiltinType,
  Command,
  Entity,
  EnumType,
  Event,
  Feature,
  IfCond,
  Member,
  ObjectType,
  SchemaModel,
} from '../../../src/qapi/model';

export type FeatureSpec = string | { name: string; if?: IfCond };
export type MemberSpec = string | { type: string; if?: IfCond; features?: FeatureSpec[]; doc?: string };
export type ValueSpec = string | { name: string; if?: IfCond; features?: FeatureSpec[] };
export type BranchSpec = string | { type: string; if?: IfCond };

interface DefOpts {
  if?: IfCond;
  features?: FeatureSpec[];
  doc?: string;
}

const BUILTINS: [string, BuiltinType['jsonType']][] = [
  ['str', 'string'],
  ['number', 'number'],
  ['int', 'int'],
  ['int8', 'int'],
  ['int16', 'int'],
  ['int32', 'int'],
  ['int64', 'int'],
  ['uint8', 'int'],
  ['uint16', 'int'],
  ['uint32', 'int'],
  ['uint64', 'int'],
  ['size', 'int'],
  ['bool', 'boolean'],
  ['any', 'value'],
  ['null', 'null'],
];

function features(fs: FeatureSpec[] | undefined): Feature[] {
  return (fs ?? []).map((f) => (typeof f === 'string' ? { name: f } : f.if === undefined ? { name: f.name } : { name: f.name, if: f.if }));
}

function withOpts<T extends object>(o: T, opts: DefOpts | undefined): T {
  const out = o as T & { if?: IfCond; doc?: string };
  if (opts?.if !== undefined) out.if = opts.if;
  if (opts?.doc !== undefined) out.doc = opts.doc;
  return out;
}

export class ModelBuilder {
  private readonly entities = new Map<string, Entity>();
  private readonly order: string[] = [];

  constructor() {
    for (const [name, jsonType] of BUILTINS) this.entities.set(name, { meta: 'builtin', name, features: [], jsonType });
    this.entities.set('QType', {
      meta: 'enum',
      name: 'QType',
      features: [],
      values: ['none', 'qnull', 'qnum', 'qstring', 'qdict', 'qlist', 'qbool'].map((n) => ({ name: n, features: [] })),
    });
    this.entities.set('q_empty', { meta: 'object', name: 'q_empty', features: [], members: [], implicit: true });
  }

  private define(e: Entity): this {
    if (this.entities.has(e.name)) throw new Error(`fixture: '${e.name}' is already defined`);
    this.entities.set(e.name, e);
    this.order.push(e.name);
    return this;
  }

  private members(data: Record<string, MemberSpec>): Member[] {
    return Object.entries(data).map(([key, spec]) => {
      const optional = key.startsWith('*');
      const s = typeof spec === 'string' ? { type: spec } : spec;
      this.useType(s.type);
      const m: Member = { name: optional ? key.slice(1) : key, type: s.type, optional, features: features(s.features) };
      if (s.if !== undefined) m.if = s.if;
      if (s.doc !== undefined) m.doc = s.doc;
      return m;
    });
  }

  /** Registers the array entity for `[T]` (as conditional as T, like QEMU's array types). */
  private useType(type: string): void {
    if (!type.startsWith('[') || this.entities.has(type)) return;
    const elementType = type.slice(1, -1);
    const a: ArrayType = { meta: 'array', name: type, features: [], elementType };
    const elemIf = (this.entities.get(elementType) as { if?: IfCond } | undefined)?.if;
    if (elemIf !== undefined) a.if = elemIf;
    this.entities.set(type, a);
  }

  private objectOf(name: string): ObjectType {
    const e = this.entities.get(name);
    if (e?.meta !== 'object') throw new Error(`fixture: '${name}' is not an object type (define it first)`);
    return e;
  }

  enum(name: string, values: ValueSpec[], opts?: DefOpts): this {
    const e: EnumType = {
      meta: 'enum',
      name,
      features: features(opts?.features),
      values: values.map((v) => {
        const s = typeof v === 'string' ? { name: v } : v;
        const out: EnumType['values'][number] = { name: s.name, features: features(s.features) };
        if (s.if !== undefined) out.if = s.if;
        return out;
      }),
    };
    return this.define(withOpts(e, opts));
  }

  struct(name: string, data: Record<string, MemberSpec>, opts?: DefOpts & { base?: string }): this {
    const local = this.members(data);
    const base = opts?.base === undefined ? [] : this.objectOf(opts.base).members;
    const o: ObjectType = { meta: 'object', name, features: features(opts?.features), members: [...base, ...local], implicit: false };
    if (opts?.base !== undefined) o.base = opts.base;
    return this.define(withOpts(o, opts));
  }

  union(name: string, base: string | Record<string, MemberSpec>, tag: string, data: Record<string, BranchSpec>, opts?: DefOpts): this {
    let baseName: string;
    if (typeof base === 'string') {
      baseName = base;
    } else {
      baseName = `q_obj_${name}-base`;
      this.entities.set(baseName, { meta: 'object', name: baseName, features: [], members: this.members(base), implicit: true });
    }
    const members = this.objectOf(baseName).members;
    const tagType = this.entities.get(members.find((m) => m.name === tag)?.type ?? '');
    if (tagType?.meta !== 'enum') throw new Error(`fixture: union '${name}' tag '${tag}' is not an enum member`);
    const variants: NonNullable<ObjectType['variants']> = Object.entries(data).map(([c, spec]) => {
      const s = typeof spec === 'string' ? { type: spec } : spec;
      const v: NonNullable<ObjectType['variants']>[number] = { case: c, type: s.type };
      if (s.if !== undefined) v.if = s.if;
      return v;
    });
    for (const value of tagType.values) {
      if (value.name in data) continue;
      const v: NonNullable<ObjectType['variants']>[number] = { case: value.name, type: 'q_empty' };
      if (value.if !== undefined) v.if = value.if;
      variants.push(v);
    }
    const o: ObjectType = { meta: 'object', name, features: features(opts?.features), members: [...members], base: baseName, tag, variants, implicit: false };
    return this.define(withOpts(o, opts));
  }

  alternate(name: string, data: Record<string, BranchSpec>, opts?: DefOpts): this {
    const a: AlternateType = {
      meta: 'alternate',
      name,
      features: features(opts?.features),
      members: Object.entries(data).map(([n, spec]) => {
        const s = typeof spec === 'string' ? { type: spec } : spec;
        this.useType(s.type);
        const m: AlternateType['members'][number] = { name: n, type: s.type };
        if (s.if !== undefined) m.if = s.if;
        return m;
      }),
    };
    return this.define(withOpts(a, opts));
  }

  private argType(owner: string, data: string | Record<string, MemberSpec> | undefined, ifc: IfCond | undefined): string | undefined {
    if (data === undefined || typeof data === 'string') return data;
    const name = `q_obj_${owner}-arg`;
    const o: ObjectType = { meta: 'object', name, features: [], members: this.members(data), implicit: true };
    if (ifc !== undefined) o.if = ifc;
    this.entities.set(name, o);
    return name;
  }

  command(
    name: string,
    opts?: DefOpts & {
      data?: string | Record<string, MemberSpec>;
      returns?: string;
      boxed?: boolean;
      allowOob?: boolean;
      allowPreconfig?: boolean;
      successResponse?: boolean;
    },
  ): this {
    const c: Command = {
      meta: 'command',
      name,
      features: features(opts?.features),
      boxed: opts?.boxed ?? false,
      allowOob: opts?.allowOob ?? false,
      allowPreconfig: opts?.allowPreconfig ?? false,
      coroutine: false,
      gen: true,
      successResponse: opts?.successResponse ?? true,
    };
    const arg = this.argType(name, opts?.data, opts?.if);
    if (arg !== undefined) c.argType = arg;
    if (opts?.returns !== undefined) {
      this.useType(opts.returns);
      c.retType = opts.returns;
    }
    return this.define(withOpts(c, opts));
  }

  event(name: string, opts?: DefOpts & { data?: string | Record<string, MemberSpec>; boxed?: boolean }): this {
    const e: Event = { meta: 'event', name, features: features(opts?.features), boxed: opts?.boxed ?? false };
    const arg = this.argType(name, opts?.data, opts?.if);
    if (arg !== undefined) e.argType = arg;
    return this.define(withOpts(e, opts));
  }

  build(): SchemaModel {
    return {
      entities: new Map(this.entities),
      definitionOrder: [...this.order],
      pragmas: { docRequired: false, commandNameExceptions: [], commandReturnsExceptions: [], documentationExceptions: [], memberNameExceptions: [] },
    };
  }
}

/** An object-add-like schema used by several tests: a union with a `qom-type`/`id` base,
 *  branches with sized ints, lists, nested structs, alternates, a conditional branch, a
 *  branch-less value and a value whose branch is conditioned away. */
export function objectAddModel(): ModelBuilder {
  return new ModelBuilder()
    .enum('QMPCapability', ['oob'])
    .command('qmp_capabilities', { data: { '*enable': '[QMPCapability]' }, allowPreconfig: true })
    .struct('VersionTriple', { major: 'int', minor: 'int', micro: 'int' })
    .struct('VersionInfo', { qemu: 'VersionTriple', package: 'str' })
    .command('query-version', { returns: 'VersionInfo', allowPreconfig: true })
    .enum('HostMemPolicy', ['default', 'preferred', 'bind', 'interleave'])
    .enum('ObjectType', [
      'can-bus',
      'memory-backend-file',
      { name: 'memory-backend-memfd', if: 'CONFIG_LINUX' },
      'memory-backend-ram',
      { name: 'memory-backend-epc', if: 'CONFIG_SGX' },
      'thread-context',
      'secret',
    ])
    .struct('MemoryBackendProperties', {
      '*dump': 'bool',
      '*host-nodes': '[uint16]',
      '*merge': 'bool',
      '*policy': 'HostMemPolicy',
      '*prealloc': 'bool',
      '*prealloc-threads': 'uint32',
      '*reserve': { type: 'bool', if: 'CONFIG_LINUX' },
      size: 'size',
    })
    .struct('MemoryBackendFileProperties', { '*align': 'size', '*offset': 'size', 'mem-path': 'str', '*readonly': 'bool' }, { base: 'MemoryBackendProperties' })
    .struct('MemoryBackendMemfdProperties', { '*hugetlb': 'bool', '*seal': 'bool' }, { base: 'MemoryBackendProperties' })
    .struct('ThreadContextProperties', { '*cpu-affinity': '[uint16]', '*node-affinity': '[uint16]' })
    .alternate('SecretData', { text: 'str', bytes: '[uint8]' })
    .struct('SecretProperties', { '*data': 'SecretData', '*loaded': 'bool', '*nested': 'VersionTriple', '*levels': '[int8]' })
    .union(
      'ObjectOptions',
      { 'qom-type': 'ObjectType', id: 'str' },
      'qom-type',
      {
        'memory-backend-file': 'MemoryBackendFileProperties',
        'memory-backend-memfd': { type: 'MemoryBackendMemfdProperties', if: 'CONFIG_LINUX' },
        'memory-backend-ram': 'MemoryBackendProperties',
        'thread-context': 'ThreadContextProperties',
        secret: 'SecretProperties',
      },
    )
    .command('object-add', { data: 'ObjectOptions', boxed: true, allowPreconfig: true });
}
