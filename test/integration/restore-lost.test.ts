// Restore never pretends (issue 13, item 2): a bare hostmemd (no fd store, no supervisor)
// stopped by quit or SIGTERM loses the memory of its fd-backed objects; the next start does
// not re-create them empty under their ids but reports each (query-cpr lost and problems, the
// entry moved to objects/lost/) and leaves the id free for object-add. A file backend whose
// file holds its contents is reopened. SIGHUP stops nothing.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { ROOT, killAndWait, tmpDir, waitConnectable, waitForFile } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';
import { backendMapping, readProcessMemory, tagPage, writeProcessMemory } from '../helpers/proc';

jest.setTimeout(60000);
const MiB = 1 << 20;

type Cpr = {
  objects: { id: string; origin: string }[];
  problems: { id?: string; problem: string; file?: string }[];
  lost: { id: string; 'qom-type': string; reason: string; file?: string }[];
};

let dir: string;
let sock: string;
let proc: ChildProcess | undefined;
let stderr = '';
let exited: Promise<number | null>;

/** bin/hostmemd on `dir`, alone: nothing keeps its fds across a restart. */
async function start(): Promise<RawQmpClient> {
  stderr = '';
  const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir, '--accel', 'none'], { stdio: ['ignore', 'ignore', 'pipe'] });
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  exited = new Promise((r) => p.once('exit', (code) => r(code)));
  proc = p;
  await waitForFile(sock, p, () => stderr);
  await waitConnectable(sock);
  return RawQmpClient.negotiated(sock);
}

beforeEach(() => {
  dir = tmpDir('hostmemd-lost-');
  sock = path.join(dir, 'qmp.sock');
});
afterEach(async () => {
  if (proc) await killAndWait(proc);
  proc = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const NO_FD = (id: string): string => `no preserved fd named '${id}' was passed in (fd store or handover)`;

test('quit, then SIGTERM, without a keeper: objects whose memory is gone are reported lost, not re-created; their ids are free; a file reopens', async () => {
  let c = await start();
  const sub = path.join(dir, 'files', 'sub');
  fs.mkdirSync(sub);
  const fileF = path.join(dir, 'files', 'f');
  fs.writeFileSync(fileF, Buffer.alloc(2 * MiB, 0x5a));
  const ADDS: Record<string, Record<string, unknown>> = {
    m: { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB },
    r: { 'qom-type': 'memory-backend-ram', id: 'r', size: MiB },
    d: { 'qom-type': 'memory-backend-file', id: 'd', size: MiB, share: true, 'mem-path': sub },
    f: { 'qom-type': 'memory-backend-file', id: 'f', size: 2 * MiB, share: true, 'mem-path': fileF },
  };
  for (const a of Object.values(ADDS)) expect(await c.execute('object-add', a)).toEqual({ return: {} });
  expect(await c.execute('quit')).toEqual({ return: {} });
  expect(await exited).toBe(0);
  c.close();

  const REASONS: Record<string, string> = {
    m: NO_FD('m'),
    r: 'private memory (share=off) does not outlive the process',
    d: `mem-path '${sub}' is a directory: the memory was an unlinked file in it, gone with the process`,
  };
  const expectLost = async (q: RawQmpClient): Promise<void> => {
    expect(((await q.execute('query-memdev')).return as { id: string }[]).map((m) => m.id)).toEqual(['f']);
    const cpr = (await q.execute('query-cpr')).return as Cpr;
    expect(cpr.objects.map((o) => [o.id, o.origin])).toEqual([['f', 'reopened']]);
    expect(cpr.lost.map((l) => [l.id, l['qom-type'], l.reason])).toEqual(['m', 'r', 'd'].map((id) => [id, ADDS[id]['qom-type'], REASONS[id]]));
    for (const l of cpr.lost) {
      expect(l.file).toMatch(new RegExp(`^${path.join(dir, 'objects', 'lost')}/${l.id}\\.\\d+\\.json$`));
      expect(fs.existsSync(l.file!)).toBe(true);
    }
    expect(cpr.problems.map((p) => p.id)).toEqual(['m', 'r', 'd']);
    for (const p of cpr.problems) expect(p.problem).toMatch(/^memory lost \(.+\); object not re-created, journal entry moved to .+, the id is free$/);
    expect(fs.readdirSync(path.join(dir, 'objects')).filter((n) => n.endsWith('.json'))).toEqual(['f.json']);
    // The management stack re-creates its backends as after a QEMU restart: no duplicate id.
    for (const id of ['m', 'r', 'd']) expect([id, await q.execute('object-add', ADDS[id])]).toEqual([id, { return: {} }]);
    expect(((await q.execute('query-memdev')).return as { id: string }[]).map((m) => m.id).sort()).toEqual(['d', 'f', 'm', 'r']);
  };
  c = await start();
  await expectLost(c);
  expect(stderr).toMatch(/"level":40.*restore: memory lost/);
  c.close();

  // SIGTERM is the same clean stop.
  proc!.kill('SIGTERM');
  expect(await exited).toBe(0);
  c = await start();
  await expectLost(c);
  c.close();
});

test('a file backend whose file was emptied or removed while the daemon was down is reported lost; nothing is created or extended', async () => {
  let c = await start();
  const fileE = path.join(dir, 'files', 'e');
  const fileG = path.join(dir, 'files', 'g');
  for (const f of [fileE, fileG]) fs.writeFileSync(f, Buffer.alloc(MiB, 0x44));
  for (const [id, f] of [['e', fileE], ['g', fileG]]) {
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id, size: MiB, share: true, 'mem-path': f })).toEqual({ return: {} });
  }
  expect(await c.execute('quit')).toEqual({ return: {} });
  expect(await exited).toBe(0);
  c.close();
  fs.truncateSync(fileE, 0);
  fs.rmSync(fileG);

  c = await start();
  const cpr = (await c.execute('query-cpr')).return as Cpr;
  expect(cpr.objects).toEqual([]);
  expect(cpr.lost.map((l) => [l.id, l.reason])).toEqual([
    ['e', `the file at mem-path '${fileE}' is empty`],
    ['g', `mem-path '${fileG}' no longer exists`],
  ]);
  expect(fs.statSync(fileE).size).toBe(0);
  expect(fs.existsSync(fileG)).toBe(false);
  c.close();
});

test('SIGHUP to a bare daemon is logged and ignored: it keeps serving with its objects and their bytes', async () => {
  const c = await start();
  const size = 3 * MiB + 4096;
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size })).toEqual({ return: {} });
  const pid = proc!.pid!;
  const pat = tagPage('sighup');
  writeProcessMemory(pid, backendMapping(pid, size, /memfd/), pat);
  proc!.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  expect(proc!.exitCode).toBeNull();
  expect(await c.execute('query-memdev')).toMatchObject({ return: [{ id: 'm' }] });
  expect(readProcessMemory(pid, backendMapping(pid, size, /memfd/), 4096).equals(pat)).toBe(true);
  expect(stderr).toContain('SIGHUP ignored');
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'n', size: MiB })).toEqual({ return: {} });
  c.close();
});
