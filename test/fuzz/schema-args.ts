// Fuzz inputs generated from the daemon's own schema (query-qmp-schema, the introspection of
// the compiled QAPI model): for every command, arguments built member by member from its
// argument type — object-add walks every variant, i.e. every property of every backend type —
// with boundary values (0, -1, 2^53, 2^63-1, 2^64, empty and long strings), wrong types,
// unknown members, missing ones and null. Commands that end the daemon are left out (quit) or
// neutralised (cpr-handover only gets channels nobody listens on).
import fc from 'fast-check';

/** One entry of query-qmp-schema (the fields this generator reads). */
export interface SchemaInfo {
  name: string;
  'meta-type': string;
  'json-type'?: string;
  'arg-type'?: string;
  values?: string[];
  'element-type'?: string;
  members?: { name: string; type: string; default?: unknown }[];
  tag?: string;
  variants?: { case: string; type: string }[];
}

/** Commands never generated: `quit` ends the daemon, `human-monitor-command` can quit too. */
const OBJECT_COMMANDS = new Set(['object-add', 'object-del', 'qom-set', 'qom-get']);

export const EXCLUDED_COMMANDS = new Set(['quit', 'human-monitor-command']);

/** Integers at the edges: of the JSON parser (2^53, int64, uint64 and one past), of sizes
 *  (pages, huge pages, the fuzz target's 16 MiB cap and one past) and of small counts. */
const INT_EDGES = [
  '0', '-1', '1', '2', '7', '64', '1023', '1024', '4096', '4097', '65536', '1048576', '2097152', '16777216', '16777217', '1073741824',
  '2147483647', '2147483648', '4294967295', '4294967296', '9007199254740991', '9007199254740992', '9007199254740993',
  '9223372036854775807', '9223372036854775808', '18446744073709551615', '18446744073709551616', '-9223372036854775808',
  '-9223372036854775809', '-18446744073709551616', '1.0', '1.5', '-0', '1e3', '4096.0', '1e400',
];

/** Integers a backend accepts (sizes, alignments, thread counts, node numbers): clean inputs
 *  draw from these, so that object-add also succeeds and later commands find objects. */
const VALID_INTS = ['0', '1', '2', '4096', '65536', '1048576', '2097152', '4194304'];

/** Clean values of members whose type alone admits mostly refused values (JSON text). */
const CLEAN_MEMBERS: Record<string, string[]> = {
  size: ['4096', '65536', '1048576', '2097152'],
  align: ['0', '4096', '2097152'],
  offset: ['0'],
  hugetlbsize: ['0'],
  'host-nodes': ['0'],
  'prealloc-threads': ['1', '2'],
  'prealloc-context': ['""'],
  hugetlb: ['false'],
  pmem: ['false'],
  'guest-memfd': ['false'],
};

/** Values of the wrong type for anything. */
const WRONG = ['null', '[]', '{}', '""', '"1"', '0', '-1', 'true', 'false', '[1]', '{"a":1}', '1.5', '"on"', '"yes"'];

const str = (s: string): string => JSON.stringify(s);

export interface SchemaGenContext {
  /** The directory mem-path may lie in: paths inside it make file backends succeed. */
  filesDir: string;
  /** Names of the properties of every QOM type (for qom-get/qom-set's `property`). */
  propertyNames: string[];
  /** Longest generated string. */
  maxString: number;
}

export interface SchemaInput {
  command: string;
  /** The whole message, JSON text (integers beyond 2^53 written exactly). */
  text: string;
}

export class SchemaFuzz {
  private readonly byName = new Map<string, SchemaInfo>();
  readonly commands: SchemaInfo[];

  constructor(
    schema: SchemaInfo[],
    private readonly ctx: SchemaGenContext,
  ) {
    for (const e of schema) this.byName.set(e.name, e);
    this.commands = schema.filter((e) => e['meta-type'] === 'command' && !EXCLUDED_COMMANDS.has(e.name));
  }

  /** Object ids: a few short ones that collide on purpose, and the length limits around 246. */
  private ids(): fc.Arbitrary<string> {
    return fc.oneof(
      { arbitrary: fc.constantFrom('f0', 'f1', 'f2', 'f3', 'f4', 'f5'), weight: 20 },
      { arbitrary: fc.constantFrom('', '0a', 'a b', 'a/b', '.', '..', 'x'.repeat(246), 'x'.repeat(247), 'x'.repeat(300), 'é', '-a', 'a_b.c-d'), weight: 2 },
      { arbitrary: fc.string({ maxLength: 20 }), weight: 1 },
    );
  }

  private strings(member: string, clean = false): fc.Arbitrary<string> {
    const { filesDir, propertyNames, maxString } = this.ctx;
    const paths = ['/objects', '/objects/f0', '/objects/f1', '/objects/f2', '/', '', '//objects', 'objects', '/objects/', '/objects/f0/', 'f0', '/objects/no'];
    const memPaths = [`${filesDir}/m0`, `${filesDir}/m1`, filesDir, `${filesDir}/`, '/dev/zero', '/dev/null', '/dev/shm/x', '/proc/self/mem', '/', 'rel', ''];
    const generic = fc.oneof(
      { arbitrary: fc.constantFrom('', 'a', 'on', 'off', 'auto', 'memory-backend-memfd', 'memory-backend-file', 'object', 'bind', 'unix:/nonexistent/x'), weight: 4 },
      { arbitrary: fc.string({ maxLength: 30, unit: 'binary' }), weight: 2 },
      { arbitrary: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 300 }), weight: 20 }, { arbitrary: fc.integer({ min: 0, max: maxString }), weight: 1 }).map((n) => 'y'.repeat(n)), weight: 1 },
    );
    if (clean && member === 'mem-path') return fc.constantFrom(`${filesDir}/m0`, `${filesDir}/m1`, filesDir);
    if (clean && member === 'path') return fc.constantFrom('/objects/f0', '/objects/f1', '/objects');
    if (clean && member === 'id') return fc.constantFrom('f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7');
    switch (member) {
      case 'id':
        return this.ids();
      case 'path':
        return fc.oneof({ arbitrary: fc.constantFrom(...paths), weight: 6 }, { arbitrary: generic, weight: 1 });
      case 'property':
        return fc.oneof({ arbitrary: fc.constantFrom(...propertyNames), weight: 6 }, { arbitrary: generic, weight: 1 });
      case 'mem-path':
        return fc.oneof({ arbitrary: fc.constantFrom(...memPaths), weight: 6 }, { arbitrary: generic, weight: 1 });
      case 'channel':
        // cpr-handover neutralised: nothing listens at these.
        return fc.constantFrom('', 'unix:', `unix:${filesDir}/no-such-socket`, 'tcp:127.0.0.1:1', 'unix:/nonexistent/x', 'x'.repeat(300));
      default:
        return generic;
    }
  }

  private ints(): fc.Arbitrary<string> {
    return fc.oneof({ arbitrary: fc.constantFrom(...INT_EDGES), weight: 4 }, { arbitrary: fc.integer().map(String), weight: 1 }, { arbitrary: fc.integer({ min: 0, max: 64 }).map(String), weight: 2 });
  }

  /** A value of `type` (or, sometimes, of a wrong one), as JSON text. */
  value(type: string, member: string, depth: number, clean: boolean): fc.Arbitrary<string> {
    const right = this.rightValue(type, member, depth, clean);
    if (clean) return right;
    return fc.oneof({ arbitrary: right, weight: 12 }, { arbitrary: fc.constantFrom(...WRONG), weight: 1 });
  }

  private rightValue(type: string, member: string, depth: number, clean: boolean): fc.Arbitrary<string> {
    const e = this.byName.get(type);
    if (clean && CLEAN_MEMBERS[member] && e?.['meta-type'] !== 'array') return fc.constantFrom(...CLEAN_MEMBERS[member]);
    if (!e) throw new Error(`schema names unknown type ${type}`);
    switch (e['meta-type']) {
      case 'builtin':
        switch (e['json-type']) {
          case 'int':
            return clean ? fc.constantFrom(...VALID_INTS) : this.ints();
          case 'number':
            return fc.oneof(this.ints(), fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)));
          case 'string':
            return this.strings(member, clean).map(str);
          case 'boolean':
            return fc.boolean().map(String);
          case 'null':
            return fc.constant('null');
          default: // 'value' (any): qom-set's value, anything at all
            return depth > 2 ? fc.constantFrom('1', '"a"', 'true', 'null') : fc.oneof(this.ints(), this.strings(member, clean).map(str), fc.boolean().map(String), fc.constant('null'), fc.array(this.ints(), { maxLength: 4 }).map((a) => `[${a.join(',')}]`), fc.json({ maxDepth: 2 }));
        }
      case 'enum':
        if (clean) return fc.constantFrom(...(e.values ?? [])).map(str);
        return fc.oneof({ arbitrary: fc.constantFrom(...(e.values ?? [])), weight: 8 }, { arbitrary: fc.constantFrom('', 'nonsense', 'ON'), weight: 1 }).map(str);
      case 'array':
        if (depth > 3) return fc.constant('[]');
        return fc.array(this.value(e['element-type']!, member, depth + 1, clean), { maxLength: clean ? 2 : 6 }).map((a) => `[${a.join(',')}]`);
      case 'alternate':
        return fc.oneof(...(e.members ?? []).map((m) => this.rightValue(m.type, member, depth + 1, clean)));
      case 'object':
        return this.object(e, depth, clean);
      default:
        throw new Error(`schema type ${type} has meta-type ${e['meta-type']}`);
    }
  }

  /** An object of the type: members of the base and, for a union, of one variant, each
   *  required one nearly always there, optional ones half the time, sometimes an unknown one. */
  private object(e: SchemaInfo, depth: number, clean: boolean): fc.Arbitrary<string> {
    const variants = e.variants ?? [];
    const pick = variants.length ? fc.constantFrom(...variants) : fc.constant(undefined);
    return pick.chain((v) => {
      const members = [...(e.members ?? []), ...(v ? (this.byName.get(v.type)!.members ?? []) : [])];
      const parts = members.map((m) => {
        const optional = 'default' in m;
        const val = e.tag === m.name && v ? fc.oneof({ arbitrary: fc.constant(str(v.case)), weight: 20 }, { arbitrary: this.value(m.type, m.name, depth + 1, clean), weight: clean ? 0 : 1 }) : this.value(m.type, m.name, depth + 1, clean);
        const present = fc.integer({ min: 0, max: 99 }).map((n) => n < (optional ? (clean ? 20 : 50) : clean ? 100 : 97));
        return fc.tuple(present, val).map(([p, x]) => (p ? `${str(m.name)}:${x}` : undefined));
      });
      const unknown = fc.oneof({ arbitrary: fc.constant(undefined), weight: 19 }, { arbitrary: fc.constantFrom('"unknown":1', '"Size":1', '"":null', '"id ":"x"').map((s) => s as string | undefined), weight: 1 });
      return fc.tuple(fc.tuple(...parts), clean ? fc.constant(undefined) : unknown).map(([ps, u]) => `{${[...ps, u].filter((p) => p !== undefined).join(',')}}`);
    });
  }

  /** One command with generated arguments (sometimes none, sometimes not an object). Half of
   *  the inputs are clean (valid values, few optional members), so that objects get created
   *  and qom-get/qom-set/object-del meet live ones; the rest are hostile. */
  input(): fc.Arbitrary<SchemaInput> {
    // The commands that act on objects are drawn four times as often as the queries.
    const weighted = this.commands.flatMap((c) => (OBJECT_COMMANDS.has(c.name) ? [c, c, c, c] : [c]));
    return fc.tuple(fc.constantFrom(...weighted), fc.boolean()).chain(([cmd, clean]) => {
      const argType = cmd['arg-type'];
      const args = argType ? this.value(argType, '', 0, clean) : fc.constant('{}');
      return fc
        .tuple(fc.integer({ min: 0, max: 49 }), args, fc.integer({ min: 0, max: 1e6 }))
        .map(([r, a, id]) => ({ command: cmd.name, text: r === 0 ? `{"execute":${str(cmd.name)},"id":${id}}` : `{"execute":${str(cmd.name)},"arguments":${a},"id":${id}}` }));
    });
  }
}
