// Live handover without systemd (hostmemd's cpr-transfer): `cpr-handover` on the running daemon
// moves every backend fd, the listening socket and the connected clients to a new process
// started with --incoming-cpr. Under continuous load from pipelining clients, no request is
// lost or answered twice, no connection is refused, every object keeps its bytes; any failure
// leaves the old daemon serving with everything intact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { spawn, ChildProcess } from 'node:child_process';
import { ROOT, killAndWait, tmpDir, waitConnectable, waitForFile } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';
import { backendMapping as mapAt, readProcessMemory, tagPage as pat, writeProcessMemory } from '../helpers/proc';
import { kvmUsable } from '../helpers/native';
import { announceSkip } from '../helpers/qemu';
import { Journal } from '../../src/journal/journal';

jest.setTimeout(60000);
const MiB = 1 << 20;
const KVM = kvmUsable();
if (!KVM) announceSkip('handover test: memory-backend-guest-memfd case', '/dev/kvm is not usable here');

interface Proc {
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function run(args: string[]): Proc {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return { proc, stderr: () => err, exited };
}

const waitFile = (p: string, who: Proc): Promise<void> => waitForFile(p, who.proc, who.stderr);

const BACKENDS = [
  { id: 'mfd', size: 2 * MiB + 5 * 4096, args: { 'qom-type': 'memory-backend-memfd' } },
  { id: 'gm', size: 3 * MiB + 7 * 4096, kvm: true, args: { 'qom-type': 'memory-backend-guest-memfd' } },
  { id: 'ramsh', size: 5 * MiB + 9 * 4096, args: { 'qom-type': 'memory-backend-ram', share: true } },
  { id: 'shm', size: 6 * MiB + 11 * 4096, args: { 'qom-type': 'memory-backend-shm' } },
].filter((b) => !b.kvm || KVM);

/** The next message that is not an event (bounded: 30 s, for a 2 GiB preallocation on a
 *  loaded machine). */
async function reply(c: RawQmpClient): Promise<Record<string, unknown>> {
  for (;;) {
    const r = await c.json(30000);
    if (!('event' in r)) return r;
  }
}

/** A client that keeps `depth` requests in flight and checks that each reply is the next id. */
class LoadClient {
  sent = 0;
  answered = 0;
  errors: string[] = [];
  private stop = false;
  done: Promise<void>;
  constructor(
    readonly c: RawQmpClient,
    readonly name: string,
    depth: number,
  ) {
    this.done = this.loop(depth);
  }
  private async loop(depth: number): Promise<void> {
    const send = (): void => {
      const id = `${this.name}-${this.sent++}`;
      // Every fifth request creates and deletes an object: the state changes under load too.
      const k = this.sent % 5;
      if (k === 1) this.c.send(JSON.stringify({ execute: 'object-add', arguments: { 'qom-type': 'memory-backend-memfd', id: `t-${this.name}`, size: MiB }, id }));
      else if (k === 2) this.c.send(JSON.stringify({ execute: 'object-del', arguments: { id: `t-${this.name}` }, id }));
      else this.c.send(JSON.stringify({ execute: 'query-version', id }));
    };
    for (let i = 0; i < depth; i++) send();
    while (this.answered < this.sent) {
      const r = await this.c.json(15000);
      if ('event' in r) continue;
      const want = `${this.name}-${this.answered++}`;
      if (r.id !== want) this.errors.push(`expected reply ${want}, got ${JSON.stringify(r)}`);
      if ('error' in r) this.errors.push(`${want}: ${JSON.stringify(r.error)}`);
      if (!this.stop) send();
    }
  }
  async finish(): Promise<void> {
    this.stop = true;
    await this.done;
  }
}

let dir: string;
let sock: string;
let chan: string;
let old: Proc;
const started: Proc[] = [];
beforeEach(async () => {
  dir = tmpDir('hostmemd-handover-');
  sock = path.join(dir, 'qmp.sock');
  chan = path.join(dir, 'cpr.sock');
  old = run(['--state-dir', dir, '--qmp', `unix:${sock}`]);
  started.push(old);
  await waitFile(sock, old);
  await waitConnectable(sock);
});
afterEach(async () => {
  if (process.env.HANDOVER_DEBUG) for (const p of started) console.log(p.stderr().split("\n").filter((l) => !l.includes(`"level":20`)).map((l) => l.slice(0, 400)).join("\n"));
  await Promise.all(started.splice(0).map((p) => killAndWait(p.proc)));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function successor(extra: string[] = []): Promise<Proc> {
  const p = run(['--state-dir', dir, '--qmp', `unix:${sock}`, '--incoming-cpr', `unix:${chan}`, ...extra]);
  started.push(p);
  await waitFile(chan, p);
  return p;
}

test('handover under continuous load: no request lost, no connection refused, every object and its bytes kept', async () => {
  const ctl = await RawQmpClient.negotiated(sock);
  for (const b of BACKENDS) expect(await ctl.execute('object-add', { ...b.args, id: b.id, size: b.size })).toEqual({ return: {} });
  const oldPid = old.proc.pid!;
  for (const b of BACKENDS) writeProcessMemory(oldPid, mapAt(oldPid, b.size), pat(b.id));

  const loads = await Promise.all([1, 4, 16].map(async (depth, i) => new LoadClient(await RawQmpClient.negotiated(sock), `L${i}`, depth)));
  // A client that has connected but not negotiated yet, and one half-way through a message.
  const fresh = await RawQmpClient.connect(sock);
  expect(JSON.parse(await fresh.line())).toHaveProperty('QMP');
  const half = await RawQmpClient.negotiated(sock);
  half.send('{"execute": "query-');
  // New connections keep coming during the handover: none may be refused.
  let refused = 0;
  let connects = 0;
  let connecting = true;
  const connector = (async () => {
    while (connecting) {
      await new Promise<void>((resolve) => {
        const s = net.connect(sock);
        s.once('data', () => {
          connects++;
          s.destroy();
          resolve();
        });
        s.once('error', () => {
          refused++;
          resolve();
        });
      });
    }
  })();
  await new Promise((r) => setTimeout(r, 300));

  const next = await successor();
  // The handover waits for the half-sent message to be complete (here 500 ms later).
  const finishHalf = setTimeout(() => half.send('version", "id": "half"}'), 500);
  expect(await ctl.execute('cpr-handover', { channel: `unix:${chan}` })).toEqual({ return: {} });
  clearTimeout(finishHalf);
  expect(await old.exited).toBe(0);
  await new Promise((r) => setTimeout(r, 300));
  connecting = false;
  await connector;
  for (const l of loads) await l.finish();

  for (const l of loads) expect([l.name, l.errors]).toEqual([l.name, []]);
  expect(loads.every((l) => l.answered > 20)).toBe(true);
  expect(refused).toBe(0);
  expect(connects).toBeGreaterThan(0);
  expect(await reply(half)).toMatchObject({ id: 'half', return: { package: expect.stringMatching(/^hostmemd /) } });
  // The un-negotiated client carries on in negotiation mode with the new daemon.
  expect(await fresh.execute('query-version')).toMatchObject({ error: { class: 'CommandNotFound' } });
  expect(await fresh.execute('qmp_capabilities')).toEqual({ return: {} });

  // The control client's connection moved too: the new daemon answers it.
  const memdev = (await ctl.execute('query-memdev')).return as { id: string; size: number }[];
  expect(memdev.map((m) => [m.id, m.size]).filter(([id]) => !String(id).startsWith('t-'))).toEqual(BACKENDS.map((b) => [b.id, b.size]));
  const newPid = next.proc.pid!;
  for (const b of BACKENDS) expect([b.id, readProcessMemory(newPid, mapAt(newPid, b.size), 4096).equals(pat(b.id))]).toEqual([b.id, true]);
  const cpr = (await ctl.execute('query-cpr')).return as { objects: { id: string; origin: string }[]; problems: unknown[] };
  expect(cpr.problems).toEqual([]);
  for (const o of cpr.objects.filter((x) => !x.id.startsWith('t-'))) expect([o.id, o.origin]).toEqual([o.id, 'reattached']);
  for (const c of [ctl, fresh, half, ...loads.map((l) => l.c)]) c.close();
  // And it stops cleanly, removing the socket it inherited.
  next.proc.kill('SIGTERM');
  expect(await next.exited).toBe(0);
  expect(fs.existsSync(sock)).toBe(false);
});

test('nobody at the channel: a clear error and the daemon keeps serving', async () => {
  const c = await RawQmpClient.negotiated(sock);
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB })).toEqual({ return: {} });
  const r = (await c.execute('cpr-handover', { channel: `unix:${chan}` })) as { error: { class: string; desc: string } };
  expect(r.error).toEqual({ class: 'GenericError', desc: `cannot reach the new hostmemd at 'unix:${chan}': connect: No such file or directory` });
  expect(((await c.execute('cpr-handover', { channel: 'tcp:1.2.3.4:5' })) as { error: { desc: string } }).error.desc).toBe(
    "cannot reach the new hostmemd at 'tcp:1.2.3.4:5': bad handover channel 'tcp:1.2.3.4:5': must be unix:PATH",
  );
  // Arguments are checked against the schema first, with QEMU's texts.
  expect(await c.execute('cpr-handover', {})).toEqual({ error: { class: 'GenericError', desc: "Parameter 'channel' is missing" } });
  expect(await c.execute('cpr-handover', { channel: 1 })).toEqual({ error: { class: 'GenericError', desc: "Invalid parameter type for 'channel', expected: string" } });
  expect(await c.execute('cpr-handover', { channel: `unix:${chan}`, 'freeze-timeout': -1 })).toMatchObject({ error: { class: 'GenericError', desc: expect.stringMatching(/freeze-timeout/) } });
  expect(await c.execute('query-cpr', { x: 1 })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'x' is unexpected" } });
  expect(await c.execute('query-memdev')).toMatchObject({ return: [{ id: 'm' }] });
  c.close();
});

test('private memory refuses the handover before anything moves', async () => {
  const c = await RawQmpClient.negotiated(sock);
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'p', size: MiB })).toEqual({ return: {} });
  const next = await successor();
  expect(await c.execute('cpr-handover', { channel: `unix:${chan}` })).toEqual({
    error: { class: 'GenericError', desc: "backend 'p' has private memory (share=off), which a handover cannot keep" },
  });
  expect(await c.execute('query-version')).toHaveProperty('return');
  next.proc.kill('SIGKILL');
  c.close();
});

test('a successor that cannot take every object refuses; the old daemon keeps serving with everything', async () => {
  const c = await RawQmpClient.negotiated(sock);
  const A = MiB + 3 * 4096;
  const bPath = path.join(dir, 'files', 'b');
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: A })).toEqual({ return: {} });
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'b', size: MiB, share: true, 'mem-path': bPath })).toEqual({ return: {} });
  writeProcessMemory(old.proc.pid!, mapAt(old.proc.pid!, A), pat('a'));
  const other = await RawQmpClient.negotiated(sock);
  other.send('{"execute": "query-version", "id": 1}'); // answered before or after: never lost
  // A successor whose --mem-path-allow no longer holds b's file cannot re-create b.
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  const next = await successor(['--mem-path-allow', elsewhere]);
  const r = (await c.execute('cpr-handover', { channel: `unix:${chan}` })) as { error: { desc: string } };
  expect(r.error.desc).toBe(
    `handover failed, this daemon keeps serving: the new hostmemd could not take every object: object 'b': could not be re-created: mem-path '${bPath}' is not a regular file or directory inside an allowed directory (--mem-path-allow); journal entry left in place`,
  );
  expect(await next.exited).toBe(1);
  expect(next.stderr()).toMatch(/could not take every object/);
  expect(await reply(other)).toMatchObject({ id: 1, return: {} });
  expect(await other.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }, { id: 'b' }] });
  expect(readProcessMemory(old.proc.pid!, mapAt(old.proc.pid!, A), 4096).equals(pat('a'))).toBe(true);
  // The journal is untouched and a later handover to a good successor works.
  // (As a restart reads it: the entry files, which wait for the checkpoint, and the log.)
  expect(fs.readdirSync(path.join(dir, 'objects')).filter((n) => !n.endsWith('.json'))).toEqual([]);
  const journal = new Journal(dir);
  expect(journal.load({ keepTemp: true })).toEqual({ entries: [expect.objectContaining({ id: 'a' }), expect.objectContaining({ id: 'b' })], problems: [] });
  journal.close();
  const good = await successor();
  expect(await c.execute('cpr-handover', { channel: `unix:${chan}` })).toEqual({ return: {} });
  expect(await old.exited).toBe(0);
  expect(await c.execute('query-memdev')).toMatchObject({ return: [{ id: 'a' }, { id: 'b' }] });
  good.proc.kill('SIGTERM');
  c.close();
  other.close();
});

test('a successor with another state directory is refused with a clear error', async () => {
  const c = await RawQmpClient.negotiated(sock);
  const elsewhere = tmpDir('hostmemd-other-');
  const p = run(['--state-dir', elsewhere, '--qmp', `unix:${path.join(elsewhere, 'q.sock')}`, '--incoming-cpr', `unix:${chan}`]);
  started.push(p);
  await waitFile(chan, p);
  const r = (await c.execute('cpr-handover', { channel: `unix:${chan}` })) as { error: { desc: string } };
  expect(r.error.desc).toContain(`the running daemon's state directory is ${dir}, this one's is ${elsewhere}: they must be the same`);
  expect(await p.exited).toBe(1);
  expect(await c.execute('query-version')).toHaveProperty('return');
  c.close();
  fs.rmSync(elsewhere, { recursive: true, force: true });
});

test('with --ws, the successor takes the web port over as the old daemon exits', async () => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  // Restart the fixture daemon with --ws on that port.
  old.proc.kill('SIGTERM');
  await old.exited;
  old = run(['--state-dir', dir, '--qmp', `unix:${sock}`, '--ws', `127.0.0.1:${port}`]);
  started.push(old);
  await waitFile(sock, old);
  await waitConnectable(sock);
  const health = async (): Promise<number> => (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
  const healthy = async (): Promise<number> => {
    const deadline = Date.now() + 10000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = await health().catch(() => 0);
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    return status;
  };
  expect(await healthy()).toBe(200);
  const c = await RawQmpClient.negotiated(sock);
  const next = await successor(['--ws', `127.0.0.1:${port}`]);
  expect(await c.execute('cpr-handover', { channel: `unix:${chan}` })).toEqual({ return: {} });
  expect(await old.exited).toBe(0);
  expect(await healthy()).toBe(200);
  expect(next.proc.exitCode).toBeNull();
  expect(await c.execute('query-version')).toHaveProperty('return');
  c.close();
});

test('a command still running (a long preallocation) past freeze-timeout fails the handover; it completes on the old daemon', async () => {
  const c = await RawQmpClient.negotiated(sock);
  const busy = await RawQmpClient.negotiated(sock);
  busy.send(JSON.stringify({ execute: 'object-add', arguments: { 'qom-type': 'memory-backend-memfd', id: 'big', size: 2 ** 31, prealloc: true }, id: 'big' }));
  await new Promise((r) => setTimeout(r, 50));
  const next = await successor();
  const r = (await c.execute('cpr-handover', { channel: `unix:${chan}`, 'freeze-timeout': 100 })) as { error: { desc: string } };
  expect(r.error.desc).toBe('handover failed, this daemon keeps serving: commands still running after 100 ms (a long preallocation?)');
  expect(await reply(busy)).toEqual({ return: {}, id: 'big' });
  expect(await c.execute('query-memdev')).toMatchObject({ return: [{ id: 'big', prealloc: true }] });
  expect(await next.exited).not.toBe(0);
  c.close();
  busy.close();
}, 60_000);
