// ArgValidator: QEMU's exact argument errors (qemu-facts §3.5, §4.3, observed on QEMU 7.2),
// canonical values (§2.5), and a property test against a reference visitor at the bottom of
// this file that walks the model in QEMU's order with QEMU's own bookkeeping.
import fc from 'fast-check';
import * as fs from 'fs';
import * as path from 'path';
import { ArgValidator, LIST_ELEMENTS_FULL_CHECK } from '../../../src/qapi/validate';
import * as jsonSchemaModule from '../../../src/qapi/json-schema';
import { loadSchema } from '../../../src/qapi/load';
import { Precompiled, standaloneValidators } from '../../../src/qapi/standalone';
import * as valueModule from '../../../src/json/value';
import { IfCond, SchemaModel, condHolds } from '../../../src/qapi/model';
import { JsonFloat, JsonObject, JsonValue, MEMBER_ORDER, memberKeys } from '../../../src/json/value';
import { ModelBuilder, objectAddModel } from './model-fixtures';

const LINUX = new Set(['CONFIG_LINUX']);

/** objectAddModel plus a command exercising every builtin, nested unions, alternates of
 *  every kind, lists of objects and conditional members/values/branches. */
function richModel(): ModelBuilder {
  return objectAddModel()
    .enum('Kind', ['x', 'y', 'z', { name: 'w', if: 'CONFIG_NOPE' }])
    .enum('SubKind', ['a', 'b'])
    .struct('StructA', { '*flag': 'bool', n: 'int16' })
    .struct('StructB', { constructor: 'str', '*num': 'number', '*nul': 'null', '*anything': 'any' })
    .union('Inner', { sub: 'SubKind', '*w': 'int32' }, 'sub', { a: 'StructA' })
    .union('Outer', { kind: 'Kind', '*label': 'str' }, 'kind', { x: 'Inner', y: 'StructB', w: 'StructA' })
    .alternate('Alt', { s: 'str', l: '[uint8]', o: 'StructA', z: 'null' })
    .alternate('Alt2', { e: 'HostMemPolicy', u: 'uint64', b: 'bool', hidden: { type: '[str]', if: 'CONFIG_NOPE' } })
    .alternate('Alt3', { n: 'int8', o: 'StructB' })
    .struct('Everything', {
      i: 'int',
      '*i8': 'int8',
      '*i16': 'int16',
      '*i32': 'int32',
      '*i64': 'int64',
      '*u8': 'uint8',
      '*u16': 'uint16',
      '*u32': 'uint32',
      '*u64': 'uint64',
      '*sz': 'size',
      '*f': 'number',
      '*s': 'str',
      '*b': 'bool',
      '*nul': 'null',
      '*any': 'any',
      '*pol': 'HostMemPolicy',
      '*pols': '[HostMemPolicy]',
      '*items': '[StructA]',
      '*outer': 'Outer',
      '*outers': '[Outer]',
      '*alt': 'Alt',
      '*alts': '[Alt2]',
      '*alt3': 'Alt3',
      '*gone': { type: 'str', if: 'CONFIG_NOPE' },
      '*sizes': '[size]',
      '*tail': 'StructA',
    })
    .command('everything', { data: 'Everything' })
    .command('outer', { data: 'Outer', boxed: true })
    .command('noargs')
    .command('hidden', { if: 'CONFIG_NOPE', data: { a: 'int' } });
}

/** The module the build writes for `m` (standalone.ts), loaded with its requires of
 *  json-schema and value pointing at these sources. */
function precompile(m: SchemaModel, defined: ReadonlySet<string>): Precompiled {
  const exports = {} as Precompiled;
  const req = (p: string): unknown => {
    if (p === './json-schema') return jsonSchemaModule;
    if (p === '../json/value') return valueModule;
    throw new Error(`the generated validators require '${p}'`);
  };
  new Function('exports', 'require', standaloneValidators(m, defined))(exports, req);
  return exports;
}

const model = richModel().build();
const validator = new ArgValidator(model, LINUX);
/** The same, taking the fail-fast path (large lists) whenever there is a list. */
const prunedValidator = new ArgValidator(model, LINUX, true, 0);
/** Both again with the validators compiled ahead of time, as the daemon runs them. */
const precompiledValidator = new ArgValidator(model, LINUX, true, LIST_ELEMENTS_FULL_CHECK, precompile(model, LINUX));
const precompiledPruned = new ArgValidator(model, LINUX, true, 0, precompile(model, LINUX));

function check(command: string, args: JsonObject): string | JsonObject {
  const r = validator.validate(command, args);
  return r.ok ? r.value : r.desc;
}

const ram = (extra: JsonObject): JsonObject => ({ 'qom-type': 'memory-backend-ram', id: 'm', ...extra });
const secret = (extra: JsonObject): JsonObject => ({ 'qom-type': 'secret', id: 's', ...extra });
const all = (extra: JsonObject): JsonObject => ({ i: 1, ...extra });

describe('object-add (a boxed union with a qom-type/id base)', () => {
  test.each<[string, JsonObject, string]>([
    ['missing discriminator', { id: 'a', size: 1 }, "Parameter 'qom-type' is missing"],
    ['unknown discriminator value', { 'qom-type': 'nosuch', id: 'a' }, "Parameter 'qom-type' does not accept value 'nosuch'"],
    ['discriminator not a string', { 'qom-type': 3, id: 'a', size: 1 }, "Invalid parameter type for 'qom-type', expected: string"],
    ['value conditioned away', { 'qom-type': 'memory-backend-epc', id: 'a' }, "Parameter 'qom-type' does not accept value 'memory-backend-epc'"],
    ['bad tag beats missing id', { 'qom-type': 'nosuch' }, "Parameter 'qom-type' does not accept value 'nosuch'"],
    ['missing id', { 'qom-type': 'memory-backend-ram', zz: 5 }, "Parameter 'id' is missing"],
    ['id not a string', ram({ id: 5 }), "Invalid parameter type for 'id', expected: string"],
    ['missing branch member beats unexpected', ram({ sized: 1 }), "Parameter 'size' is missing"],
    ['branch without members', { 'qom-type': 'can-bus', id: 'a', size: 1 }, "Parameter 'size' is unexpected"],
    ['member of another branch', ram({ size: 1, 'mem-path': '/x' }), "Parameter 'mem-path' is unexpected"],
    ['size as a string', ram({ size: '5' }), "Parameter 'size' expects uint64"],
    ['size as a double', ram({ size: 1.5 }), "Parameter 'size' expects uint64"],
    ['size as an integral double', ram({ size: new JsonFloat(1) }), "Parameter 'size' expects uint64"],
    ['size beyond uint64 (a double)', ram({ size: new JsonFloat(18446744073709551616) }), "Parameter 'size' expects uint64"],
    ['size below int64 (a double)', ram({ size: new JsonFloat(Number(-9223372036854775809n)) }), "Parameter 'size' expects uint64"],
    ['size as an object', ram({ size: {} }), "Parameter 'size' expects uint64"],
    ['uint16 element out of range', ram({ size: 1, 'host-nodes': [1, 70000] }), "Parameter 'null' expects uint16_t"],
    ['uint16 element negative', ram({ size: 1, 'host-nodes': [1, -1] }), "Parameter 'null' expects uint16_t"],
    ['uint16 element a string', ram({ size: 1, 'host-nodes': [1, 'x'] }), "Parameter 'host-nodes[1]' expects uint64"],
    ['uint16 element a double', ram({ size: 1, 'host-nodes': [1.5] }), "Parameter 'host-nodes[0]' expects uint64"],
    ['uint16 element a boolean', ram({ size: 1, 'host-nodes': [true] }), "Parameter 'host-nodes[0]' expects uint64"],
    ['list not an array', ram({ size: 1, 'host-nodes': 5 }), "Invalid parameter type for 'host-nodes', expected: array"],
    ['list given an object', ram({ size: 1, 'host-nodes': {} }), "Invalid parameter type for 'host-nodes', expected: array"],
    ['uint32 negative', ram({ size: 1, 'prealloc-threads': -1 }), "Parameter 'prealloc-threads' expects uint32_t"],
    ['uint32 beyond range', ram({ size: 1, 'prealloc-threads': 4294967296 }), "Parameter 'prealloc-threads' expects uint32_t"],
    ['uint32 a string', ram({ size: 1, 'prealloc-threads': 'x' }), "Parameter 'prealloc-threads' expects uint64"],
    ['enum not a string', ram({ size: 1, policy: 3 }), "Invalid parameter type for 'policy', expected: string"],
    ['enum bad value', ram({ size: 1, policy: 'x' }), "Parameter 'policy' does not accept value 'x'"],
    ['bool given a number', ram({ size: 1, merge: 1 }), "Invalid parameter type for 'merge', expected: boolean"],
    ['schema order, not key order', ram({ bogus: 1, size: 'x', prealloc: 'y' }), "Invalid parameter type for 'prealloc', expected: boolean"],
    ['base member before branch member', { 'qom-type': 'memory-backend-file', id: 'f', prealloc: 'x' }, "Invalid parameter type for 'prealloc', expected: boolean"],
    ['required branch member of a derived struct', { 'qom-type': 'memory-backend-file', id: 'f', size: 1 }, "Parameter 'mem-path' is missing"],
    ['first unexpected key in key order', ram({ size: 1, zz: 1, aa: 2 }), "Parameter 'zz' is unexpected"],
    ['member conditioned in', { 'qom-type': 'memory-backend-memfd', id: 'a', size: 1, seal: 'x' }, "Invalid parameter type for 'seal', expected: boolean"],
    ['alternate without a branch for the kind', secret({ data: 5 }), "Invalid parameter type for 'data', expected: SecretData"],
    ['alternate given null', secret({ data: null }), "Invalid parameter type for 'data', expected: SecretData"],
    ['alternate list branch element', secret({ data: [1, 300] }), "Parameter 'null' expects uint8_t"],
    ['alternate list branch element type', secret({ data: ['x'] }), "Parameter 'data[0]' expects uint64"],
    ['nested struct missing member', secret({ nested: { major: 1 } }), "Parameter 'nested.minor' is missing"],
    ['nested struct member type', secret({ nested: { major: '1', minor: 2, micro: 3 } }), "Invalid parameter type for 'nested.major', expected: integer"],
    ['nested struct not an object', secret({ nested: new JsonFloat(1) }), "Invalid parameter type for 'nested', expected: object"],
    ['nested struct given an array', secret({ nested: [] }), "Invalid parameter type for 'nested', expected: object"],
    ['nested unexpected before a later member', secret({ nested: { major: 1, minor: 2, micro: 3, x: 1 }, levels: [1, 200] }), "Parameter 'nested.x' is unexpected"],
    ['int8 element out of range', secret({ levels: [1, 200] }), "Parameter 'null' expects int8_t"],
    ['int8 element beyond int64', secret({ levels: [2n ** 63n] }), "Invalid parameter type for 'levels[0]', expected: integer"],
  ])('%s', (_what, args, desc) => {
    expect(check('object-add', args)).toBe(desc);
  });

  test('accepts every enum value, with or without a branch', () => {
    expect(check('object-add', { 'qom-type': 'can-bus', id: 'a' })).toEqual({ 'qom-type': 'can-bus', id: 'a' });
    expect(check('object-add', { 'qom-type': 'secret', id: 'a' })).toEqual({ 'qom-type': 'secret', id: 'a' });
    expect(check('object-add', { 'qom-type': 'thread-context', id: 'a', 'cpu-affinity': [0, 1] })).toMatchObject({ id: 'a' });
    expect(check('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: 1, seal: true, reserve: false })).toMatchObject({ seal: true });
    expect(check('object-add', secret({ data: 'text' }))).toMatchObject({ data: 'text' });
  });

  test('conditions are evaluated per build', () => {
    const noLinux = new ArgValidator(model, new Set());
    expect(noLinux.validate('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: 1 })).toEqual({
      ok: false,
      desc: "Parameter 'qom-type' does not accept value 'memory-backend-memfd'",
    });
    expect(noLinux.validate('object-add', ram({ size: 1, reserve: true }))).toEqual({ ok: false, desc: "Parameter 'reserve' is unexpected" });
    expect(check('object-add', ram({ size: 1, reserve: true }))).toMatchObject({ reserve: true });
    const sgx = new ArgValidator(model, new Set(['CONFIG_SGX']));
    // A value whose branch is absent from the schema gets the implicit empty branch.
    expect(sgx.validate('object-add', { 'qom-type': 'memory-backend-epc', id: 'e' })).toMatchObject({ ok: true });
    expect(sgx.validate('object-add', { 'qom-type': 'memory-backend-epc', id: 'e', size: 1 })).toEqual({ ok: false, desc: "Parameter 'size' is unexpected" });
  });
});

describe('other commands', () => {
  test('qmp_capabilities list of enums (qemu-facts §1.3)', () => {
    expect(check('qmp_capabilities', { enable: ['foo'] })).toBe("Parameter 'null' does not accept value 'foo'");
    expect(check('qmp_capabilities', { enable: [1] })).toBe("Invalid parameter type for 'enable[0]', expected: string");
    expect(check('qmp_capabilities', { enable: 'oob' })).toBe("Invalid parameter type for 'enable', expected: array");
    expect(check('qmp_capabilities', { enable: ['oob'] })).toEqual({ enable: ['oob'] });
    expect(check('qmp_capabilities', {})).toEqual({});
  });

  test('commands without arguments refuse any key, the first in key order', () => {
    expect(check('query-version', { a: 1 })).toBe("Parameter 'a' is unexpected");
    expect(check('noargs', { b: 1, a: 2 })).toBe("Parameter 'b' is unexpected");
    expect(check('noargs', {})).toEqual({});
  });

  test('unexpected keys follow the recorded insertion order, even for integer-like keys', () => {
    const args: JsonObject = { b: 1, '7': 2 };
    Object.defineProperty(args, MEMBER_ORDER, { value: ['b', '7'], enumerable: false });
    expect(check('noargs', args)).toBe("Parameter 'b' is unexpected");
    expect(check('noargs', { b: 1, '7': 2 })).toBe("Parameter '7' is unexpected");
  });

  test('keys that look like JSON Pointer syntax or Object.prototype names', () => {
    expect(check('noargs', { 'a/b': 1 })).toBe("Parameter 'a/b' is unexpected");
    expect(check('everything', all({ items: [{ n: 1, '~x/y': 1 }] }))).toBe("Parameter 'items[0].~x/y' is unexpected");
    expect(check('everything', all({ constructor: 1 }))).toBe("Parameter 'constructor' is unexpected");
    expect(check('outer', { kind: 'y' })).toBe("Parameter 'constructor' is missing");
    expect(check('outer', { kind: 'y', constructor: 'c' })).toEqual({ kind: 'y', constructor: 'c' });
  });

  test('a command this build conditions away has no validator', () => {
    expect(() => validator.validate('hidden', {})).toThrow(/not a command/);
    expect(() => validator.validate('nosuch', {})).toThrow(/not a command/);
  });
});

describe('integers, numbers and the exact value form (qemu-facts §2.5)', () => {
  test.each<[string, JsonObject, string]>([
    ['int given 2^63 (a uint64 QNum)', all({ i: 2n ** 63n }), "Invalid parameter type for 'i', expected: integer"],
    ['int given an integral double', all({ i: new JsonFloat(1) }), "Invalid parameter type for 'i', expected: integer"],
    ['int given a double', all({ i: 0.5 }), "Invalid parameter type for 'i', expected: integer"],
    ['int given a string', all({ i: '1' }), "Invalid parameter type for 'i', expected: integer"],
    ['int64 given 2^64-1', all({ i64: 2n ** 64n - 1n }), "Invalid parameter type for 'i64', expected: integer"],
    ['int8 above', all({ i8: 128 }), "Parameter 'i8' expects int8_t"],
    ['int8 below', all({ i8: -129 }), "Parameter 'i8' expects int8_t"],
    ['int16 above', all({ i16: 32768 }), "Parameter 'i16' expects int16_t"],
    ['int32 below', all({ i32: -2147483649 }), "Parameter 'i32' expects int32_t"],
    ['int32 given a bigint beyond int64', all({ i32: 2n ** 63n }), "Invalid parameter type for 'i32', expected: integer"],
    ['uint8 above', all({ u8: 256 }), "Parameter 'u8' expects uint8_t"],
    ['uint8 negative', all({ u8: -1 }), "Parameter 'u8' expects uint8_t"],
    ['uint32 given 2^64-1', all({ u32: 2n ** 64n - 1n }), "Parameter 'u32' expects uint32_t"],
    ['uint64 given a double', all({ u64: new JsonFloat(5) }), "Parameter 'u64' expects uint64"],
    ['uint64 given null', all({ u64: null }), "Parameter 'u64' expects uint64"],
    ['size list element', all({ sizes: [1, 'x'] }), "Parameter 'sizes[1]' expects uint64"],
    ['number given a string', all({ f: '1' }), "Invalid parameter type for 'f', expected: number"],
    ['number given a list', all({ f: [] }), "Invalid parameter type for 'f', expected: number"],
    ['str given a number', all({ s: 1 }), "Invalid parameter type for 's', expected: string"],
    ['bool given a string', all({ b: 'true' }), "Invalid parameter type for 'b', expected: boolean"],
    ['null given 0', all({ nul: 0 }), "Invalid parameter type for 'nul', expected: null"],
    ['null given false', all({ nul: false }), "Invalid parameter type for 'nul', expected: null"],
    ['missing required int', {}, "Parameter 'i' is missing"],
    ['conditional member absent from the build', all({ gone: 'x' }), "Parameter 'gone' is unexpected"],
  ])('%s', (_what, args, desc) => {
    expect(check('everything', args)).toBe(desc);
  });

  test('accepts exact integers at every boundary and any QNum for number', () => {
    const ok: JsonObject = all({
      i: -(2n ** 63n),
      i64: 2n ** 63n - 1n,
      i8: -128,
      i16: 32767,
      i32: -2147483648,
      u8: 255,
      u16: 65535,
      u32: 4294967295,
      u64: 2n ** 64n - 1n,
      sz: 0,
      f: new JsonFloat(1e300),
      any: { x: [new JsonFloat(1)] },
      nul: null,
    });
    expect(check('everything', ok)).toBe(ok);
    for (const f of [1, -0.5, 2n ** 64n - 1n, new JsonFloat(-1)]) expect(check('everything', all({ f }))).toEqual(all({ f }));
  });

  test('negative uint64/size is taken modulo 2^64 in a copy (QEMU compat)', () => {
    const args = ram({ size: -1 });
    const r = validator.validate('object-add', args);
    expect(r).toEqual({ ok: true, value: ram({ size: 18446744073709551615n }) });
    expect(args.size).toBe(-1);
    const deep: JsonObject = all({ u64: -(2n ** 63n), alts: ['bind', -2, true, 5], sizes: [1, -1], items: [{ n: 1 }] });
    const d = check('everything', deep) as JsonObject;
    expect(d).toEqual(all({ u64: 2n ** 63n, alts: ['bind', 2n ** 64n - 2n, true, 5], sizes: [1, 2n ** 64n - 1n], items: [{ n: 1 }] }));
    expect(deep.alts).toEqual(['bind', -2, true, 5]);
    expect(d.items).toBe(deep.items); // untouched containers are shared, not copied
  });

  test('a copied object keeps its recorded member order', () => {
    const args: JsonObject = { 'qom-type': 'memory-backend-ram', size: -1, id: '9' };
    Object.defineProperty(args, MEMBER_ORDER, { value: ['qom-type', 'size', 'id'], enumerable: false });
    const r = validator.validate('object-add', args);
    expect(r.ok && memberKeys(r.value)).toEqual(['qom-type', 'size', 'id']);
  });
});

describe('nesting: lists, nested unions and alternates', () => {
  test.each<[string, JsonObject, string]>([
    ['list element missing member', all({ items: [{ n: 1 }, { flag: true }] }), "Parameter 'items[1].n' is missing"],
    ['list element unexpected', all({ items: [{ n: 1, q: 1 }] }), "Parameter 'items[0].q' is unexpected"],
    ['list element not an object', all({ items: [{ n: 1 }, 5] }), "Invalid parameter type for 'items[1]', expected: object"],
    ['enum list element', all({ pols: ['bind', 'nope'] }), "Parameter 'null' does not accept value 'nope'"],
    ['nested union branch member', all({ outers: [{ kind: 'x', sub: 'a' }] }), "Parameter 'outers[0].n' is missing"],
    ['nested union inner tag', all({ outers: [{ kind: 'x', sub: 'q' }] }), "Parameter 'sub' does not accept value 'q'"],
    ['nested union inner tag missing', all({ outer: { kind: 'x' } }), "Parameter 'outer.sub' is missing"],
    ['nested union inner base member', all({ outer: { kind: 'x', sub: 'b', w: 1.5 } }), "Invalid parameter type for 'outer.w', expected: integer"],
    ['nested union value conditioned away', all({ outer: { kind: 'w', n: 1 } }), "Parameter 'kind' does not accept value 'w'"],
    ['nested union branch unexpected', all({ outer: { kind: 'x', sub: 'b', n: 1 } }), "Parameter 'outer.n' is unexpected"],
    ['alternate: local name', all({ alt: 5 }), "Invalid parameter type for 'alt', expected: Alt"],
    ['alternate object branch', all({ alt: {} }), "Parameter 'alt.n' is missing"],
    ['alternate object branch member', all({ alt: { n: 1, flag: 0 } }), "Invalid parameter type for 'alt.flag', expected: boolean"],
    ['alternate list element (local name null)', all({ alts: [[]] }), "Invalid parameter type for 'null', expected: Alt2"],
    ['alternate branch conditioned away', all({ alts: [['x']] }), "Invalid parameter type for 'null', expected: Alt2"],
    ['alternate uint64 branch', all({ alts: [1.5] }), "Parameter 'alts[0]' expects uint64"],
    ['alternate enum branch', all({ alts: ['nope'] }), "Parameter 'null' does not accept value 'nope'"],
    ['alternate int8 branch given a double', all({ alt3: new JsonFloat(2) }), "Invalid parameter type for 'alt3', expected: integer"],
    ['alternate int8 branch range', all({ alt3: 300 }), "Parameter 'alt3' expects int8_t"],
    ['alternate given a string it has no branch for', all({ alt3: 'x' }), "Invalid parameter type for 'alt3', expected: Alt3"],
    ['depth first: nested problem before a later member', all({ tail: {}, outer: { kind: 'z', bogus: 1 } }), "Parameter 'outer.bogus' is unexpected"],
    ['depth first: later member after nested ok', all({ outer: { kind: 'z' }, tail: {} }), "Parameter 'tail.n' is missing"],
    ['nested unexpected before own unexpected', all({ zz: 1, tail: { n: 1, q: 2 } }), "Parameter 'tail.q' is unexpected"],
  ])('%s', (_what, args, desc) => {
    expect(check('everything', args)).toBe(desc);
  });
});

test('a union whose tag values include an Object.prototype name', () => {
  const m = new ModelBuilder()
    .enum('Proto', ['constructor', 'plain', 'bare'])
    .struct('WithN', { n: 'int' })
    .union('PU', { t: 'Proto' }, 't', { constructor: 'WithN', plain: 'WithN' })
    .command('pu', { data: 'PU', boxed: true })
    .build();
  const v = new ArgValidator(m, new Set());
  expect(v.validate('pu', { t: 'constructor', n: 1 })).toEqual({ ok: true, value: { t: 'constructor', n: 1 } });
  expect(v.validate('pu', { t: 'constructor' })).toEqual({ ok: false, desc: "Parameter 'n' is missing" });
  expect(v.validate('pu', { t: 'plain', n: 'x' })).toEqual({ ok: false, desc: "Invalid parameter type for 'n', expected: integer" });
  expect(v.validate('pu', { t: 'bare', n: 1 })).toEqual({ ok: false, desc: "Parameter 'n' is unexpected" });
  expect(v.validate('pu', { t: 'toString', n: 1 })).toEqual({ ok: false, desc: "Parameter 't' does not accept value 'toString'" });
  expect(v.validate('pu', { n: 1 })).toEqual({ ok: false, desc: "Parameter 't' is missing" });
});

describe('the real schema (loadSchema) against replies recorded from QEMU 7.2', () => {
  // Request arguments and the desc QEMU 7.2.22 answered (qemu-system-x86_64 -machine none,
  // probed over QMP); only types whose QAPI definition hostmemd shares with QEMU.
  const root = path.resolve(__dirname, '../../..');
  const real = loadSchema(path.join(root, 'qapi/schema.json'), (p: string) => fs.readFileSync(p, 'utf8'));
  const LINUX_KVM = new Set(['CONFIG_LINUX', 'CONFIG_POSIX', 'CONFIG_KVM']);
  const v = new ArgValidator(real, LINUX_KVM);
  /** As the daemon runs: the build's validators, without the meta-schema check. */
  const vp = new ArgValidator(real, LINUX_KVM, false, undefined, precompile(real, LINUX_KVM));
  const vpPruned = new ArgValidator(real, LINUX_KVM, false, 0, precompile(real, LINUX_KVM));
  test('every command schema passes ajv\'s meta-schema check (the daemon compiles without it)', () => {
    expect(() => new ArgValidator(real, new Set(['CONFIG_LINUX', 'CONFIG_POSIX', 'CONFIG_KVM']), true).compileAll()).not.toThrow();
  });
  test('warm-up steps end with every validator compiled, giving the same answers', () => {
    const w = new ArgValidator(real, new Set(['CONFIG_LINUX', 'CONFIG_POSIX', 'CONFIG_KVM']), false);
    let steps = 0;
    while (w.warmUpStep()) steps++;
    expect(steps).toBeGreaterThan(10);
    expect(w.warmUpStep()).toBe(false);
    expect(w.validate('object-add', ram({ size: 1, policy: 'x' }))).toEqual(v.validate('object-add', ram({ size: 1, policy: 'x' })));
    expect(w.validate('query-version', {})).toEqual({ ok: true, value: {} });
  });
  test.each<[string, JsonObject, string]>([
    ['object-add', ram({ size: -1, 'host-nodes': [1, 70000] }), "Parameter 'null' expects uint16_t"],
    ['object-add', ram({ size: 1, 'host-nodes': [1, -1] }), "Parameter 'null' expects uint16_t"],
    ['object-add', ram({ size: 1, 'host-nodes': [1, 'x'] }), "Parameter 'host-nodes[1]' expects uint64"],
    ['object-add', ram({ size: 1, 'host-nodes': [1, new JsonFloat(1)] }), "Parameter 'host-nodes[1]' expects uint64"],
    ['object-add', ram({ size: 1, 'host-nodes': [1.5] }), "Parameter 'host-nodes[0]' expects uint64"],
    ['object-add', ram({ size: 1, 'host-nodes': [true] }), "Parameter 'host-nodes[0]' expects uint64"],
    ['object-add', ram({ size: 1, 'prealloc-threads': -1 }), "Parameter 'prealloc-threads' expects uint32_t"],
    ['object-add', ram({ size: 1, 'prealloc-threads': 'x' }), "Parameter 'prealloc-threads' expects uint64"],
    ['object-add', ram({ size: 1, policy: 3 }), "Invalid parameter type for 'policy', expected: string"],
    ['object-add', ram({ size: 1, policy: 'x' }), "Parameter 'policy' does not accept value 'x'"],
    ['object-add', ram({ size: new JsonFloat(1) }), "Parameter 'size' expects uint64"],
    ['object-add', ram({ size: new JsonFloat(18446744073709551616) }), "Parameter 'size' expects uint64"],
    ['object-add', ram({ size: new JsonFloat(Number(-9223372036854775809n)) }), "Parameter 'size' expects uint64"],
    ['object-add', { 'qom-type': 3, id: 'a', size: 1 }, "Invalid parameter type for 'qom-type', expected: string"],
    ['object-add', { id: 'a', size: 1 }, "Parameter 'qom-type' is missing"],
    ['object-add', { 'qom-type': 'nosuch', id: 'a' }, "Parameter 'qom-type' does not accept value 'nosuch'"],
    ['object-add', { 'qom-type': 'memory-backend-ram', id: 5 }, "Invalid parameter type for 'id', expected: string"],
    ['object-add', { 'qom-type': 'memory-backend-ram', zz: 5 }, "Parameter 'id' is missing"],
    ['object-add', { 'qom-type': 'memory-backend-ram', id: 'x', size: '5' }, "Parameter 'size' expects uint64"],
    ['object-add', { 'qom-type': 'memory-backend-ram', id: 'x', size: {} }, "Parameter 'size' expects uint64"],
    ['object-add', { 'qom-type': 'memory-backend-ram', id: 'x', size: 5, 'host-nodes': {} }, "Invalid parameter type for 'host-nodes', expected: array"],
    ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r', sized: 1 }, "Parameter 'size' is missing"],
    ['qmp_capabilities', { enable: ['foo'] }, "Parameter 'null' does not accept value 'foo'"],
    ['qmp_capabilities', { enable: [1] }, "Invalid parameter type for 'enable[0]', expected: string"],
    ['qmp_capabilities', { enable: 'oob' }, "Invalid parameter type for 'enable', expected: array"],
    ['query-version', { a: 1 }, "Parameter 'a' is unexpected"],
  ])('%s %j', (command, args, desc) => {
    expect(v.validate(command, args)).toEqual({ ok: false, desc });
    expect(vp.validate(command, args)).toEqual({ ok: false, desc });
    // The fail-fast path (a list past the full-check limit) too.
    expect(vpPruned.validate(command, args)).toEqual({ ok: false, desc });
  });

  test('valid object-add arguments pass unchanged, size -1 wraps', () => {
    const args = { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1048576, share: true, 'host-nodes': [0], policy: 'bind' };
    for (const x of [v, vp, vpPruned]) {
      expect(x.validate('object-add', args)).toEqual({ ok: true, value: args });
      expect(x.validate('object-add', ram({ size: -1 }))).toEqual({ ok: true, value: ram({ size: 2n ** 64n - 1n }) });
      expect(x.validate('object-add', ram({ size: 1, 'host-nodes': [-1, 2], 'prealloc-threads': 2 }))).toEqual({ ok: false, desc: "Parameter 'null' expects uint16_t" });
    }
  });

  test('the build\'s validators serve every command, and nothing is left to compile', () => {
    expect(vp.precompiledCount).toBe([...real.entities.values()].filter((e) => e.meta === 'command' && condHolds(e.if, LINUX_KVM)).length);
    expect(vp.precompiledCount).toBeGreaterThan(20);
    expect(vp.warmUpStep()).toBe(false);
  });

  test('a validator compiled from another schema is not taken: that command compiles its own', () => {
    // Built without CONFIG_LINUX, object-add's schema lacks host-nodes and policy.
    const other = new ArgValidator(real, LINUX_KVM, false, undefined, precompile(real, new Set(['CONFIG_POSIX', 'CONFIG_KVM'])));
    expect(other.precompiledCount).toBeLessThan(vp.precompiledCount);
    const args = { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1048576, 'host-nodes': [0], policy: 'bind' };
    expect(other.validate('object-add', args)).toEqual({ ok: true, value: args });
    expect(other.validate('object-add', ram({ size: 1, policy: 'x' }))).toEqual(v.validate('object-add', ram({ size: 1, policy: 'x' })));
  });
});

// ---------------------------------------------------------------------------------------
// Property test: ArgValidator agrees with the reference visitor on random near-valid input.

const holds = (c: IfCond | undefined): boolean => condHolds(c, LINUX);
const EXTRA_KEYS = ['bogus', 'zz', 'constructor', 'a/b', '~0', 'size', 'n', 'flag', 'mem-path'];
const junk: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -300, max: 300 }),
  fc.constantFrom(1.5, -0.25, 1e300),
  fc.constantFrom(new JsonFloat(1), new JsonFloat(-3), new JsonFloat(1.8446744073709552e19)),
  fc.constantFrom(2n ** 63n, 2n ** 64n - 1n, -(2n ** 63n)),
  fc.constantFrom('x', 'oob', 'bind', 'a', ''),
  fc.constantFrom<JsonValue>({}, [], [1], { x: 1 }, ['bind']),
);
const INT_RANGES: Record<string, [bigint, bigint]> = {
  int: [-(2n ** 63n), 2n ** 63n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  int8: [-128n, 127n],
  int16: [-32768n, 32767n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint8: [0n, 255n],
  uint16: [0n, 65535n],
  uint32: [0n, 2n ** 32n - 1n],
  // uint64/size also take negative int64 input (wrapped modulo 2^64).
  uint64: [-(2n ** 63n), 2n ** 64n - 1n],
  size: [-(2n ** 63n), 2n ** 64n - 1n],
};

/** A bigint in the project's value form: a number up to 2^53, a bigint beyond. */
function exact(i: bigint): JsonValue {
  return i >= -BigInt(Number.MAX_SAFE_INTEGER) && i <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(i) : i;
}

/** Mostly values of the type's range (edges included), sometimes just outside or not an int. */
function intArb(typeName: string, w: number): fc.Arbitrary<JsonValue> {
  const [lo, hi] = INT_RANGES[typeName];
  const inRange = fc.oneof(fc.bigInt({ min: lo, max: hi }), fc.constantFrom(lo, hi, 0n, lo < 0n ? -1n : 1n)).map(exact);
  const outside = fc.oneof(
    fc.constantFrom(lo - 1n, hi + 1n, -(2n ** 63n) - 1n, 2n ** 64n).map((i) => (i < -(2n ** 63n) || i >= 2n ** 64n ? new JsonFloat(Number(i)) : exact(i))),
    fc.constantFrom<JsonValue>(new JsonFloat(1), 0.5, '1', 7n),
  );
  return fc.oneof({ weight: w, arbitrary: inRange }, { weight: 1, arbitrary: outside }, { weight: 1, arbitrary: junk });
}

function sometimesJunk(a: fc.Arbitrary<JsonValue>, w: number): fc.Arbitrary<JsonValue> {
  return fc.oneof({ weight: w, arbitrary: a }, { weight: 1, arbitrary: junk });
}

/** Builds an object from entries in a random key order. */
function objectFrom(entries: fc.Arbitrary<[string, JsonValue][]>): fc.Arbitrary<JsonObject> {
  return entries.chain((es) =>
    fc.array(fc.nat(), { minLength: es.length, maxLength: es.length }).map((prio) => {
      const order = es.map((e, i) => ({ e, p: prio[i] })).sort((a, b) => a.p - b.p);
      const o: JsonObject = {};
      for (const { e } of order) o[e[0]] = e[1];
      return o;
    }),
  );
}

/** Values of `typeName`; `w` is how many valid values come per deliberately wrong one. */
function arbFor(m: SchemaModel, typeName: string, depth: number, w: number): fc.Arbitrary<JsonValue> {
  if (typeName in INT_RANGES) return intArb(typeName, w);
  switch (typeName) {
    case 'str':
      return sometimesJunk(fc.string({ maxLength: 3 }), w);
    case 'bool':
      return sometimesJunk(fc.boolean(), w);
    case 'null':
      return sometimesJunk(fc.constant(null), w);
    case 'number':
      return sometimesJunk(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.constant(new JsonFloat(2)), fc.constant(2n ** 64n - 1n)), w);
    case 'any':
      return junk;
  }
  const e = m.entities.get(typeName);
  switch (e?.meta) {
    case 'enum':
      // Values the build conditions away are as rare as other wrong values.
      return fc.oneof(
        { weight: w, arbitrary: fc.constantFrom(...e.values.filter((v) => holds(v.if)).map((v) => v.name)) },
        { weight: 1, arbitrary: fc.constantFrom<JsonValue>('nosuch', 1, ...e.values.filter((v) => !holds(v.if)).map((v) => v.name)) },
      );
    case 'array':
      return depth > 3 ? junk : sometimesJunk(fc.array(arbFor(m, e.elementType, depth + 1, w), { maxLength: 3 }), w);
    case 'alternate':
      return fc.oneof(...e.members.map((b) => ({ weight: holds(b.if) ? w : 1, arbitrary: arbFor(m, b.type, depth, w) })), { weight: 1, arbitrary: junk });
    case 'object':
      return depth > 3 ? junk : sometimesJunk(objectArb(m, e.name, depth, w), w);
  }
  throw new Error(`no arbitrary for ${typeName}`);
}

/** Members of `typeName` (and, through `tag`, of the chosen branch), each present or not. */
function memberEntries(m: SchemaModel, typeName: string, depth: number, w: number): fc.Arbitrary<[string, JsonValue][]> {
  const t = m.entities.get(typeName);
  if (t?.meta !== 'object') throw new Error(typeName);
  // Present or absent: optional members half the time, required ones and members the build
  // conditions away as rarely as other mistakes.
  const parts = t.members.map((mem) => {
    const present = arbFor(m, mem.type, depth + 1, w).map((v): [string, JsonValue][] => [[mem.name, v]]);
    const [yes, no] = !holds(mem.if) ? [1, w] : mem.optional ? [1, 1] : [2 * w, 1];
    return fc.oneof({ weight: yes, arbitrary: present }, { weight: no, arbitrary: fc.constant<[string, JsonValue][]>([]) });
  });
  const own = fc.tuple(...parts).map((xs) => xs.flat());
  if (t.tag === undefined) return own;
  const tag = t.tag;
  return own.chain((es) => {
    const tv = es.find(([k]) => k === tag)?.[1];
    const variant = t.variants?.find((v) => v.case === tv);
    if (variant === undefined) return fc.constant(es);
    return memberEntries(m, variant.type, depth, w).map((more) => [...es, ...more]);
  });
}

function objectArb(m: SchemaModel, typeName: string, depth: number, w: number): fc.Arbitrary<JsonObject> {
  const extras = fc.subarray(EXTRA_KEYS, { maxLength: 2 }).chain((keys) => fc.tuple(...keys.map((k) => junk.map((v): [string, JsonValue] => [k, v]))));
  const entries = fc.tuple(memberEntries(m, typeName, depth, w), fc.oneof({ weight: w, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: extras })).map(([a, b]) => {
    const seen = new Set(a.map(([k]) => k));
    return [...a, ...b.filter(([k]) => !seen.has(k))];
  });
  return objectFrom(entries);
}

describe('property: first error in QEMU visit order, canonical values', () => {
  // [command, valid values per wrong one]: 'everything' twice, so that deep paths are reached
  // both by errors and by fully valid input (whose canonical values are compared too).
  const runs: [string, number][] = [
    ['everything', 15],
    ['everything', 60],
    ['outer', 30],
    ['object-add', 30],
    ['qmp_capabilities', 15],
    ['noargs', 3],
  ];
  test.each(runs)('%s (1 wrong value per %i)', (command, w) => {
    const reference = new ReferenceVisitor(model, LINUX); // declared below: classes are not hoisted
    const c = model.entities.get(command);
    if (c?.meta !== 'command') throw new Error(command);
    const argArb = objectArb(model, c.argType ?? 'q_empty', 0, w);
    let failures = 0;
    let successes = 0;
    fc.assert(
      fc.property(argArb, (args) => {
        const expected = reference.run(c.argType, args);
        if (expected.ok) successes++;
        else failures++;
        expect(validator.validate(command, args)).toEqual(expected);
        // Large lists are first cut short by a fail-fast pass: same answer for any list size.
        expect(prunedValidator.validate(command, args)).toEqual(expected);
        // The validators the build compiles answer alike, on both paths.
        expect(precompiledValidator.validate(command, args)).toEqual(expected);
        expect(precompiledPruned.validate(command, args)).toEqual(expected);
      }),
      { numRuns: 2500 },
    );
    // The generator must exercise both outcomes to mean anything.
    expect(failures).toBeGreaterThan(100);
    expect(successes).toBeGreaterThan(100);
  });
});

// ---------------------------------------------------------------------------------------
// The reference: a tiny re-statement of QEMU's QMP input visitor that walks the model
// directly, stops at the first problem, and keeps QEMU's own bookkeeping (a stack of dicts
// with their unvisited keys and of lists with their index; full names built from that stack
// as full_name_nth() does), so it shares no logic with src/qapi/validate.ts.

type Frame =
  | { kind: 'dict'; name: string | null; obj: JsonObject; unvisited: Set<string> }
  | { kind: 'list'; name: string | null; list: JsonValue[]; next: number; index: number };

class VisitError extends Error {}

const SIGNED: Record<string, [bigint, bigint]> = {
  int8: [-128n, 127n],
  int16: [-32768n, 32767n],
  int32: [-2147483648n, 2147483647n],
};
const UNSIGNED: Record<string, bigint> = { uint8: 255n, uint16: 65535n, uint32: 4294967295n };
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** QNum as QEMU stores it: an exact integer (int64/uint64) or a double. */
function qnum(v: JsonValue): { int: bigint } | { double: number } | undefined {
  if (typeof v === 'bigint') return { int: v };
  if (v instanceof JsonFloat) return { double: v.value };
  if (typeof v === 'number') return Number.isInteger(v) ? { int: BigInt(v) } : { double: v };
  return undefined;
}


class ReferenceVisitor {
  private stack: Frame[] = [];

  constructor(
    private readonly model: SchemaModel,
    private readonly defined: ReadonlySet<string>,
  ) {}

  private holds(c: IfCond | undefined): boolean {
    return condHolds(c, this.defined);
  }

  run(argType: string | undefined, args: JsonObject): { ok: true; value: JsonObject } | { ok: false; desc: string } {
    this.stack = [];
    try {
      // The marshaller: start_struct(NULL) on the root, members, check_struct.
      const value = this.struct(null, args, (obj, out) => {
        if (argType !== undefined) this.members(argType, obj, out);
      });
      return { ok: true, value };
    } catch (e) {
      if (e instanceof VisitError) return { ok: false, desc: e.message };
      throw e;
    }
  }

  /** QEMU's full_name(): innermost frame first, dict levels add ".name", lists "[i]". */
  private fullName(name: string | null): string {
    let out = '';
    let cur = name;
    for (let i = this.stack.length - 1; i >= 0; i--) {
      const so = this.stack[i];
      if (so.kind === 'dict') out = '.' + (cur ?? '<anonymous>') + out;
      else out = `[${so.index}]` + out;
      cur = so.name;
    }
    if (cur !== null) return cur + out;
    if (out.startsWith('.')) return out.slice(1);
    return out === '' ? '<anonymous>' : out;
  }

  /** qobject_input_get_object: the next value from the top container (consuming it). */
  private get(name: string | null, consume = true): JsonValue {
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) throw new Error('reference: no container');
    if (top.kind === 'dict') {
      if (name === null || !Object.prototype.hasOwnProperty.call(top.obj, name)) {
        throw new VisitError(`Parameter '${this.fullName(name)}' is missing`);
      }
      if (consume) top.unvisited.delete(name);
      return top.obj[name];
    }
    const v = top.list[top.next];
    if (consume) {
      top.next++;
      top.index++;
    }
    return v;
  }

  private struct(name: string | null, v: JsonValue | undefined, body: (obj: JsonObject, out: JsonObject) => void): JsonObject {
    const val = v === undefined ? this.get(name) : v;
    if (typeof val !== 'object' || val === null || Array.isArray(val) || val instanceof JsonFloat) {
      throw new VisitError(`Invalid parameter type for '${this.fullName(name)}', expected: object`);
    }
    this.stack.push({ kind: 'dict', name, obj: val, unvisited: new Set(memberKeys(val)) });
    const out: JsonObject = {};
    body(val, out);
    const top = this.stack[this.stack.length - 1] as Extract<Frame, { kind: 'dict' }>;
    // check_struct: the first leftover key (QEMU: hash order; here: the object's key order).
    for (const k of memberKeys(val)) {
      if (top.unvisited.has(k)) throw new VisitError(`Parameter '${this.fullName(k)}' is unexpected`);
    }
    this.stack.pop();
    return out;
  }

  /** visit_type_T_members: base members, then the union branch the tag selects. */
  private members(typeName: string, obj: JsonObject, out: JsonObject): void {
    const t = this.model.entities.get(typeName);
    if (t?.meta !== 'object') throw new Error(`reference: ${typeName} is not an object type`);
    for (const m of t.members) {
      if (!this.holds(m.if)) continue;
      if (m.optional && !Object.prototype.hasOwnProperty.call(obj, m.name)) continue;
      out[m.name] = this.value(m.name, m.type);
    }
    if (t.tag !== undefined) {
      const tag = out[t.tag] as string;
      const variant = t.variants?.find((x) => x.case === tag && this.holds(x.if));
      if (variant !== undefined) this.members(variant.type, obj, out);
    }
  }

  private value(name: string | null, typeName: string): JsonValue {
    const local = name ?? 'null';
    const bad = (what: string): VisitError => new VisitError(`Invalid parameter type for '${this.fullName(name)}', expected: ${what}`);
    if (typeName === 'int' || typeName === 'int64' || typeName in SIGNED) {
      const raw = this.get(name);
      const q = qnum(raw);
      if (q === undefined || !('int' in q) || q.int < INT64_MIN || q.int > INT64_MAX) throw bad('integer');
      const r = SIGNED[typeName];
      if (r !== undefined && (q.int < r[0] || q.int > r[1])) throw new VisitError(`Parameter '${local}' expects ${typeName}_t`);
      return raw;
    }
    if (typeName === 'uint64' || typeName === 'size' || typeName in UNSIGNED) {
      const raw = this.get(name);
      const q = qnum(raw);
      if (q === undefined || !('int' in q) || q.int < INT64_MIN || q.int > UINT64_MAX) {
        throw new VisitError(`Parameter '${this.fullName(name)}' expects uint64`);
      }
      const u = q.int < 0n ? q.int + 2n ** 64n : q.int;
      const max = UNSIGNED[typeName];
      if (max !== undefined && u > max) throw new VisitError(`Parameter '${local}' expects ${typeName}_t`);
      return q.int < 0n ? u : raw; // stored modulo 2^64, beyond 2^53 so a bigint
    }
    switch (typeName) {
      case 'str': {
        const v = this.get(name);
        if (typeof v !== 'string') throw bad('string');
        return v;
      }
      case 'bool': {
        const v = this.get(name);
        if (typeof v !== 'boolean') throw bad('boolean');
        return v;
      }
      case 'null': {
        const v = this.get(name);
        if (v !== null) throw bad('null');
        return v;
      }
      case 'number': {
        const v = this.get(name);
        if (qnum(v) === undefined) throw bad('number');
        return v;
      }
      case 'any':
        return this.get(name);
    }
    const e = this.model.entities.get(typeName);
    if (e === undefined) throw new Error(`reference: unknown type ${typeName}`);
    switch (e.meta) {
      case 'array': {
        const v = this.get(name);
        if (!Array.isArray(v)) throw bad('array');
        this.stack.push({ kind: 'list', name, list: v, next: 0, index: -1 });
        const out: JsonValue[] = [];
        while ((this.stack[this.stack.length - 1] as Extract<Frame, { kind: 'list' }>).next < v.length) {
          out.push(this.value(null, e.elementType));
        }
        this.stack.pop();
        return out;
      }
      case 'enum': {
        const v = this.get(name);
        if (typeof v !== 'string') throw bad('string');
        if (!e.values.some((x) => x.name === v && this.holds(x.if))) throw new VisitError(`Parameter '${local}' does not accept value '${v}'`);
        return v;
      }
      case 'object':
        return this.struct(name, undefined, (obj, out) => this.members(typeName, obj, out));
      case 'alternate': {
        const v = this.get(name, false);
        const kind = this.qtype(v);
        for (const m of e.members) {
          if (!this.holds(m.if) || this.branchQtype(m.type) !== kind) continue;
          return this.value(name, m.type);
        }
        throw new VisitError(`Invalid parameter type for '${local}', expected: ${typeName}`);
      }
    }
    throw new Error(`reference: cannot visit ${typeName}`);
  }

  private qtype(v: JsonValue): string {
    if (v === null) return 'qnull';
    if (typeof v === 'string') return 'qstring';
    if (typeof v === 'boolean') return 'qbool';
    if (qnum(v) !== undefined) return 'qnum';
    return Array.isArray(v) ? 'qlist' : 'qdict';
  }

  private branchQtype(typeName: string): string {
    if (['str'].includes(typeName)) return 'qstring';
    if (['bool'].includes(typeName)) return 'qbool';
    if (typeName === 'null') return 'qnull';
    if (['number', 'int', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'size'].includes(typeName)) return 'qnum';
    const e = this.model.entities.get(typeName);
    if (e?.meta === 'enum') return 'qstring';
    if (e?.meta === 'array') return 'qlist';
    return 'qdict';
  }
}
