// query-memdev and qom-list answer from pieces encoded ahead (MemdevReplies, QomListReplies),
// joined into blocks of bytes (ReplyBlocks): the text must be exactly what encoding the whole
// value would give, and stay current across add, qom-set (accepted or refused), delete (told
// or not) and an object replaced under the same id.
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fake from '../../fakes/native';
import { CTX, MiB, objectsFixture } from '../../fakes/objects';
import { MemdevReplies, QomListReplies, qomHandlers } from '../../../src/commands/qom';
import { encodeJson } from '../../../src/json/writer';
import { PreEncoded } from '../../../src/qmp/messages';
import { JsonValue } from '../../../src/json/value';
import { HostMemoryBackend } from '../../../src/backends';
import { BLOCK_ITEMS, ReplyBlocks } from '../../../src/commands/reply-blocks';

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

test('hundreds of backends in blocks: the same text after adds, qom-set, deletes announced or not, and an unannounced add', async () => {
  const fx = objectsFixture();
  const memdevs = new MemdevReplies();
  const lists = new QomListReplies();
  const h = qomHandlers(fx.tree, fx.objects, memdevs, lists);
  const result = async (cmd: string, args: Record<string, JsonValue> = {}): Promise<PreEncoded> => (await h.get(cmd)!(args, CTX)) as PreEncoded;
  const text = async (cmd: string, args: Record<string, JsonValue> = {}): Promise<string> => {
    const r = await result(cmd, args);
    // What the UNIX socket writes (the chunks as they are) and what other transports write.
    const bytes = r.chunks ? Buffer.concat(r.chunks).toString('latin1') : r.json;
    expect(bytes).toBe(r.json);
    return bytes;
  };
  const memdevText = (): string => encodeJson([...fx.objects.list()].map((o) => (o as HostMemoryBackend).memdev()), { qdictOrder: true });
  const listText = (): string => encodeJson(fx.tree.lookupForList('/objects').listProperties(), { qdictOrder: true });
  const check = async (): Promise<void> => {
    expect(await text('query-memdev')).toBe(memdevText());
    expect(await text('qom-list', { path: '/objects' })).toBe(listText());
  };
  const add = async (id: string, announce = true): Promise<void> => {
    await h.get('object-add')!({ 'qom-type': 'memory-backend-memfd', id, size: MiB }, CTX);
    if (!announce) return;
    memdevs.refresh(fx.objects.get(id)!);
    lists.refresh(fx.objects.get(id)!);
  };
  const del = async (id: string, announce = true): Promise<void> => {
    const o = fx.objects.get(id)!;
    await h.get('object-del')!({ id }, CTX);
    if (!announce) return;
    memdevs.removed(o);
    lists.removed(o);
  };

  const n = 2 * BLOCK_ITEMS + 44;
  for (let i = 0; i < n; i++) await add(`m${i}`);
  expect((await result('query-memdev')).chunks!.length).toBe(2 + 3); // [ + 3 blocks + ]
  await check();
  await h.get('qom-set')!({ path: `/objects/m${BLOCK_ITEMS + 3}`, property: 'dump', value: false }, CTX);
  await check();
  await del('m0'); // the first block's first entry: the reply still starts "[{"
  await del(`m${BLOCK_ITEMS}`);
  await check();
  await del('m7', false); // nobody told: the list differs from the blocks, which are regrouped
  await check();
  await add('late', false);
  await check();
  await add('m0'); // an id used again goes to the end
  await check();
  for (const o of [...fx.objects.list()]) await del(o.name, o.name !== 'm9');
  expect(await text('query-memdev')).toBe('[]');
  expect(await text('qom-list', { path: '/objects' })).toBe(listText());
  fx.close();
});

test('ReplyBlocks: a full block is encoded as it fills up, so that a reply only encodes the last one', () => {
  let encoded = 0;
  const items = Array.from({ length: BLOCK_ITEMS * 3 + 1 }, (_, i) => ({ i }));
  const blocks = new ReplyBlocks<{ i: number }>((x) => (encoded++, `${x.i}`));
  for (const x of items) blocks.append(x);
  expect(encoded).toBe(items.length);
  const chunks = blocks.chunks(() => items);
  expect(encoded).toBe(items.length); // read once each, on append
  expect(Buffer.concat(chunks).toString('latin1')).toBe(items.map((x) => x.i).join(', '));
  expect(Buffer.concat(blocks.chunks(() => items, true)).toString('latin1')).toBe(`, ${items.map((x) => x.i).join(', ')}`);
});
