// query-memdev and qom-list /objects past one block of entries (commands/reply-blocks.ts): the
// UNIX socket writes the ready chunks as they are, a WebSocket sends them as one text frame;
// both give exactly the text a whole encoding gives, with an id and without, before and after
// a delete and a qom-set in the middle.
import { BLOCK_ITEMS } from '../../src/commands/reply-blocks';
import { encodeJson } from '../../src/json/writer';
import { JsonValue } from '../../src/json/value';
import { RawQmpClient } from '../helpers/qmp-client';
import { QmpLineClient } from '../helpers/qmp-line-client';
import { WebDaemon, WsQmpClient, startWebDaemon } from './ws-client';

/** The next line that is not an event (OBJECT_ADDED reaches both clients). */
async function reply(c: QmpLineClient, timeoutMs = 30000): Promise<string> {
  for (;;) {
    const line = await c.line(timeoutMs);
    if (!line.startsWith('{"timestamp"')) return line;
  }
}

let d: WebDaemon;
beforeAll(async () => {
  d = await startWebDaemon(['--accel', 'none']);
});
afterAll(async () => {
  await d.stop();
});

test('long replies are the same bytes on the UNIX socket and the WebSocket, and current', async () => {
  const ws = await WsQmpClient.negotiated(d.url, d.token);
  const u = await RawQmpClient.connect(d.sock);
  try {
    await u.negotiate();
    const n = BLOCK_ITEMS + 5;
    for (let i = 0; i < n; i++) u.send(JSON.stringify({ execute: 'object-add', arguments: { 'qom-type': 'memory-backend-memfd', id: `m${i}`, size: 1 << 20 } }));
    for (let i = 0; i < n; i++) expect(await reply(u)).toBe('{"return": {}}');
    const both = async (cmd: string, args: Record<string, unknown> | undefined, id?: unknown): Promise<string> => {
      const msg = JSON.stringify({ execute: cmd, ...(args ? { arguments: args } : {}), ...(id !== undefined ? { id } : {}) });
      u.send(msg);
      ws.send(msg);
      const [a, b] = [await reply(u), await reply(ws)];
      expect(b).toBe(a);
      return a;
    };
    const check = async (ids: string[]): Promise<void> => {
      const memdevs = await both('query-memdev', undefined, { seq: 1 });
      const parsed = JSON.parse(memdevs) as { return: { id: string; dump: boolean }[]; id: unknown };
      expect(parsed.id).toEqual({ seq: 1 });
      expect(parsed.return.map((m) => m.id)).toEqual(ids);
      // The text is that of the parsed value encoded whole, the way the daemon encodes values.
      expect(memdevs).toBe(`{"return": ${encodeJson(parsed.return as unknown as JsonValue, { qdictOrder: true })}, "id": {"seq": 1}}`);
      const list = await both('qom-list', { path: '/objects' });
      expect(JSON.parse(list)).toEqual({ return: [{ name: 'type', type: 'string' }, ...ids.map((id) => ({ name: id, type: 'child<memory-backend-memfd>' }))] });
    };
    const ids = Array.from({ length: n }, (_, i) => `m${i}`);
    await check(ids);
    expect(await u.execute('object-del', { id: 'm3' })).toEqual({ return: {} });
    expect(await u.execute('qom-set', { path: `/objects/m${BLOCK_ITEMS + 1}`, property: 'dump', value: false })).toEqual({ return: {} });
    ids.splice(3, 1);
    await check(ids);
    const after = JSON.parse(await both('query-memdev', undefined)) as { return: { id: string; dump: boolean }[] };
    expect(after.return.find((m) => m.id === `m${BLOCK_ITEMS + 1}`)?.dump).toBe(false);
  } finally {
    ws.close();
    await u.close();
  }
});
