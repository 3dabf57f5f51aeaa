// hostmemd-supervise keeps memory across daemon crashes without systemd: it owns the QMP
// socket and an fd store, restarts a daemon that died (kill -9, or a hung one its watchdog
// aborts) with the stored fds, and ends with a clean stop (SIGTERM, quit). When the supervisor
// itself dies, the daemon stops (it could preserve nothing), a new supervisor takes over the
// socket, and the memory lost with the old fd store is reported, never silently acknowledged.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { spawn, ChildProcess } from 'node:child_process';
import pino from 'pino';
import { ROOT, tmpDir, waitConnectable, waitForFile } from '../helpers/daemon';
import { parseCli } from '../../src/daemon/cli';
import { startDaemon } from '../../src/daemon/main';
import { NotifyServer } from '../../src/service/notify-server';
import { RawQmpClient } from '../helpers/qmp-client';
import { backendMapping, findMappings, readProcessMemory, tagPage, writeProcessMemory } from '../helpers/proc';

jest.setTimeout(60000);
const SIZE = 3 * 1024 * 1024 + 4096;
const pat = tagPage('supervised');

let dir: string;
let sup: ChildProcess;
let exited: Promise<number | null>;
let sock: string;

/** The daemon's pid: the supervisor's child. */
function daemonPid(): number | undefined {
  const kids = fs.readFileSync(`/proc/${sup.pid}/task/${sup.pid}/children`, 'utf8').trim();
  return kids ? Number(kids.split(/\s+/)[0]) : undefined;
}

async function nextDaemon(not?: number): Promise<number> {
  const deadline = Date.now() + 20000;
  for (;;) {
    const p = daemonPid();
    if (p !== undefined && p !== not && fs.existsSync(`/proc/${p}/maps`) && findMappings(BigInt(SIZE), /memfd/, p).length === 1) return p;
    if (Date.now() > deadline) throw new Error('no restarted daemon with the backend mapped');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const mapping = (pid: number): bigint => backendMapping(pid, SIZE, /memfd/);

/** object-add of backend 'm', and the pattern written into the daemon's mapping of it. */
async function addPatterned(): Promise<number> {
  const c = await RawQmpClient.negotiated(sock);
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: SIZE })).toEqual({ return: {} });
  c.close();
  const pid = await nextDaemon();
  writeProcessMemory(pid, mapping(pid), pat);
  return pid;
}

/** Starts hostmemd-supervise on `dir` (the current `sup`/`exited`) and waits until it serves. */
async function startSupervisor(): Promise<void> {
  sup = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd-supervise'), '--state-dir', dir], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, HOSTMEMD_WATCHDOG_SEC: '1' },
  });
  const s = sup;
  exited = new Promise((r) => s.once('exit', (c) => r(c)));
  await waitForFile(sock, sup);
  await waitConnectable(sock);
}

/** Gone, or a zombie nobody reaped yet (an orphan is re-parented to init or a subreaper). */
function ended(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

beforeEach(async () => {
  dir = tmpDir('hostmemd-sup-');
  sock = path.join(dir, 'qmp.sock');
  await startSupervisor();
});

afterEach(async () => {
  if (sup.exitCode === null && sup.signalCode === null) {
    sup.kill('SIGTERM');
    await exited;
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('kill -9 of the daemon: restarted with its memory; a client connecting meanwhile is served; SIGTERM ends both', async () => {
  const pid1 = await addPatterned();
  process.kill(pid1, 'SIGKILL');
  // Connect at once: the supervisor's socket queues the client until the new daemon greets.
  const early = net.connect(sock);
  const greeting = new Promise<string>((resolve, reject) => {
    early.once('data', (d) => resolve(d.toString()));
    early.once('error', reject);
  });
  const pid2 = await nextDaemon(pid1);
  expect(await greeting).toMatch(/^\{"QMP": /);
  early.destroy();
  expect(readProcessMemory(pid2, mapping(pid2), 4096).equals(pat)).toBe(true);
  const c2 = await RawQmpClient.negotiated(sock);
  expect(((await c2.execute('query-cpr')).return as { objects: unknown[] }).objects).toEqual([{ id: 'm', 'qom-type': 'memory-backend-memfd', preserved: true, origin: 'reattached' }]);
  c2.close();
  sup.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(fs.existsSync(sock)).toBe(false);
  expect(fs.existsSync(`/proc/${pid2}`)).toBe(false);
});

test('a hung daemon misses the watchdog and is aborted and restarted with its memory; quit ends the supervisor', async () => {
  const pid1 = await addPatterned();
  process.kill(pid1, 'SIGSTOP');
  const pid2 = await nextDaemon(pid1);
  expect(readProcessMemory(pid2, mapping(pid2), 4096).equals(pat)).toBe(true);
  const c2 = await RawQmpClient.negotiated(sock);
  expect(await c2.execute('quit')).toEqual({ return: {} });
  expect(await exited).toBe(0);
  c2.close();
});

test('SIGHUP to the supervisor and to the daemon ends nothing: objects, fd store and memory kept (a later kill -9 still restores the bytes)', async () => {
  const pid1 = await addPatterned();
  sup.kill('SIGHUP');
  process.kill(pid1, 'SIGHUP');
  await new Promise((r) => setTimeout(r, 500));
  expect(sup.exitCode).toBeNull();
  expect(ended(pid1)).toBe(false);
  const c = await RawQmpClient.negotiated(sock);
  expect(((await c.execute('query-memdev')).return as { id: string }[]).map((m) => m.id)).toEqual(['m']);
  c.close();
  expect(readProcessMemory(pid1, mapping(pid1), 4096).equals(pat)).toBe(true);
  // The fd store is still there: a crash now brings the memory back.
  process.kill(pid1, 'SIGKILL');
  const pid2 = await nextDaemon(pid1);
  expect(readProcessMemory(pid2, mapping(pid2), 4096).equals(pat)).toBe(true);
});

test('SIGTERM ends the supervisor and its fd store: the next start reports the object lost, not re-created, and its id is free', async () => {
  await addPatterned();
  sup.kill('SIGTERM');
  expect(await exited).toBe(0);
  await startSupervisor();
  const c = await RawQmpClient.negotiated(sock);
  const cpr = (await c.execute('query-cpr')).return as { objects: unknown[]; lost: { id: string; reason: string }[]; problems: { id?: string; problem: string }[] };
  expect(cpr.objects).toEqual([]);
  expect(cpr.lost.map((l) => [l.id, l.reason])).toEqual([['m', "no preserved fd named 'm' was passed in (fd store or handover)"]]);
  expect(cpr.problems.map((p) => p.id)).toEqual(['m']);
  expect((await c.execute('query-memdev')).return).toEqual([]);
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: SIZE })).toEqual({ return: {} });
  c.close();
});

test('a daemon that cannot start (bad --object) is not restarted: the supervisor exits with its status and cleans up', async () => {
  const d = tmpDir('hostmemd-sup-bad-');
  const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd-supervise'), '--state-dir', d, '--object', 'memory-backend-memfd,id=x,size=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  expect(code).toBe(1);
  expect(err).toContain("hostmemd: -object memory-backend-memfd,id=x,size=0: property 'size' of memory-backend-memfd doesn't take value '0'");
  expect(err).toContain('the daemon failed to start; not restarting');
  expect(fs.existsSync(path.join(d, 'qmp.sock'))).toBe(false);
  fs.rmSync(d, { recursive: true, force: true });
});

/** How long the orphan may take to notice its supervisor's death and stop. */
const ORPHAN_STOPS_WITHIN_MS = 10000;

test('kill -9 of the supervisor: the daemon stops, acknowledging nothing more; a new supervisor takes over the socket; the lost memory is reported', async () => {
  const pid1 = await addPatterned();
  const c = await RawQmpClient.negotiated(sock);
  sup.kill('SIGKILL');
  await exited;
  // Whatever the client manages to ask now is not acknowledged: either the refusal, or the
  // daemon is already stopping (SHUTDOWN, then the connection closes).
  const late = await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'late', size: 1048576 }).catch((e: unknown) => e);
  if (!(late instanceof Error)) expect(late).toEqual({ error: { class: 'GenericError', desc: "cannot preserve the memory of 'late': the fd store is gone" } });
  c.close();
  const deadline = Date.now() + ORPHAN_STOPS_WITHIN_MS;
  while (!ended(pid1)) {
    if (Date.now() > deadline) {
      process.kill(pid1, 'SIGKILL'); // leave no orphan behind a failed test
      throw new Error(`the orphaned daemon ${pid1} still runs ${ORPHAN_STOPS_WITHIN_MS} ms after its supervisor died`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  // The socket file is left behind, stale: the next supervisor replaces it and serves.
  expect(fs.existsSync(sock)).toBe(true);
  await startSupervisor();
  const c2 = await RawQmpClient.negotiated(sock);
  const cpr = (await c2.execute('query-cpr')).return as { objects: unknown[]; lost: unknown[] };
  // Not re-created empty under its id: reported lost, its id free again.
  expect(cpr.objects).toEqual([]);
  expect(cpr.lost).toEqual([
    { id: 'm', 'qom-type': 'memory-backend-memfd', reason: "no preserved fd named 'm' was passed in (fd store or handover)", file: expect.stringMatching(/\/objects\/lost\/m\.\d+\.json$/) },
  ]);
  expect(await c2.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1048576 })).toEqual({ return: {} });
  expect(await c2.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'n', size: 1048576 })).toEqual({ return: {} });
  c2.close();
  sup.kill('SIGTERM');
  expect(await exited).toBe(0);
});

test('a second supervisor on a live one is refused and leaves the running one alone (its fd store keeps working)', async () => {
  const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd-supervise'), '--state-dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  expect(await new Promise<number | null>((r) => p.once('exit', (code) => r(code)))).toBe(1);
  expect(err).toContain(`${sock} is in use by another server`);
  const c = await RawQmpClient.negotiated(sock);
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'after', size: 1048576 })).toEqual({ return: {} });
  c.close();
});

test('a dead notify socket: object-add refuses memory it cannot preserve, clearly, and the daemon keeps serving', async () => {
  // In process, under a bare notify socket standing for the service manager.
  const d = tmpDir('hostmemd-sup-gone-');
  const notifyPath = path.join(d, 'notify');
  const ns = new NotifyServer(notifyPath);
  const cli = parseCli(['--state-dir', d, '--accel', 'none'], {});
  if (cli.kind !== 'run') throw new Error(cli.output);
  const daemon = await startDaemon(cli.options, pino({ level: 'silent' }), { NOTIFY_SOCKET: notifyPath });
  try {
    const c = await RawQmpClient.negotiated(daemon.socketPaths[0]);
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'kept', size: 1048576 })).toEqual({ return: {} });
    await ns.close(); // nobody receives any more: ECONNREFUSED
    const gone = (id: string): Record<string, unknown> => ({ error: { class: 'GenericError', desc: `cannot preserve the memory of '${id}': the fd store is gone` } });
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'b', size: 1048576 })).toEqual(gone('b'));
    fs.rmSync(notifyPath); // no socket file at all: ENOENT
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'r', size: 1048576, share: true })).toEqual(gone('r'));
    // Nothing of the refused ones stays; the daemon still serves.
    expect(((await c.execute('query-cpr')).return as { objects: { id: string }[] }).objects.map((o) => o.id)).toEqual(['kept']);
    expect(((await c.execute('qom-list', { path: '/objects' })).return as { name: string }[]).map((p) => p.name)).not.toEqual(expect.arrayContaining(['b']));
    expect(await c.execute('query-version')).toHaveProperty('return');
    c.close();
  } finally {
    await daemon.shutdown('host-signal');
    fs.rmSync(d, { recursive: true, force: true });
  }
});
