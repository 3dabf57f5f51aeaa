// Command and event tables: conditions evaluated, definition order, flags and features.
import { buildCommandTable, buildEventTable } from '../../../src/qapi/command-table';
import { ModelBuilder } from './model-fixtures';

const model = new ModelBuilder()
  .struct('Info', { a: 'int' })
  .command('query-a', { returns: 'Info', allowPreconfig: true })
  .command('do-b', { data: { x: 'str' }, allowOob: true, features: ['deprecated', { name: 'unstable', if: 'CONFIG_X' }] })
  .command('kvm-only', { if: 'CONFIG_KVM' })
  .command('boxed', { data: 'Info', boxed: true, successResponse: false, features: [{ name: 'unstable', if: 'CONFIG_KVM' }] })
  .event('EV_A', { data: { n: 'int' }, features: ['unstable'] })
  .event('EV_KVM', { if: 'CONFIG_KVM' })
  .event('EV_B', { data: 'Info', boxed: true })
  .build();

test('commands whose condition holds, in definition order, with their flags', () => {
  expect(buildCommandTable(model, new Set())).toEqual([
    { name: 'query-a', retType: 'Info', boxed: false, allowOob: false, allowPreconfig: true, successResponse: true, features: [], deprecated: false, unstable: false },
    { name: 'do-b', argType: 'q_obj_do-b-arg', boxed: false, allowOob: true, allowPreconfig: false, successResponse: true, features: ['deprecated'], deprecated: true, unstable: false },
    { name: 'boxed', argType: 'Info', boxed: true, allowOob: false, allowPreconfig: false, successResponse: false, features: [], deprecated: false, unstable: false },
  ]);
  const kvm = buildCommandTable(model, new Set(['CONFIG_KVM', 'CONFIG_X']));
  expect(kvm.map((c) => c.name)).toEqual(['query-a', 'do-b', 'kvm-only', 'boxed']);
  expect(kvm[1]).toMatchObject({ features: ['deprecated', 'unstable'], deprecated: true, unstable: true });
  expect(kvm[2]).not.toHaveProperty('argType');
  expect(kvm[2]).not.toHaveProperty('retType');
  expect(kvm[3]).toMatchObject({ features: ['unstable'], unstable: true });
});

test('events whose condition holds, in definition order', () => {
  expect(buildEventTable(model, new Set())).toEqual([
    { name: 'EV_A', argType: 'q_obj_EV_A-arg', boxed: false, features: ['unstable'], deprecated: false, unstable: true },
    { name: 'EV_B', argType: 'Info', boxed: true, features: [], deprecated: false, unstable: false },
  ]);
  expect(buildEventTable(model, new Set(['CONFIG_KVM'])).map((e) => e.name)).toEqual(['EV_A', 'EV_KVM', 'EV_B']);
});
