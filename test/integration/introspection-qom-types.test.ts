// Introspection and the type registry as clients see them: the guest-memfd branch in
// query-qmp-schema, qom-list-types and qom-list-properties with QEMU's shapes and errors,
// and the root of the object tree.
import { RawQmpClient } from '../helpers/qmp-client';
import { startWithClient, stopWithClient, InProcess } from '../helpers/daemon';

let d: InProcess;
let c: RawQmpClient;
beforeAll(async () => ({ d, c } = await startWithClient()));
afterAll(() => stopWithClient({ d, c }));

type Info = { name: string; 'meta-type': string; [k: string]: unknown };

test('query-qmp-schema shows object-add with a memory-backend-guest-memfd branch, masked names and folded ints', async () => {
  const schema = (await c.execute('query-qmp-schema')).return as Info[];
  const byName = new Map(schema.map((e) => [e.name, e]));
  const add = byName.get('object-add') as Info;
  expect(add).toMatchObject({ 'meta-type': 'command', 'ret-type': expect.stringMatching(/^\d+$/) });
  const args = byName.get(add['arg-type'] as string) as Info;
  expect(args).toMatchObject({ 'meta-type': 'object', tag: 'qom-type' });
  const variants = args.variants as { case: string; type: string }[];
  expect(variants.map((v) => v.case)).toEqual(expect.arrayContaining(['memory-backend-guest-memfd', 'memory-backend-memfd', 'memory-backend-ram', 'memory-backend-file', 'memory-backend-shm']));
  const tagType = byName.get((args.members as { name: string; type: string }[]).find((m) => m.name === 'qom-type')!.type) as Info;
  expect(tagType['meta-type']).toBe('enum');
  expect(tagType.values).toContain('memory-backend-guest-memfd');
  const gm = byName.get(variants.find((v) => v.case === 'memory-backend-guest-memfd')!.type) as Info;
  expect((gm.members as { name: string; type: string }[]).find((m) => m.name === 'size')).toEqual({ name: 'size', type: 'int' });
  expect(byName.get('query-prealloc')).toMatchObject({ 'allow-oob': true });
  expect(schema.filter((e) => e['meta-type'] === 'builtin').map((e) => e.name).sort()).toEqual(['any', 'bool', 'int', 'str']);
  for (const e of schema) if (!['builtin', 'command', 'event'].includes(e['meta-type']) && !e.name.startsWith('[')) expect(e.name).toMatch(/^\d+$/);
});

test('qom-list-types lists the backends, abstract ones only on request', async () => {
  const concrete = (await c.execute('qom-list-types', { implements: 'memory-backend' })).return as Record<string, unknown>[];
  expect(concrete).toEqual(
    expect.arrayContaining([
      { name: 'memory-backend-ram', parent: 'memory-backend' },
      { name: 'memory-backend-guest-memfd', parent: 'memory-backend' },
    ]),
  );
  expect(concrete.find((t) => t.name === 'memory-backend')).toBeUndefined();
  const all = (await c.execute('qom-list-types', { implements: 'memory-backend', abstract: true })).return as Record<string, unknown>[];
  expect(all).toContainEqual({ name: 'memory-backend', abstract: true, parent: 'object' });
  expect(await c.execute('qom-list-types', { implements: 'nosuch' })).toEqual({ return: [] });
});

test('qom-list-properties gives type, description and default; unknown types are DeviceNotFound', async () => {
  const props = (await c.execute('qom-list-properties', { typename: 'memory-backend-memfd' })).return as Record<string, unknown>[];
  expect(props).toContainEqual({ name: 'type', type: 'string' });
  expect(props).toContainEqual(expect.objectContaining({ name: 'seal', type: 'bool', 'default-value': true }));
  expect(props).toContainEqual(expect.objectContaining({ name: 'policy', type: 'HostMemPolicy', 'default-value': 'default' }));
  expect(props.find((p) => p.name === 'size')).toMatchObject({ type: 'int', description: expect.any(String) });
  expect(await c.execute('qom-list-properties', { typename: 'nosuch' })).toEqual({ error: { class: 'DeviceNotFound', desc: "Class 'nosuch' not found" } });
});

test('the root of the tree and partial paths', async () => {
  expect(await c.execute('qom-list', { path: '/' })).toEqual({ return: [{ name: 'type', type: 'string' }, { name: 'objects', type: 'child<container>' }] });
  expect(await c.execute('qom-get', { path: 'objects', property: 'type' })).toEqual({ return: 'container' });
  expect(await c.execute('qom-list', { path: '/objects/nosuch' })).toEqual({ error: { class: 'DeviceNotFound', desc: "Device '/objects/nosuch' not found" } });
});
