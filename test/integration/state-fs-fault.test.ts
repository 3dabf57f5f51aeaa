// Issue 13 item 3: a full or read-only state file system never stops service. The state dir is
// a small tmpfs (mounted here, so the test needs root and mount privileges, and skips loudly
// without them); the daemon runs under the test service manager (fd store), is SIGKILLed, and
// starts again on the full or read-only tmpfs with its preserved fds: it must be ready within
// 2 s, serve, have its memory (bytes compared through /proc/PID/mem), report the journal as
// degraded, refuse new objects with the reason, and take them again once space returns.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ServiceManager } from '../helpers/service-manager';
import { RawQmpClient } from '../helpers/qmp-client';
import { backendPatternIntact, writeBackendPattern } from '../helpers/proc';
import { announceSkip } from '../helpers/qemu';
import { tmpDir } from '../helpers/daemon';
import { errorText } from '../../src/errors/text';

jest.setTimeout(60000);
const MiB = 1 << 20;
/** The acceptance bound on a start with a full or read-only state dir. */
const READY_WITHIN_MS = 2000;

/** Why tmpfs cannot be mounted here (not root, no CAP_SYS_ADMIN), or undefined. */
const cannotMount = ((): string | undefined => {
  if (process.getuid?.() !== 0) return 'not running as root';
  const d = tmpDir('hostmemd-mountcheck-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', d], { stdio: 'pipe' });
    execFileSync('umount', [d], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    return `mount -t tmpfs is not permitted: ${errorText(e)}`;
  } finally {
    fs.rmdirSync(d);
  }
})();
if (cannotMount) announceSkip('full / read-only state directory tests', cannotMount);
const maybe = cannotMount ? test.skip : test;

type Cpr = {
  objects: { id: string; origin: string }[];
  problems: { id?: string; problem: string }[];
  lost: { id: string; reason: string }[];
  'journal-state': string;
  'journal-error'?: string;
  'journal-since'?: string;
  'journal-pending': string[];
};

const SHARED = { id: 'shared', size: 2 * MiB };
const PRIV = { id: 'priv', size: 3 * MiB };


/** Writes a file until the file system is full. */
function fill(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 0x5a);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

let sm: ServiceManager;
let sock: string;
let mounted = false;
beforeEach(() => {
  if (cannotMount) return;
  sm = new ServiceManager();
  sock = sm.listen('qmp');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k,mode=0750', 'tmpfs', sm.stateDir], { stdio: 'pipe' });
  mounted = true;
});
afterEach(async () => {
  if (cannotMount) return;
  await sm.kill();
  if (mounted) execFileSync('umount', [sm.stateDir], { stdio: 'pipe' });
  mounted = false;
  await sm.close();
});

/** A first run: a shared backend with patterns (kept in the fd store) and a private one (whose
 *  memory cannot outlive the process: restore reports it lost, whatever the file system). */
async function firstRun(): Promise<number> {
  await sm.start();
  const c = await RawQmpClient.negotiated(sock);
  for (const b of [SHARED, PRIV]) {
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: b.id, size: b.size, share: b === SHARED })).toEqual({ return: {} });
  }
  const pid = sm.proc!.pid!;
  writeBackendPattern(pid, SHARED);
  expect(await sm.storeSettles([SHARED.id])).toEqual([SHARED.id]);
  // The journal's checkpoint (1 s after the last change) has written the entry files: the file
  // system fills up afterwards. (Filled before it, an entry lives in the log only, and a lost
  // one cannot be moved aside on the full file system: it is reported again at the next start.)
  for (const deadline = Date.now() + 10000; !fs.existsSync(path.join(sm.stateDir, 'objects', `${PRIV.id}.json`)) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
  c.close();
  await sm.kill();
  return pid;
}

/** Starts again on the faulty state dir; returns the client and how long the start took. */
async function restartTimed(): Promise<{ c: RawQmpClient; ms: number; pid: number }> {
  const t0 = Date.now();
  await sm.start();
  const ms = Date.now() - t0;
  return { c: await RawQmpClient.negotiated(sock), ms, pid: sm.proc!.pid! };
}

const newObject = (id: string): Record<string, unknown> => ({ 'qom-type': 'memory-backend-memfd', id, size: MiB });

async function cprOf(c: RawQmpClient): Promise<Cpr> {
  return (await c.execute('query-cpr')).return as Cpr;
}

/** query-cpr once `pred` holds (the periodic probe runs every 5 s), or as it is at the timeout. */
async function cprWhen(c: RawQmpClient, pred: (x: Cpr) => boolean, timeoutMs = 12000): Promise<Cpr> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const x = await cprOf(c);
    if (pred(x) || Date.now() > deadline) return x;
    await new Promise((r) => setTimeout(r, 200));
  }
}

maybe('a full state dir: ready, serving, memory intact, degraded, object-add refused clearly; works again once space is freed', async () => {
  await firstRun();
  const filler = fill(sm.stateDir);

  const { c, ms, pid } = await restartTimed();
  expect(ms).toBeLessThan(READY_WITHIN_MS);
  expect((await c.execute('query-version')).return).toBeDefined();
  expect(((await c.execute('query-memdev')).return as { id: string }[]).map((m) => m.id)).toEqual([SHARED.id]);
  expect(backendPatternIntact(pid, SHARED)).toBe(true);

  let cpr = await cprOf(c);
  expect(cpr['journal-state']).toBe('degraded');
  expect(cpr['journal-error']).toMatch(/^No space left on device/);
  expect(Number.isNaN(Date.parse(cpr['journal-since']!))).toBe(false);
  expect(cpr['journal-pending']).toEqual([]);
  expect(cpr.lost.map((l) => l.id)).toEqual([PRIV.id]);
  expect(Object.fromEntries(cpr.objects.map((o) => [o.id, o.origin]))).toEqual({ shared: 'reattached' });

  expect(await c.execute('object-add', newObject('n1'))).toEqual({
    error: { class: 'GenericError', desc: "cannot record object 'n1' in the state journal: No space left on device; the journal is degraded, new objects are refused until it is writable" },
  });
  // A qom-set that cannot be recorded is undone.
  expect(await c.execute('qom-set', { path: '/objects/shared', property: 'dump', value: false })).toEqual({
    error: { class: 'GenericError', desc: "cannot record property 'dump' of object 'shared' in the state journal: No space left on device; the change was undone" },
  });
  expect(await c.execute('qom-get', { path: '/objects/shared', property: 'dump' })).toEqual({ return: true });
  expect(sm.storeNames()).toEqual([SHARED.id]);
  // No temp file of a failed write holds space.
  expect(fs.readdirSync(path.join(sm.stateDir, 'objects')).filter((f) => f.endsWith('.tmp'))).toEqual([]);

  // Space comes back: the next object-add tries again and succeeds.
  fs.rmSync(filler);
  expect(await c.execute('object-add', newObject('n1'))).toEqual({ return: {} });
  cpr = await cprWhen(c, (x) => x['journal-state'] === 'writable');
  expect(cpr['journal-state']).toBe('writable');
  expect(cpr['journal-error']).toBeUndefined();
  expect(cpr['journal-pending']).toEqual([]);
  expect(await c.execute('qom-set', { path: '/objects/shared', property: 'dump', value: false })).toEqual({ return: {} });
  c.close();

  // And everything acknowledged survives the next crash.
  await sm.kill();
  const again = await restartTimed();
  expect(((await again.c.execute('query-memdev')).return as { id: string }[]).map((m) => m.id)).toEqual([SHARED.id, 'n1']);
  expect(backendPatternIntact(again.pid, SHARED)).toBe(true);
  expect(await again.c.execute('qom-get', { path: '/objects/shared', property: 'dump' })).toEqual({ return: false });
  cpr = await cprOf(again.c);
  expect([cpr['journal-state'], cpr.lost]).toEqual(['writable', []]);
  again.c.close();
});

maybe('a read-only state dir: ready, serving, memory intact, degraded; object-add and object-del refused clearly; the probe notices when it is writable again', async () => {
  await firstRun();
  execFileSync('mount', ['-o', 'remount,ro', sm.stateDir], { stdio: 'pipe' });

  const { c, ms, pid } = await restartTimed();
  expect(ms).toBeLessThan(READY_WITHIN_MS);
  expect(((await c.execute('query-memdev')).return as { id: string }[]).map((m) => m.id)).toEqual([SHARED.id]);
  expect(backendPatternIntact(pid, SHARED)).toBe(true);
  let cpr = await cprOf(c);
  expect(cpr['journal-state']).toBe('degraded');
  expect(cpr['journal-error']).toMatch(/^Read-only file system/);
  expect(cpr['journal-pending']).toEqual([]);
  expect(cpr.lost.map((l) => l.id)).toEqual([PRIV.id]);

  expect(await c.execute('object-add', newObject('n1'))).toEqual({
    error: { class: 'GenericError', desc: "cannot record object 'n1' in the state journal: Read-only file system; the journal is degraded, new objects are refused until it is writable" },
  });
  expect(await c.execute('object-del', { id: SHARED.id })).toEqual({
    error: { class: 'GenericError', desc: "cannot remove object 'shared' from the state journal: Read-only file system" },
  });
  expect(((await c.execute('query-memdev')).return as { id: string }[]).map((m) => m.id)).toEqual([SHARED.id]);
  expect(backendPatternIntact(pid, SHARED)).toBe(true);
  expect(sm.storeNames()).toEqual([SHARED.id]);

  // Writable again: the periodic probe ends the degraded state without any command.
  execFileSync('mount', ['-o', 'remount,rw', sm.stateDir], { stdio: 'pipe' });
  cpr = await cprWhen(c, (x) => x['journal-state'] === 'writable' && x['journal-pending'].length === 0);
  expect([cpr['journal-state'], cpr['journal-pending']]).toEqual(['writable', []]);
  expect(await c.execute('object-add', newObject('n1'))).toEqual({ return: {} });
  expect(await c.execute('object-del', { id: SHARED.id })).toEqual({ return: {} });
  c.close();
});
