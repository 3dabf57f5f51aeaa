// query-qmp-schema from the model (qemu-facts §3.6): exact SchemaInfo arrays for a small
// hand-built schema, QEMU's generation-time numbering under build conditions, and closure
// of the answer for the project's real schema.
import * as fs from 'fs';
import * as path from 'path';
import { SchemaInfo, SchemaInfoCommand, buildIntrospection } from '../../../src/qapi/introspect';
import { loadSchema } from '../../../src/qapi/load';
import { ModelBuilder, objectAddModel } from './model-fixtures';

function sampleModel(): ModelBuilder {
  return new ModelBuilder()
    .enum('Color', ['red', { name: 'green', if: 'CONFIG_G', features: ['deprecated'] }, { name: 'blue', features: [{ name: 'unstable', if: 'CONFIG_NOPE' }] }], {
      features: ['feat-a'],
    })
    .struct('Base', { id: 'str', '*n': 'uint8' })
    .struct(
      'Thing',
      { '*color': 'Color', sizes: '[size]', '*tags': '[str]', '*secret': { type: 'str', if: 'CONFIG_NOPE' }, '*old': { type: 'int', features: ['deprecated'] } },
      { base: 'Base' },
    )
    .enum('Kind', ['a', 'b', 'c'])
    .struct('BranchA', { x: 'number' })
    .struct('Hidden', { h: 'bool' }, { if: 'CONFIG_NOPE' })
    .union('U', { kind: 'Kind', '*note': 'str' }, 'kind', { a: 'BranchA', b: { type: 'Hidden', if: 'CONFIG_NOPE' } })
    .alternate('Alt', { s: 'str', t: 'Thing', n: { type: 'null', if: 'CONFIG_NOPE' } })
    .struct('Unused', { z: 'int' })
    .struct('OnlyGone', { v: 'int32' })
    .command('get-thing', { data: { '*which': 'Alt' }, returns: 'Thing', allowOob: true, features: ['unstable'] })
    .command('do-u', { data: 'U', boxed: true })
    .command('nothing')
    .command('gone', { if: 'CONFIG_NOPE', data: { q: 'OnlyGone' } })
    .event('THING_CHANGED', { data: { thing: 'Thing', '*count': 'int64' } })
    .event('PING', { features: [{ name: 'deprecated', if: 'CONFIG_NOPE' }] });
}

// Masked names are fixed when the generator runs, whatever the build defines:
// 0 q_obj_get-thing-arg, 1 Thing, 2 U, 3 q_empty, 4 q_obj_gone-arg, 5 q_obj_THING_CHANGED-arg,
// 6 Alt, 7 Color, 8 Kind, 9 BranchA, 10 Hidden, 11 OnlyGone.
const EXPECTED_G: SchemaInfo[] = [
  { 'allow-oob': true, 'arg-type': '0', features: ['unstable'], 'meta-type': 'command', name: 'get-thing', 'ret-type': '1' },
  { 'arg-type': '2', 'meta-type': 'command', name: 'do-u', 'ret-type': '3' },
  { 'arg-type': '3', 'meta-type': 'command', name: 'nothing', 'ret-type': '3' },
  { 'arg-type': '5', 'meta-type': 'event', name: 'THING_CHANGED' },
  // A feature list whose every feature is conditioned away stays, empty (QEMU's #if per entry).
  { 'arg-type': '3', features: [], 'meta-type': 'event', name: 'PING' },
  { members: [{ default: null, name: 'which', type: '6' }], 'meta-type': 'object', name: '0' },
  {
    members: [
      { name: 'id', type: 'str' },
      { default: null, name: 'n', type: 'int' },
      { default: null, name: 'color', type: '7' },
      { name: 'sizes', type: '[int]' },
      { default: null, name: 'tags', type: '[str]' },
      { default: null, features: ['deprecated'], name: 'old', type: 'int' },
    ],
    'meta-type': 'object',
    name: '1',
  },
  {
    members: [
      { name: 'kind', type: '8' },
      { default: null, name: 'note', type: 'str' },
    ],
    'meta-type': 'object',
    name: '2',
    tag: 'kind',
    variants: [
      { case: 'a', type: '9' },
      { case: 'c', type: '3' },
    ],
  },
  { members: [], 'meta-type': 'object', name: '3' },
  {
    members: [
      { name: 'thing', type: '1' },
      { default: null, name: 'count', type: 'int' },
    ],
    'meta-type': 'object',
    name: '5',
  },
  { members: [{ type: 'str' }, { type: '1' }], 'meta-type': 'alternate', name: '6' },
  { 'json-type': 'string', 'meta-type': 'builtin', name: 'str' },
  { 'json-type': 'int', 'meta-type': 'builtin', name: 'int' },
  {
    features: ['feat-a'],
    members: [{ name: 'red' }, { features: ['deprecated'], name: 'green' }, { features: [], name: 'blue' }],
    'meta-type': 'enum',
    name: '7',
    values: ['red', 'green', 'blue'],
  },
  { 'element-type': 'int', 'meta-type': 'array', name: '[int]' },
  { 'element-type': 'str', 'meta-type': 'array', name: '[str]' },
  { members: [{ name: 'a' }, { name: 'b' }, { name: 'c' }], 'meta-type': 'enum', name: '8', values: ['a', 'b', 'c'] },
  { members: [{ name: 'x', type: 'number' }], 'meta-type': 'object', name: '9' },
  // Reachable only from the conditioned-away command, yet unconditional: QEMU keeps it.
  { members: [{ name: 'v', type: 'int' }], 'meta-type': 'object', name: '11' },
  { 'json-type': 'null', 'meta-type': 'builtin', name: 'null' },
  { 'json-type': 'number', 'meta-type': 'builtin', name: 'number' },
  { 'json-type': 'boolean', 'meta-type': 'builtin', name: 'bool' },
];

describe('buildIntrospection', () => {
  test('exact SchemaInfo list for a build defining CONFIG_G', () => {
    expect(buildIntrospection(sampleModel().build(), new Set(['CONFIG_G']))).toEqual(EXPECTED_G);
  });

  test('every condition holding: same names, conditional parts present', () => {
    const all = buildIntrospection(sampleModel().build(), new Set(['CONFIG_G', 'CONFIG_NOPE']));
    const byName = new Map(all.map((e) => [e.name, e]));
    expect(all.map((e) => e.name)).toEqual([
      'get-thing', 'do-u', 'nothing', 'gone', 'THING_CHANGED', 'PING',
      '0', '1', '2', '3', '4', '5', '6', 'str', 'int', '7', '[int]', '[str]', '8', '9', '10', '11', 'null', 'number', 'bool',
    ]);
    expect(byName.get('gone')).toEqual({ 'arg-type': '4', 'meta-type': 'command', name: 'gone', 'ret-type': '3' });
    expect(byName.get('PING')).toEqual({ 'arg-type': '3', features: ['deprecated'], 'meta-type': 'event', name: 'PING' });
    expect(byName.get('2')).toMatchObject({ variants: [{ case: 'a', type: '9' }, { case: 'b', type: '10' }, { case: 'c', type: '3' }] });
    expect(byName.get('6')).toEqual({ members: [{ type: 'str' }, { type: '1' }, { type: 'null' }], 'meta-type': 'alternate', name: '6' });
    expect(byName.get('7')).toMatchObject({ members: [{ name: 'red' }, { features: ['deprecated'], name: 'green' }, { features: ['unstable'], name: 'blue' }] });
    expect((byName.get('1') as { members: { name: string }[] }).members.map((m) => m.name)).toEqual(['id', 'n', 'color', 'sizes', 'tags', 'secret', 'old']);
  });

  test('nothing defined: enum values and members drop out, numbering stays', () => {
    const none = buildIntrospection(sampleModel().build(), new Set());
    expect(none.find((e) => e.name === '7')).toMatchObject({ values: ['red', 'blue'] });
    expect(none.map((e) => e.name)).toEqual(EXPECTED_G.map((e) => e.name));
  });

  test('keys are inserted in sorted order, as QEMU builds its QLIT dicts', () => {
    for (const e of buildIntrospection(sampleModel().build(), new Set(['CONFIG_NOPE']))) {
      expect(Object.keys(e)).toEqual(Object.keys(e).sort());
      const members = (e as { members?: object[] }).members ?? [];
      for (const m of members) expect(Object.keys(m)).toEqual(Object.keys(m).sort());
    }
  });

  test('object-add: boxed union argument, qom-type enum, implicit empty branches', () => {
    const info = buildIntrospection(objectAddModel().build(), new Set(['CONFIG_LINUX']));
    expect(info.slice(0, 3)).toEqual([
      { 'arg-type': '0', 'meta-type': 'command', name: 'qmp_capabilities', 'ret-type': '1' },
      { 'arg-type': '1', 'meta-type': 'command', name: 'query-version', 'ret-type': '2' },
      { 'arg-type': '3', 'meta-type': 'command', name: 'object-add', 'ret-type': '1' },
    ]);
    const oa = info.find((e) => e.name === '3');
    expect(oa).toMatchObject({
      'meta-type': 'object',
      tag: 'qom-type',
      members: [{ name: 'qom-type', type: expect.any(String) }, { name: 'id', type: 'str' }],
    });
    const cases = (oa as { variants: { case: string; type: string }[] }).variants;
    // Explicit branches first (the memfd one kept by CONFIG_LINUX), then the implicit ones.
    expect(cases.map((v) => v.case)).toEqual(['memory-backend-file', 'memory-backend-memfd', 'memory-backend-ram', 'thread-context', 'secret', 'can-bus']);
    expect(cases.find((v) => v.case === 'can-bus')?.type).toBe('1'); // q_empty, shared with the empty args
    expect(info.filter((e) => e['meta-type'] === 'builtin').map((e) => e.name).sort()).toEqual(['bool', 'int', 'str']);
  });
});

describe('the real schema (loadSchema)', () => {
  const root = path.resolve(__dirname, '../../..');
  const model = loadSchema(path.join(root, 'qapi/schema.json'), (p: string) => fs.readFileSync(p, 'utf8'));
  const info = buildIntrospection(model, new Set(['CONFIG_LINUX', 'CONFIG_POSIX', 'CONFIG_KVM']));

  test('commands and events first, then the types, every reference resolved', () => {
    const names = new Set(info.map((e) => e.name));
    expect(names.size).toBe(info.length);
    const firstType = info.findIndex((e) => e['meta-type'] !== 'command' && e['meta-type'] !== 'event');
    expect(info.slice(firstType).every((e) => e['meta-type'] !== 'command' && e['meta-type'] !== 'event')).toBe(true);
    const refs: string[] = [];
    for (const e of info) {
      if (e['meta-type'] === 'command') refs.push(e['arg-type'], e['ret-type']);
      else if (e['meta-type'] === 'event') refs.push(e['arg-type']);
      else if (e['meta-type'] === 'array') refs.push(e['element-type']);
      else if (e['meta-type'] === 'object') refs.push(...e.members.map((m) => m.type), ...(e.variants ?? []).map((v) => v.type));
      else if (e['meta-type'] === 'alternate') refs.push(...e.members.map((m) => m.type));
    }
    for (const r of refs) expect(names).toContain(r);
    // object-add and quit both answer {}: the same (masked) empty object type.
    const objectAdd = info.find((e) => e.name === 'object-add') as SchemaInfoCommand;
    const quit = info.find((e) => e.name === 'quit') as SchemaInfoCommand;
    expect(objectAdd['ret-type']).toBe(quit['ret-type']);
    expect(info.find((e) => e.name === quit['ret-type'])).toEqual({ members: [], 'meta-type': 'object', name: quit['ret-type'] });
    expect(info.filter((e) => e['meta-type'] === 'builtin' && e['json-type'] === 'int').map((e) => e.name)).toEqual(['int']);
  });
});
