// Group commit (issue 16 item 3): changes ready at once share one durable write of the journal,
// within one connection's pipeline (a change of another object starts once the ones before it
// only wait for the journal) and across connections; replies still come in request order, each
// after its change is durable, and changes of one object keep their order. Real daemon in
// process, real journal in a temp dir; the number of durable writes is counted at the journal.
import { Journal } from '../../src/journal/journal';
import { InProcess, startInProcess } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';

jest.setTimeout(60000);

let d: InProcess;
const appends: number[] = [];
let spy: jest.SpyInstance;

beforeEach(async () => {
  d = await startInProcess();
  appends.length = 0;
  // Each call of the private append is one write + one fdatasync of the log: count its changes.
  const proto = Journal.prototype as unknown as { append: (text: string, batch: readonly unknown[]) => Promise<void> };
  const real = proto.append;
  spy = jest.spyOn(proto, 'append').mockImplementation(function (this: unknown, text: string, batch: readonly unknown[]) {
    if (batch.length > 0) appends.push(batch.length);
    return real.call(this, text, batch);
  });
});
afterEach(async () => {
  spy.mockRestore();
  await d.stop();
});

const add = (id: string, n: number): string => JSON.stringify({ execute: 'object-add', arguments: { 'qom-type': 'memory-backend-memfd', id, size: 1 << 20 }, id: n });

async function replies(c: RawQmpClient, n: number): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  while (out.length < n) {
    const m = await c.json(20000);
    if (!('event' in m)) out.push(m);
  }
  return out;
}

test('one connection pipelining 32 object-adds: fewer durable writes than changes, replies in order', async () => {
  const c = await RawQmpClient.negotiated(d.sock);
  c.send(Array.from({ length: 32 }, (_, i) => add(`p${i}`, i)).join('\n'));
  expect(await replies(c, 32)).toEqual(Array.from({ length: 32 }, (_, i) => ({ return: {}, id: i })));
  expect(appends.reduce((a, b) => a + b, 0)).toBe(32);
  expect(appends.length).toBeLessThan(16);
  const ids = ((await c.execute('query-memdev')).return as { id: string }[]).map((m) => m.id);
  expect(ids).toEqual(Array.from({ length: 32 }, (_, i) => `p${i}`));
  c.close();
});

test('changes of one object in a pipeline run in order: add, set, del, add again, duplicate', async () => {
  const c = await RawQmpClient.negotiated(d.sock);
  c.send(
    [
      add('x', 0),
      JSON.stringify({ execute: 'qom-set', arguments: { path: '/objects/x', property: 'dump', value: false }, id: 1 }),
      JSON.stringify({ execute: 'qom-get', arguments: { path: '/objects/x', property: 'dump' }, id: 2 }),
      JSON.stringify({ execute: 'object-del', arguments: { id: 'x' }, id: 3 }),
      add('x', 4),
      add('x', 5),
      add('y', 6),
    ].join('\n'),
  );
  expect(await replies(c, 7)).toEqual([
    { return: {}, id: 0 },
    { return: {}, id: 1 },
    { return: false, id: 2 },
    { return: {}, id: 3 },
    { return: {}, id: 4 },
    { error: { class: 'GenericError', desc: "attempt to add duplicate property 'x' to object (type 'container')" }, id: 5 },
    { return: {}, id: 6 },
  ]);
  expect(((await c.execute('query-memdev')).return as { id: string }[]).map((m) => m.id)).toEqual(['x', 'y']);
  c.close();
});

test('16 connections adding at once share durable writes; each reply comes after its own change is durable', async () => {
  const cs = await Promise.all(Array.from({ length: 16 }, () => RawQmpClient.negotiated(d.sock)));
  const results = await Promise.all(
    cs.map(async (c, k) => {
      const got: unknown[] = [];
      for (let i = 0; i < 4; i++) got.push(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: `c${k}-${i}`, size: 1 << 20 }));
      return got;
    }),
  );
  for (const r of results) expect(r).toEqual([{ return: {} }, { return: {} }, { return: {} }, { return: {} }]);
  expect(appends.reduce((a, b) => a + b, 0)).toBe(64);
  expect(appends.length).toBeLessThan(32);
  for (const c of cs) c.close();
});
