// Objects seen from the outside: OBJECT_ADDED/OBJECT_DELETED events reach other clients,
// --object creates backends before the socket accepts clients (and a bad one exits 1 with a
// QEMU-style message), and a client keeps being answered while another one preallocates.
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RawQmpClient } from '../helpers/qmp-client';
import { startInProcess, spawnDaemon, ROOT, tmpDir } from '../helpers/daemon';

/** Runs bin/hostmemd with `args` on a fresh state directory (removed afterwards) to its exit. */
function runDaemon(args: string[]): SpawnSyncReturns<string> {
  const dir = tmpDir('hostmemd-bad-object-');
  try {
    return spawnSync(process.execPath, [path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir, ...args], { encoding: 'utf8', timeout: 10000 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** stderr as a user reads it: its non-empty lines. JSON log lines (e.g. the warning that
 *  guest_memfd backends are unavailable without /dev/kvm) may come before the error. */
const stderrLines = (r: SpawnSyncReturns<string>): string[] => r.stderr.split('\n').filter((l) => l.trim() !== '');

test('object-add and object-del are announced to every other negotiated client', async () => {
  const d = await startInProcess();
  const a = await RawQmpClient.negotiated(d.sock);
  const b = await RawQmpClient.negotiated(d.sock);
  expect(await a.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'ev1', size: 1 << 20 })).toEqual({ return: {} });
  const ev = await b.json();
  expect(ev).toMatchObject({ event: 'OBJECT_ADDED', data: { id: 'ev1', 'qom-type': 'memory-backend-memfd', path: '/objects/ev1' } });
  await a.execute('object-del', { id: 'ev1' });
  expect(await b.json()).toMatchObject({ event: 'OBJECT_DELETED', data: { id: 'ev1', 'qom-type': 'memory-backend-memfd', path: '/objects/ev1' } });
  a.close();
  b.close();
  await d.stop();
});

test('while one client preallocates 1 GiB, another is answered before that object-add completes', async () => {
  const d = await startInProcess();
  const a = await RawQmpClient.negotiated(d.sock, ['oob']);
  const b = await RawQmpClient.negotiated(d.sock);
  a.send(JSON.stringify({ execute: 'object-add', arguments: { 'qom-type': 'memory-backend-memfd', id: 'big', size: 1 << 30, prealloc: true, 'prealloc-threads': 2 }, id: 'add' }));
  // The preallocation is visible (out of band on a's own connection, in band on b's).
  let seen = false;
  for (let i = 0; i < 200 && !seen; i++) {
    const r = await b.execute('query-prealloc');
    seen = (r.return as unknown[]).length === 1;
    if (!seen) await new Promise((res) => setTimeout(res, 2));
  }
  expect(seen).toBe(true);
  a.send('{"exec-oob":"query-prealloc","id":"oob"}');
  const first = await a.json(30000);
  expect(first).toMatchObject({ id: 'oob', return: [{ id: 'big', 'qom-type': 'memory-backend-memfd', size: 1 << 30, threads: 2 }] });
  let reply = await a.json(30000);
  while ('event' in reply) reply = await a.json(30000); // OBJECT_ADDED may come first
  expect(reply).toEqual({ return: {}, id: 'add' });
  expect(await b.execute('query-prealloc')).toEqual({ return: [] });
  a.close();
  b.close();
  await d.stop();
});

test('--object creates backends at start, in qemu-system syntax', async () => {
  const d = await spawnDaemon(['--object', 'memory-backend-memfd,id=boot0,size=2M,share=on', '--object', '{"qom-type":"memory-backend-ram","id":"boot1","size":4096}']);
  try {
    const c = await RawQmpClient.negotiated(d.sock);
    const r = (await c.execute('query-memdev')).return as { id: string; size: number }[];
    expect(r.map((m) => [m.id, m.size])).toEqual([
      ['boot0', 2 << 20],
      ['boot1', 4096],
    ]);
    c.close();
  } finally {
    await d.stop();
  }
});

test.each([
  ['memory-backend-ram,id=r,size=1M,foo=1', "Invalid parameter 'foo'"],
  ['memory-backend-ram,id=1r,size=1M', "Parameter 'id' expects an identifier"],
  ['memory-backend-ram,id=r', "Parameter 'size' is missing"],
  ['memory-backend-shm,id=r,size=1M,share=off', "can't create shm backend with `share=off`"],
])('a bad --object %s exits 1 with a QEMU-style message', (arg, msg) => {
  const r = runDaemon(['--object', arg]);
  expect(r.status).toBe(1);
  // The error is the last thing said, on a line of its own (log lines may precede it).
  const lines = stderrLines(r);
  expect(lines.at(-1)).toBe(`hostmemd: -object ${arg}: ${msg}`);
  // Anything before it is a structured log line, not a stack trace.
  for (const l of lines.slice(0, -1)) expect(() => JSON.parse(l)).not.toThrow();
});

test('a duplicate --object id is refused', () => {
  const arg = 'memory-backend-ram,id=r,size=4096';
  const r = runDaemon(['--object', arg, '--object', arg]);
  expect(r.status).toBe(1);
  // Log lines may come before or after it: the message stands on a line of its own.
  expect(stderrLines(r)).toContain(`hostmemd: -object ${arg}: Duplicate ID 'r' for object`);
});
