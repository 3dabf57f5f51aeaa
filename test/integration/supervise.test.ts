// hostmemd-supervise keeps memory across daemon crashes without systemd: it owns the QMP
// socket and an fd store, restarts a daemon that died (kill -9, or a hung one its watchdog
// aborts) with the stored fds, and ends with a clean stop (SIGTERM, quit).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { spawn, ChildProcess } from 'node:child_process';
import { ROOT, tmpDir, waitConnectable, waitForFile } from '../helpers/daemon';
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

beforeEach(async () => {
  dir = tmpDir('hostmemd-sup-');
  sock = path.join(dir, 'qmp.sock');
  sup = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd-supervise'), '--state-dir', dir], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, HOSTMEMD_WATCHDOG_SEC: '1' },
  });
  exited = new Promise((r) => sup.once('exit', (c) => r(c)));
  await waitForFile(sock, sup);
  await waitConnectable(sock);
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
