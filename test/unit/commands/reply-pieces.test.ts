// query-memdev and qom-list answer from pieces encoded ahead (MemdevReplies, QomListReplies):
// the text must be exactly what encoding the whole value would give, and stay current
// across add, qom-set (accepted or refused), delete and an object replaced under the same id.
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fake from '../../fakes/native';
import { CTX, MiB, objectsFixture } from '../../fakes/objects';
import { MemdevReplies, QomListReplies, qomHandlers } from '../../../src/commands/qom';
import { encodeJson } from '../../../src/json/writer';
import { PreEncoded } from '../../../src/qmp/messages';
import { JsonValue } from '../../../src/json/value';
import { HostMemoryBackend } from '../../../src/backends';

beforeEach(() => fake.reset());

test('pieces refreshed on add and qom-set give the text of encoding the whole reply', async () => {
  const fx = objectsFixture();
  const memdevs = new MemdevReplies();
  const lists = new QomListReplies();
  const h = qomHandlers(fx.tree, fx.objects, memdevs, lists);
  const run = async (cmd: string, args: Record<string, JsonValue> = {}): Promise<JsonValue> => {
    const r = await h.get(cmd)!(args, CTX);
    return r instanceof PreEncoded ? r.json : (r as JsonValue);
  };
  const add = async (id: string, extra: Record<string, JsonValue> = {}): Promise<void> => {
    await run('object-add', { 'qom-type': 'memory-backend-memfd', id, size: MiB, ...extra });
    // What the daemon does on 'object-added'.
    const o = fx.objects.get(id)!;
    memdevs.refresh(o);
    lists.refresh(o);
  };
  const memdevText = (): string => encodeJson([...fx.objects.list()].map((o) => (o as HostMemoryBackend).memdev()), { qdictOrder: true });
  const listText = (path: string): string => encodeJson(fx.tree.lookupForList(path).listProperties(), { qdictOrder: true });

  expect(await run('query-memdev')).toBe('[]');
  for (let i = 0; i < 5; i++) await add(`m${i}`, i === 2 ? { dump: false } : {});
  expect(await run('query-memdev')).toBe(memdevText());
  expect(await run('qom-list', { path: '/objects' })).toBe(listText('/objects'));
  expect(await run('qom-list', { path: 'm1' })).toBe(listText('m1'));

  // A live change shows at once, also through the reused whole reply.
  await run('qom-set', { path: 'm3', property: 'dump', value: false });
  expect(await run('query-memdev')).toBe(memdevText());
  expect(JSON.parse((await run('query-memdev')) as string)[3].dump).toBe(false);
  // A refused value that still changed part of the object (host-nodes ORs values in).
  await expect(run('qom-set', { path: 'm4', property: 'host-nodes', value: [1, 200] })).rejects.toThrow();
  expect(await run('query-memdev')).toBe(memdevText());

  // Delete, and an id used again by another type: no stale piece.
  await run('object-del', { id: 'm1' });
  await run('object-add', { 'qom-type': 'memory-backend-ram', id: 'm1', size: MiB });
  expect(await run('query-memdev')).toBe(memdevText());
  expect(await run('qom-list', { path: '/objects' })).toBe(listText('/objects'));
  expect(JSON.parse((await run('qom-list', { path: '/objects' })) as string).pop()).toEqual({ name: 'm1', type: 'child<memory-backend-ram>' });
  fx.close();
});

test('without refresh (no daemon events) entries are encoded on first use', async () => {
  const fx = objectsFixture();
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: 2 * MiB, prealloc: true });
  expect(await fx.run('query-memdev')).toEqual([{ id: 'a', size: 2 * MiB, merge: true, dump: true, prealloc: true, share: true, reserve: true, 'host-nodes': [], policy: 'default' }]);
  expect(await fx.run('qom-list', { path: '/objects' })).toEqual([
    { name: 'type', type: 'string' },
    { name: 'a', type: 'child<memory-backend-memfd>' },
  ]);
  fx.close();
});
