// /metrics contents: every series named hostmemd_*, backends by type with allocated and
// resident bytes (changed by object-add/object-del), commands by name and outcome with a
// latency histogram, clients by transport, preallocation bytes; and the resident-bytes
// fallback through /proc/self/smaps.
import { RawQmpClient } from '../helpers/qmp-client';
import { parseSmaps, residentOf } from '../../src/web/resident';
import { createMetrics } from '../../src/web/metrics';
import { WebDaemon, WsQmpClient, httpGet, startWebDaemon } from './ws-client';

function series(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of text.split('\n')) {
    if (l === '' || l.startsWith('#')) continue;
    const i = l.lastIndexOf(' ');
    m.set(l.slice(0, i), Number(l.slice(i + 1)));
  }
  return m;
}

describe('/metrics', () => {
  let d: WebDaemon;
  const scrape = async () => {
    const r = await httpGet(`${d.url}/metrics`, d.token);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    return { text: r.body, s: series(r.body) };
  };
  beforeAll(async () => {
    d = await startWebDaemon();
  });
  afterAll(async () => {
    await d.stop();
  });

  test('every metric is prefixed hostmemd_ and the documented families exist', async () => {
    const { text } = await scrape();
    const names = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]);
    expect(names.length).toBeGreaterThan(10);
    for (const n of names) expect(n).toMatch(/^hostmemd_/);
    for (const n of [
      'hostmemd_backends',
      'hostmemd_allocated_bytes',
      'hostmemd_resident_bytes',
      'hostmemd_backend_size_bytes',
      'hostmemd_backend_resident_bytes',
      'hostmemd_commands_total',
      'hostmemd_command_duration_seconds',
      'hostmemd_clients',
      'hostmemd_clients_refused_total',
      'hostmemd_client_disconnects_total',
      'hostmemd_objects_added_total',
      'hostmemd_objects_deleted_total',
      'hostmemd_prealloc_bytes_total',
      'hostmemd_prealloc_throughput_bytes_per_second',
      'hostmemd_preallocs_running',
      'hostmemd_journal_degraded',
      'hostmemd_process_resident_memory_bytes',
    ]) {
      expect(names).toContain(n);
    }
  });

  test('a backend add and delete change the backend, byte, command and object series', async () => {
    const size = 8 * 1024 * 1024;
    const unix = await RawQmpClient.negotiated(d.sock);
    const ws = await WsQmpClient.negotiated(d.url, d.token);
    const before = (await scrape()).s;
    expect(before.get('hostmemd_clients{transport="unix"}')).toBe(1);
    expect(before.get('hostmemd_clients{transport="websocket"}')).toBe(1);
    expect(before.get('hostmemd_backends{type="memory-backend-memfd"}')).toBeUndefined();

    expect(await ws.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'mx', size, prealloc: true }, 1)).toEqual({ return: {}, id: 1 });
    expect(await unix.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'rx', size: 4096 }, 2)).toEqual({ return: {}, id: 2 });
    expect((await unix.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'rx', size: 4096 }, 3)).error).toBeDefined();
    const mid = (await scrape()).s;
    expect(mid.get('hostmemd_backends{type="memory-backend-memfd"}')).toBe(1);
    expect(mid.get('hostmemd_backends{type="memory-backend-ram"}')).toBe(1);
    expect(mid.get('hostmemd_allocated_bytes{type="memory-backend-memfd"}')).toBe(size);
    expect(mid.get('hostmemd_backend_size_bytes{id="mx",type="memory-backend-memfd"}')).toBe(size);
    // Preallocated: every page is resident.
    expect(mid.get('hostmemd_backend_resident_bytes{id="mx",type="memory-backend-memfd"}')).toBe(size);
    expect(mid.get('hostmemd_resident_bytes{type="memory-backend-memfd"}')).toBe(size);
    expect(mid.get('hostmemd_prealloc_bytes_total{type="memory-backend-memfd"}')).toBe(size);
    expect(mid.get('hostmemd_objects_added_total{type="memory-backend-memfd"}')).toBe(1);
    expect(mid.get('hostmemd_commands_total{command="object-add",outcome="ok"}')).toBe(2);
    expect(mid.get('hostmemd_commands_total{command="object-add",outcome="GenericError"}')).toBe(1);
    expect(mid.get('hostmemd_command_duration_seconds_count{command="object-add"}')).toBe(3);

    await unix.execute('object-del', { id: 'mx' });
    await ws.execute('no-such-command-xyz');
    unix.close();
    ws.close();
    await new Promise((r) => setTimeout(r, 100));
    const after = (await scrape()).s;
    expect(after.get('hostmemd_backends{type="memory-backend-memfd"}')).toBeUndefined();
    expect(after.get('hostmemd_allocated_bytes{type="memory-backend-ram"}')).toBe(4096);
    expect(after.get('hostmemd_objects_deleted_total{type="memory-backend-memfd"}')).toBe(1);
    // Unknown command names share one label value: clients cannot grow the label set.
    expect(after.get('hostmemd_commands_total{command="unknown",outcome="CommandNotFound"}')).toBe(1);
    expect([...after.keys()].some((k) => k.includes('no-such-command-xyz'))).toBe(false);
    expect(after.get('hostmemd_clients{transport="unix"}')).toBe(0);
    expect(after.get('hostmemd_clients{transport="websocket"}')).toBe(0);
  });

  test('/api/backends lists each backend with size and resident bytes', async () => {
    const r = await httpGet(`${d.url}/api/backends`, d.token);
    expect(JSON.parse(r.body)).toEqual([{ id: 'rx', type: 'memory-backend-ram', size: 4096, resident: expect.any(Number) }]);
  });
});

describe('resident bytes', () => {
  const smaps = [
    '7f0000000000-7f0000400000 rw-s 00000000 00:01 1672                       /memfd:memory-backend-memfd (deleted)',
    'Size:               4096 kB',
    'Rss:                1024 kB',
    '7f0000400000-7f0000800000 rw-s 00000000 00:01 1673                       /memfd:r1 (deleted)',
    'Rss:                   8 kB',
    '7f0000800000-7f0000801000 rw-p 00000000 00:00 0 ',
    'Rss:                   4 kB',
  ].join('\n');

  test('smaps parsing', () => {
    expect(parseSmaps(smaps).map((e) => [e.name, Number(e.size), Number(e.rss)])).toEqual([
      ['/memfd:memory-backend-memfd (deleted)', 4 << 20, 1 << 20],
      ['/memfd:r1 (deleted)', 4 << 20, 8192],
      ['', 4096, 4096],
    ]);
  });

  test("a backend's own count wins; without one, smaps by size, preferring the id in the name", () => {
    const b = (name: string, size: number, own?: bigint) => ({ name, typeName: 't', size: BigInt(size), residentBytes: () => own });
    expect(residentOf([b('a', 4 << 20, 7n)], () => 'never read')).toEqual([7n]);
    expect(residentOf([b('m', 4 << 20), b('r1', 4 << 20), b('x', 4096), b('none', 12345)], () => smaps)).toEqual([1n << 20n, 8192n, 4096n, 0n]);
  });
});

test('configured caps appear as hostmemd_limit', async () => {
  const { startInProcess } = await import('../helpers/daemon');
  const d = await startInProcess(['--ws', '127.0.0.1:0', '--max-objects', '7', '--max-backend-bytes', '1G', '--max-clients', '9']);
  try {
    const web = d.daemon.web!;
    const token = (await import('node:fs')).readFileSync(`${d.dir}/token`, 'utf8').trim();
    const res = await fetch(`${web.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    const text = await res.text();
    expect(text).toContain('hostmemd_limit{kind="objects"} 7');
    expect(text).toContain('hostmemd_limit{kind="backend_bytes"} 1073741824');
    expect(text).toContain('hostmemd_limit{kind="clients"} 9');
    expect(text).toContain('hostmemd_journal_degraded 0');
  } finally {
    await d.stop();
  }
});

test('/api/caps: each cap with its use (token required); uncapped ones have no limit', async () => {
  const capped = await startWebDaemon(['--max-objects', '7', '--max-backend-bytes', '1G', '--max-clients', '9']);
  try {
    expect((await httpGet(`${capped.url}/api/caps`)).status).toBe(401);
    const c = await RawQmpClient.negotiated(capped.sock);
    try {
      expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm1', size: 2097152 })).toEqual({ return: {} });
      const r = await httpGet(`${capped.url}/api/caps`, capped.token);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({
        objects: { limit: 7, used: 1 },
        backendBytes: { limit: 1073741824, used: 2097152 },
        clients: { limit: 9, used: 1 },
      });
    } finally {
      c.close();
    }
  } finally {
    await capped.stop();
  }
  const plain = await startWebDaemon(['--max-backend-bytes', 'none']); // no cap at all
  try {
    const r = await httpGet(`${plain.url}/api/caps`, plain.token);
    expect(JSON.parse(r.body)).toEqual({ objects: { used: 0 }, backendBytes: { used: 0 }, clients: { limit: 1024, used: 0 } });
  } finally {
    await plain.stop();
  }
});

test('hostmemd_journal_degraded follows the state journal', async () => {
  let degraded = true;
  const m = createMetrics({ backends: () => [], commands: [], preallocsRunning: () => 0, journalDegraded: () => degraded });
  expect(await m.render()).toMatch(/^hostmemd_journal_degraded 1$/m);
  degraded = false;
  expect(await m.render()).toMatch(/^hostmemd_journal_degraded 0$/m);
});
