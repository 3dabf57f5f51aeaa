// The SchemaModel contract as generators see it: predefined types, arrays made on demand,
// implicit types, flattened members, conditions and docs carried through, definition order,
// (Load speed is measured by benchmarks, not here.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSchema } from '../../../src/qapi/load';
import { ArrayType, BuiltinType, Command, EnumType, ObjectType, SchemaModel } from '../../../src/qapi/model';

function load(text: string): SchemaModel {
  return loadSchema('s.json', () => text);
}

describe('predefined entities', () => {
  const m = load('');

  it('has the built-in types with their introspection JSON types (facts §3.4)', () => {
    const json = (n: string): string => (m.entities.get(n) as BuiltinType).jsonType;
    expect(['str', 'number', 'int', 'uint8', 'int64', 'size', 'bool', 'null', 'any'].map(json)).toEqual([
      'string', 'number', 'int', 'int', 'int', 'int', 'boolean', 'null', 'value',
    ]);
    for (const n of ['int8', 'int16', 'int32', 'uint16', 'uint32', 'uint64']) expect(json(n)).toBe('int');
  });

  it('has QType and q_empty', () => {
    expect((m.entities.get('QType') as EnumType).values.map((v) => v.name)).toEqual([
      'none', 'qnull', 'qnum', 'qstring', 'qdict', 'qlist', 'qbool',
    ]);
    expect(m.entities.get('q_empty')).toEqual({ meta: 'object', name: 'q_empty', features: [], members: [], implicit: true });
  });

  it('makes no array types until they are used', () => {
    expect([...m.entities.keys()].some((n) => n.startsWith('['))).toBe(false);
    expect(m.definitionOrder).toEqual([]);
  });
});

describe('model of a small schema', () => {
  const m = load(
    [
      "{ 'enum': 'Kind', 'data': [ 'a', { 'name': 'b', 'if': 'CONFIG_B' } ], 'if': 'CONFIG_K' }",
      "{ 'struct': 'Base', 'data': { 'kind': 'Kind' } }",
      "{ 'struct': 'Extra', 'data': { 'n': 'int' } }",
      "{ 'union': 'Uni', 'base': 'Base', 'discriminator': 'kind', 'data': { 'a': 'Extra' } }",
      "{ 'command': 'get', 'data': { 'ids': [ 'Kind' ] }, 'returns': [ 'Extra' ] }",
    ].join('\n'),
  );

  it('lists user definitions only, in order', () => {
    expect(m.definitionOrder).toEqual(['Kind', 'Base', 'Extra', 'Uni', 'get']);
    expect(m.entities.has('q_obj_get-arg')).toBe(true);
  });

  it('creates arrays on demand, as conditional as their element', () => {
    expect(m.entities.get('[Kind]')).toEqual({
      meta: 'array', name: '[Kind]', elementType: 'Kind', features: [], if: 'CONFIG_K', info: { file: 's.json', line: 5, defn: "command 'get'" },
    } satisfies ArrayType);
    expect((m.entities.get('[Extra]') as ArrayType).if).toBeUndefined();
  });

  it('flattens union members and gives every enum value a variant', () => {
    const u = m.entities.get('Uni') as ObjectType;
    expect(u.members).toEqual([{ name: 'kind', type: 'Kind', optional: false, features: [] }]);
    expect(u.base).toBe('Base');
    expect(u.tag).toBe('kind');
    expect(u.variants).toEqual([{ case: 'a', type: 'Extra' }, { case: 'b', type: 'q_empty', if: 'CONFIG_B' }]);
    expect(u.implicit).toBe(false);
    expect(u.info).toEqual({ file: 's.json', line: 4, defn: "union 'Uni'" });
  });

  it('names implicit argument types and keeps command flags', () => {
    const c = m.entities.get('get') as Command;
    expect(c).toMatchObject({ argType: 'q_obj_get-arg', retType: '[Extra]', boxed: false, gen: true, successResponse: true });
    const arg = m.entities.get('q_obj_get-arg') as ObjectType;
    expect(arg.implicit).toBe(true);
    expect(arg.members).toEqual([{ name: 'ids', type: '[Kind]', optional: false, features: [] }]);
  });
});

describe('the project schema', () => {
  const main = path.join(__dirname, '../../../qapi/schema.json');
  // Enable once qapi/ satisfies two QEMU rules it breaks today: QapiErrorClass needs
  // 'member-name-exceptions' (its values are CamelCase), and SchemaInfoEnum's doc must
  // describe the 'deprecated' feature of @values under "Features:".
  it('loads', () => {
    const m = loadSchema(main, (p) => fs.readFileSync(p, 'utf8'));
    expect(m.entities.get('query-qmp-schema')?.meta).toBe('command');
  });
});
