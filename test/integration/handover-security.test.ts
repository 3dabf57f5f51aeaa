// cpr-handover as an attacker would use it: a group member's fake "successor" (another uid)
// gets nothing — no fd, no message, no client — and nobody notices a freeze; freeze-timeout has
// a maximum; a same-uid successor that stalls (never ready, never done) is abandoned within
// freeze-timeout + HANDOVER_EXCHANGE_MS and every client is answered again; a waiting successor
// hangs up on a connection from another uid.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { spawn, ChildProcess } from 'node:child_process';
import { ROOT, tmpDir, waitConnectable, waitForFile } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';
import { backendMapping as mapAt, fdTargets, readProcessMemory, tagPage as pat, writeProcessMemory } from '../helpers/proc';
import { announceSkip } from '../helpers/qemu';
import { HANDOVER_EXCHANGE_MS, MAX_FREEZE_TIMEOUT_MS } from '../../src/handover/handover';

jest.setTimeout(60000);
const MiB = 1 << 20;
const NOBODY = 65534;
const ROOT_USER = process.geteuid!() === 0;
if (!ROOT_USER) announceSkip('handover security: the other-uid successor case', 'needs root to start a process as nobody');

interface Proc {
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function track(proc: ChildProcess): Proc {
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const p = { proc, stderr: () => err, exited };
  started.push(p);
  return p;
}

const hostmemd = (args: string[]): Proc => track(spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] }));

/** A fake successor on hostmemd's own native layer (dist/): listens on a SOCK_SEQPACKET
 *  socket anyone may connect to and writes one JSON line per event to `record` — what the
 *  daemon sent it, and how many fds came with it. Never answers, unless `sayReady`: then it
 *  answers 'ready' after 'fds-end' (and never 'done'). */
const FAKE = `
const [sockPath, recordPath, sayReady, nativePath] = process.argv.slice(1);
const fs = require('node:fs');
const S = require(nativePath).sockets;
const record = (x) => fs.appendFileSync(recordPath, JSON.stringify(x) + '\\n');
const l = S.socket(S.SOCK_SEQPACKET);
S.bind(l, sockPath);
fs.chmodSync(sockPath, 0o777);
S.listen(l, 4);
process.stdout.write('listening\\n');
(async () => {
  for (;;) {
    const c = await S.accept(l);
    record({ connected: true });
    (async () => {
      for (;;) {
        let r;
        try { r = await S.receiveWithFds(c, 65536, 253); } catch (e) { record({ error: String(e) }); return; }
        const text = r.data.subarray(1).toString();
        record({ bytes: r.data.length, fds: r.fds.length, t: r.data.length > 0 ? JSON.parse(text).t : undefined });
        if (r.data.length === 0 && r.fds.length === 0) return;
        if (sayReady === 'ready' && text.includes('"fds-end"')) {
          await S.sendWithFdsAsync(c, Buffer.concat([Buffer.from('E'), Buffer.from(JSON.stringify({ t: 'ready', pid: process.pid }))]));
        }
      }
    })();
  }
})();
`;

interface Fake extends Proc {
  records(): Record<string, unknown>[];
}

/** Starts the fake successor at `chan`, as `uid` (its files in a folder it owns). */
async function fake(uid: number, sayReady = false): Promise<Fake> {
  const own = path.join(dir, `fake-${uid}`);
  fs.mkdirSync(own, { recursive: true });
  fs.chownSync(own, uid, uid);
  const record = path.join(own, 'record');
  const p = track(
    spawn(process.execPath, ['-e', FAKE, chan, record, sayReady ? 'ready' : 'silent', path.join(ROOT, 'dist', 'native', 'index.js')], {
      uid,
      gid: uid,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  await new Promise<void>((resolve, reject) => {
    p.proc.stdout!.once('data', () => resolve());
    void p.exited.then((code) => reject(new Error(`fake successor exited ${code}: ${p.stderr()}`)));
  });
  const records = (): Record<string, unknown>[] =>
    fs.existsSync(record)
      ? fs
          .readFileSync(record, 'utf8')
          .split('\n')
          .filter((l) => l)
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      : [];
  return { ...p, records };
}

/** Milliseconds until `c` is answered a query-version. */
async function roundTrip(c: RawQmpClient): Promise<number> {
  const t = Date.now();
  expect(await c.execute('query-version')).toHaveProperty('return');
  return Date.now() - t;
}

/** The next message that is not an event. */
async function reply(c: RawQmpClient, timeoutMs = 30000): Promise<Record<string, unknown>> {
  for (;;) {
    const r = await c.json(timeoutMs);
    if (!('event' in r)) return r;
  }
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let dir: string;
let sock: string;
let chan: string;
let old: Proc;
const started: Proc[] = [];
const clients: RawQmpClient[] = [];
const client = async (): Promise<RawQmpClient> => {
  const c = await RawQmpClient.negotiated(sock);
  clients.push(c);
  return c;
};

beforeEach(async () => {
  dir = tmpDir('hostmemd-handover-sec-');
  fs.chmodSync(dir, 0o711); // nobody may reach its own folder inside
  sock = path.join(dir, 'qmp.sock');
  chan = path.join(dir, `fake-${NOBODY}`, 'cpr.sock');
  old = hostmemd(['--state-dir', dir, '--qmp', `unix:${sock}`]);
  await waitForFile(sock, old.proc, old.stderr);
  await waitConnectable(sock);
});
afterEach(async () => {
  if (process.env.HANDOVER_DEBUG) for (const p of started) console.log(p.stderr().slice(0, 20000));
  for (const c of clients.splice(0)) c.close();
  for (const p of started.splice(0)) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

(ROOT_USER ? test : test.skip)('a successor running as another uid gets nothing; the daemon answers the refusal and keeps serving everyone', async () => {
  const ctl = await client();
  const other = await client();
  const A = 2 * MiB + 3 * 4096;
  expect(await ctl.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: A })).toEqual({ return: {} });
  expect(await ctl.execute('object-add', { 'qom-type': 'memory-backend-shm', id: 'b', size: MiB })).toEqual({ return: {} });
  const pid = old.proc.pid!;
  writeProcessMemory(pid, mapAt(pid, A), pat('a'));
  const impostor = await fake(NOBODY);

  expect(await ctl.execute('cpr-handover', { channel: `unix:${chan}` })).toEqual({
    error: { class: 'GenericError', desc: `handover refused: the process at 'unix:${chan}' runs as uid ${NOBODY}, not as this daemon's uid 0 (nor as root)` },
  });
  // Every client is answered at once: nothing was frozen.
  expect(await roundTrip(other)).toBeLessThan(1000);
  expect(await roundTrip(ctl)).toBeLessThan(1000);
  // A new connection is greeted by this daemon (its listening socket never moved).
  const later = await client();
  expect(await later.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }, { id: 'b' }] });
  expect(readProcessMemory(pid, mapAt(pid, A), 4096).equals(pat('a'))).toBe(true);
  expect(old.proc.exitCode).toBeNull();

  // The impostor saw a connection and its end: no byte, no fd.
  await settle(300);
  expect(impostor.records()).toEqual([{ connected: true }, { bytes: 0, fds: 0 }]);
  expect(fdTargets(impostor.proc.pid!).filter((t) => /memfd:|\/dev\/shm/.test(t))).toEqual([]);
  // The refusal is logged with who it was.
  expect(old.stderr()).toMatch(new RegExp(`"peerUid":${NOBODY}.*"msg":"handover refused: wrong peer"`));
});

test(`freeze-timeout above ${MAX_FREEZE_TIMEOUT_MS} ms is refused before anything freezes; a half-sent message holds others for at most the maximum`, async () => {
  const ctl = await client();
  const other = await client();
  expect(await ctl.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: MiB })).toEqual({ return: {} });
  // A same-uid listener that would take the handover (it never answers).
  chan = path.join(dir, 'fake-0', 'cpr.sock');
  const successor = await fake(0);
  for (const ms of [MAX_FREEZE_TIMEOUT_MS + 1, 2e9]) {
    expect(await ctl.execute('cpr-handover', { channel: `unix:${chan}`, 'freeze-timeout': ms })).toEqual({
      error: { class: 'GenericError', desc: `Parameter 'freeze-timeout' expects at most ${MAX_FREEZE_TIMEOUT_MS} (milliseconds)` },
    });
    expect(await roundTrip(other)).toBeLessThan(1000);
  }
  expect(successor.records()).toEqual([]); // not even connected to

  // A client stops half-way through a message and the largest freeze-timeout is asked for.
  const half = await client();
  half.send('{"execute": "query-');
  await settle(100);
  const t0 = Date.now();
  ctl.send(JSON.stringify({ execute: 'cpr-handover', arguments: { channel: `unix:${chan}`, 'freeze-timeout': MAX_FREEZE_TIMEOUT_MS }, id: 'h' }));
  await settle(50);
  other.send(JSON.stringify({ execute: 'query-version', id: 'o' }));
  expect(await reply(other)).toMatchObject({ id: 'o', return: {} });
  const waited = Date.now() - t0;
  expect(await reply(ctl)).toEqual({
    id: 'h',
    error: { class: 'GenericError', desc: `handover failed, this daemon keeps serving: a client did not finish the message it was sending within ${MAX_FREEZE_TIMEOUT_MS} ms` },
  });
  // Frozen until freeze-timeout ran out, and no longer than the documented maximum.
  expect(waited).toBeGreaterThanOrEqual(MAX_FREEZE_TIMEOUT_MS - 100);
  expect(waited).toBeLessThan(MAX_FREEZE_TIMEOUT_MS + 1500);
  expect(waited).toBeLessThan(MAX_FREEZE_TIMEOUT_MS + HANDOVER_EXCHANGE_MS);
  // The half-sent message still completes and is answered; everyone carries on.
  half.send('version", "id": "half"}');
  expect(await reply(half)).toMatchObject({ id: 'half', return: {} });
  expect(await roundTrip(other)).toBeLessThan(1000);
  expect(await ctl.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }] });
  // The successor was connected to, and nothing was sent before the freeze gave up.
  await settle(200);
  expect(successor.records()).toEqual([{ connected: true }, { bytes: 0, fds: 0 }]);
});

test('a same-uid successor that never says ready is abandoned within the bound; clients are answered again and a later handover works', async () => {
  const ctl = await client();
  const other = await client();
  const A = MiB + 4096;
  expect(await ctl.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: A })).toEqual({ return: {} });
  const pid = old.proc.pid!;
  writeProcessMemory(pid, mapAt(pid, A), pat('a'));
  chan = path.join(dir, 'fake-0', 'cpr.sock');
  const stall = await fake(0);
  const FREEZE = 500;
  const bound = FREEZE + HANDOVER_EXCHANGE_MS;

  const t0 = Date.now();
  ctl.send(JSON.stringify({ execute: 'cpr-handover', arguments: { channel: `unix:${chan}`, 'freeze-timeout': FREEZE }, id: 'h' }));
  await settle(200);
  other.send(JSON.stringify({ execute: 'query-version', id: 'o' })); // frozen meanwhile
  expect(await reply(other)).toMatchObject({ id: 'o', return: {} });
  const waited = Date.now() - t0;
  expect(waited).toBeGreaterThanOrEqual(bound - 200);
  expect(waited).toBeLessThan(bound + 1000);
  expect(await reply(ctl)).toEqual({
    id: 'h',
    error: { class: 'GenericError', desc: `handover failed, this daemon keeps serving: the new hostmemd did not finish within ${bound} ms (freeze-timeout + ${HANDOVER_EXCHANGE_MS} ms); it is abandoned` },
  });
  // The stalled successor got the fds (it is the same user) and then the end of the channel.
  await settle(200);
  expect(stall.records().map((r) => r.t ?? (r.connected ? 'connected' : r.bytes === 0 ? 'eof' : r))).toEqual(['connected', 'hello', 'fds', 'fds-end', 'eof']);
  expect(await roundTrip(other)).toBeLessThan(1000);
  expect(await ctl.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }] });
  expect(readProcessMemory(pid, mapAt(pid, A), 4096).equals(pat('a'))).toBe(true);

  // Nothing is left half-done: a real successor takes over afterwards.
  stall.proc.kill('SIGKILL');
  const realChan = path.join(dir, 'cpr.sock');
  const next = hostmemd(['--state-dir', dir, '--qmp', `unix:${sock}`, '--incoming-cpr', `unix:${realChan}`]);
  await waitForFile(realChan, next.proc, next.stderr);
  expect(await ctl.execute('cpr-handover', { channel: `unix:${realChan}` })).toEqual({ return: {} });
  expect(await old.exited).toBe(0);
  expect(await other.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }] });
  const newPid = next.proc.pid!;
  expect(readProcessMemory(newPid, mapAt(newPid, A), 4096).equals(pat('a'))).toBe(true);
  // Both sides logged who the other was.
  expect(old.stderr()).toMatch(new RegExp(`"peerPid":${newPid},"peerUid":0.*"msg":"handover: starting"`));
  expect(next.stderr()).toMatch(new RegExp(`"peerPid":${pid},"peerUid":0.*"msg":"handover: the running daemon connected"`));
});

test('a successor that says ready but never confirms is abandoned after the reply: the daemon listens again and thaws everyone', async () => {
  const ctl = await client();
  const other = await client();
  expect(await ctl.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: MiB })).toEqual({ return: {} });
  chan = path.join(dir, 'fake-0', 'cpr.sock');
  const stall = await fake(0, true);
  const FREEZE = 500;
  const bound = FREEZE + HANDOVER_EXCHANGE_MS;
  const t0 = Date.now();
  ctl.send(JSON.stringify({ execute: 'cpr-handover', arguments: { channel: `unix:${chan}`, 'freeze-timeout': FREEZE }, id: 'h' }));
  // The fake said ready: the command succeeds, then the sockets move and 'done' never comes.
  expect(await reply(ctl)).toEqual({ id: 'h', return: {} });
  await settle(200);
  other.send(JSON.stringify({ execute: 'query-version', id: 'o' }));
  expect(await reply(other)).toMatchObject({ id: 'o', return: {} });
  const waited = Date.now() - t0;
  expect(waited).toBeGreaterThanOrEqual(bound - 200);
  expect(waited).toBeLessThan(bound + 1000);
  expect(stall.records().map((r) => r.t ?? (r.connected ? 'connected' : r.bytes === 0 ? 'eof' : r))).toEqual(['connected', 'hello', 'fds', 'fds-end', 'listeners', 'clients', 'commit', 'eof']);
  // This daemon listens again: a new client is greeted and served.
  stall.proc.kill('SIGKILL');
  const later = await client();
  expect(await roundTrip(later)).toBeLessThan(1000);
  expect(await ctl.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }] });
  expect(old.proc.exitCode).toBeNull();
  // And new connections keep coming in.
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(sock);
    s.once('data', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
  });
});

(ROOT_USER ? test : test.skip)('a waiting successor hangs up on a process of another uid and keeps waiting for the real daemon', async () => {
  const c = await client();
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: MiB })).toEqual({ return: {} });
  const realChan = path.join(dir, 'cpr.sock');
  const next = hostmemd(['--state-dir', dir, '--qmp', `unix:${sock}`, '--incoming-cpr', `unix:${realChan}`]);
  await waitForFile(realChan, next.proc, next.stderr);
  await settle(100); // bound, then chmod 0600 and listen
  // Opened up on purpose (it is 0600), so that nobody's connection reaches the check itself.
  fs.chmodSync(realChan, 0o777);
  const probe = `
    const S = require(process.argv[2]).sockets;
    const s = S.socket(S.SOCK_SEQPACKET);
    S.connectNow(s, process.argv[1]);
    S.receiveWithFds(s, 65536, 253).then((r) => process.stdout.write(JSON.stringify({ bytes: r.data.length, fds: r.fds.length })), (e) => process.stdout.write(String(e)));
  `;
  const intruder = track(spawn(process.execPath, ['-e', probe, realChan, path.join(ROOT, 'dist', 'native', 'index.js')], { uid: NOBODY, gid: NOBODY, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  intruder.proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  expect(await intruder.exited).toBe(0);
  expect([out, intruder.stderr()]).toEqual([JSON.stringify({ bytes: 0, fds: 0 }), '']); // hung up on, nothing sent
  expect(next.stderr()).toMatch(new RegExp(`"peerUid":${NOBODY}.*"msg":"handover: refused a connection: the process runs as uid ${NOBODY}, not as this daemon's uid 0 \\(nor as root\\); still waiting"`));
  expect(next.proc.exitCode).toBeNull();
  // The real daemon is still welcome.
  expect(await c.execute('cpr-handover', { channel: `unix:${realChan}` })).toEqual({ return: {} });
  expect(await old.exited).toBe(0);
  expect(await c.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }] });
});
