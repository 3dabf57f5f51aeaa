// The JSON Schemas of command arguments: shape (for the console), conditions, and that they
// compile and work with a fresh ajv given the QAPI keywords (qemu-facts §3.4, §2.5).
import Ajv from 'ajv';
import { addQapiKeywords, buildArgSchemas, intCheck, INT_SPECS } from '../../../src/qapi/json-schema';
import { JsonFloat } from '../../../src/json/value';
import { ModelBuilder, objectAddModel } from './model-fixtures';

const model = objectAddModel()
  .enum('Never', [{ name: 'x', if: 'CONFIG_NOPE' }])
  .alternate('StrOrList', { s: 'Never', l: '[int]' })
  .struct('Doc', { '*a': { type: 'StrOrList', doc: 'an alternate' }, '*b': 'any' }, { doc: 'A documented struct.' })
  .command('doc-cmd', { data: 'Doc', doc: 'Does things.' })
  .command('hidden', { if: 'CONFIG_NOPE' })
  .build();
const schemas = buildArgSchemas(model, new Set(['CONFIG_LINUX']));

test('one schema per command of the build, in definition order', () => {
  expect([...schemas.keys()]).toEqual(['qmp_capabilities', 'query-version', 'object-add', 'doc-cmd']);
  expect(schemas.get('query-version')).toEqual({ title: 'query-version', type: 'object', qapiObject: true, additionalProperties: false });
  expect(schemas.get('qmp_capabilities')).toEqual({
    title: 'qmp_capabilities',
    type: 'object',
    qapiObject: true,
    properties: { enable: { type: 'array', items: { $ref: '#/$defs/QMPCapability' } } },
    additionalProperties: false,
    $defs: { QMPCapability: { type: 'string', enum: ['oob'] } },
  });
});

test('docs become descriptions; alternates dispatch on the JSON kind', () => {
  const s = schemas.get('doc-cmd') as Record<string, unknown>;
  expect(s.description).toBe('Does things.');
  expect(s.properties).toEqual({ a: { $ref: '#/$defs/StrOrList', description: 'an alternate' }, b: {} });
  expect((s.$defs as Record<string, unknown>).StrOrList).toEqual({
    if: { qapiKind: 'string' },
    then: { $ref: '#/$defs/Never' },
    else: { if: { qapiKind: 'array' }, then: { type: 'array', items: { qapiInt: 'int' } }, else: { qapiAlternate: 'StrOrList' } },
  });
  // Every value conditioned away: no string is accepted.
  expect((s.$defs as Record<string, unknown>).Never).toEqual({ type: 'string', not: {} });
});

test('unions: base at the top, one flattened branch per enum value under a discriminator', () => {
  const s = schemas.get('object-add') as { properties: object; required: string[]; discriminator: object; oneOf: { properties: Record<string, unknown>; additionalProperties: boolean }[] };
  expect(s.properties).toEqual({ 'qom-type': { $ref: '#/$defs/ObjectType' }, id: { type: 'string' } });
  expect(s.required).toEqual(['qom-type', 'id']);
  expect(s.discriminator).toEqual({ propertyName: 'qom-type' });
  expect(s.oneOf.map((b) => b.properties['qom-type'])).toEqual(
    ['can-bus', 'memory-backend-file', 'memory-backend-memfd', 'memory-backend-ram', 'thread-context', 'secret'].map((c) => ({ const: c })),
  );
  expect(s.oneOf[0]).toEqual({ type: 'object', properties: { 'qom-type': { const: 'can-bus' }, id: true }, additionalProperties: false });
  expect(Object.keys(s.oneOf[3].properties)).toEqual(['qom-type', 'id', 'dump', 'host-nodes', 'merge', 'policy', 'prealloc', 'prealloc-threads', 'reserve', 'size']);
});

test('usable on their own with a fresh ajv (e.g. by the web console)', () => {
  const ajv = new Ajv({ discriminator: true });
  addQapiKeywords(ajv);
  const v = ajv.compile(schemas.get('object-add') as object);
  expect(v({ 'qom-type': 'memory-backend-ram', id: 'm', size: 2n ** 64n - 1n })).toBe(true);
  expect(v({ 'qom-type': 'memory-backend-ram', id: 'm', size: new JsonFloat(1) })).toBe(false);
  expect(v({ 'qom-type': 'can-bus', id: 'c' })).toBe(true);
  expect(v({ 'qom-type': 'memory-backend-epc', id: 'c' })).toBe(false);
  const d = ajv.compile(schemas.get('doc-cmd') as object);
  expect(d({ a: [1, 2n ** 62n] })).toBe(true);
  expect(d({ a: 'x' })).toBe(false);
  expect(d({ a: 5 })).toBe(false);
});

test('intCheck: QEMU integer acceptance, including the uint64 wrap', () => {
  expect(intCheck(INT_SPECS.uint64, -1)).toBe(2);
  expect(intCheck(INT_SPECS.size, -(2n ** 63n))).toBe(2);
  expect(intCheck(INT_SPECS.size, -(2n ** 63n) - 1n)).toBe(0);
  expect(intCheck(INT_SPECS.uint8, -1)).toBe(0);
  expect(intCheck(INT_SPECS.int64, 2n ** 63n)).toBe(0);
  expect(intCheck(INT_SPECS.int, 1e20)).toBe(0);
  expect(intCheck(INT_SPECS.uint64, 1e19)).toBe(1);
  expect(intCheck(INT_SPECS.int8, new JsonFloat(1))).toBe(0);
  expect(intCheck(INT_SPECS.int8, -0)).toBe(1);
});

test('a model with a recursive type compiles', () => {
  const m = new ModelBuilder().struct('Node', { '*next': 'Node', '*kids': '[Node]', v: 'int' }).command('walk', { data: 'Node' }).build();
  const ajv = new Ajv({ discriminator: true });
  addQapiKeywords(ajv);
  const v = ajv.compile(buildArgSchemas(m, new Set()).get('walk') as object);
  expect(v({ v: 1, next: { v: 2, kids: [{ v: 3 }] } })).toBe(true);
  expect(v({ v: 1, next: { kids: [] } })).toBe(false);
});
