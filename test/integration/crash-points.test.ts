// Crash consistency by construction (issue 13 item 5): hostmemd runs under hostmemd-supervise
// (the keeper: it holds the stored backend fds) with the crash-point test hook on
// (HOSTMEMD_TEST_CRASH_FILE, src/daemon/crash-hook.ts). Each round names one step of
// object-add / qom-set / object-del (allocation, fd store, log append, the checkpoint's temp
// write and rename after the reply, live change, reply, ...), runs 1 or 3 such changes at once (one client, three
// clients, or one client pipelining three), and the daemon SIGKILLs itself at that step. After
// the supervisor restarts it, the test checks:
//  - every acknowledged change (its reply was received) is there: the object in qom-list, its
//    journal entry naming the fd the keeper holds, the daemon mapping that very file, the bytes
//    written into it after its object-add was acknowledged, and the qom-set values acknowledged;
//  - no ghost: each change in flight at the kill (sent, no reply received) is either wholly
//    there or wholly absent. Wholly there: as an acknowledged change (object listed, journal
//    entry, exactly one keeper fd, mapped, old bytes kept; a qom-set value read back equals the
//    journal's). Wholly absent: an object-add leaves no object, no journal entry, no keeper fd
//    and no "lost" report; an object-del leaves the object as it was (bytes kept) or removes
//    object, entry and keeper fd together; a qom-set leaves the old value in both the live
//    object and the journal;
//  - the keeper's store holds exactly one fd per journaled object, no other memfd (no leak,
//    no duplicate), and the journal, the live object set and the store name the same objects.
// Default: 23 steps x 3 ways x 3 rounds = 207 kill points, about 4-6 minutes on the loaded
// 2-core CI machine (each kill costs a daemon start). HOSTMEMD_CRASH_ROUNDS=N runs N rounds
// (the long mode; 1 round = 69 kills).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { ROOT, tmpDir, waitConnectable, waitForFile } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';
import { Journal, JournalEntry } from '../../src/journal/journal';

const ROUNDS = Number(process.env.HOSTMEMD_CRASH_ROUNDS ?? 3);
jest.setTimeout(Math.max(600_000, ROUNDS * 240_000));

const SIZE = 1024 * 1024;
const TYPE = 'memory-backend-memfd';

/** The steps a change passes, by the name its crash point has. */
const STEPS: Record<'add' | 'set' | 'del', string[]> = {
  add: ['object-add:admitted', 'fd-stored', 'object-add:allocated', 'object-add:logging', 'object-add:synced', 'object-add:attached', 'object-add:replied', 'object-add:temp-written', 'object-add:applied'],
  set: ['qom-set:set-live', 'qom-set:logging', 'qom-set:synced', 'qom-set:replied', 'qom-set:temp-written', 'qom-set:applied'],
  del: ['object-del:logging', 'object-del:synced', 'object-del:unjournaled', 'fd-removed', 'object-del:released', 'object-del:replied', 'object-del:applied', 'checkpoint:synced'],
};
type Way = 'one' | 'three clients' | 'pipelined';
const WAYS: Way[] = ['one', 'three clients', 'pipelined'];

/** What the test knows to be acknowledged: the object's tag (in its first bytes) and dump. */
interface Known {
  tag: Buffer;
  dump: boolean;
}

let dir: string;
let sock: string;
let crashFile: string;
let sup: ChildProcess;
const known = new Map<string, Known>();
let nextId = 0;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function daemonPid(): number | undefined {
  const kids = fs.readFileSync(`/proc/${sup.pid}/task/${sup.pid}/children`, 'utf8').trim();
  return kids ? Number(kids.split(/\s+/)[0]) : undefined;
}

/** Memfds a process holds: fd number and inode. */
function memfds(pid: number): { fd: string; ino: string }[] {
  const out: { fd: string; ino: string }[] = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (!fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('/memfd:')) continue;
      out.push({ fd, ino: fs.statSync(`/proc/${pid}/fd/${fd}`).ino.toString() });
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Inodes of the files a process maps (the inode column of /proc/PID/maps). */
function mappedInodes(pid: number): Set<string> {
  const s = new Set<string>();
  for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const f = line.split(/\s+/);
    if (f.length >= 6 && f[5].startsWith('/memfd:')) s.add(f[4]);
  }
  return s;
}

/** The journal as a start reads it: the entry files with the log's changes over them (a
 *  restarted daemon writes those to the files only at its first checkpoint). Read-only, as a
 *  handover's successor reads it; the log is read before the files, so a checkpoint meanwhile
 *  changes nothing. */
function journalEntries(): Map<string, JournalEntry> {
  const j = new Journal(dir);
  try {
    const { entries, problems } = j.load({ keepTemp: true });
    expect(problems).toEqual([]);
    return new Map(entries.map((e) => [e.id, e]));
  } finally {
    j.close();
  }
}

function fdOf(pid: number, ino: string): string {
  const f = memfds(pid).find((x) => x.ino === ino);
  if (!f) throw new Error(`pid ${pid} holds no memfd with inode ${ino}`);
  return `/proc/${pid}/fd/${f.fd}`;
}

function writeTag(pid: number, ino: string, tag: Buffer): void {
  const fd = fs.openSync(fdOf(pid, ino), 'r+');
  try {
    fs.writeSync(fd, tag, 0, tag.length, 0);
  } finally {
    fs.closeSync(fd);
  }
}

function readTag(pid: number, ino: string, len: number): Buffer {
  const fd = fs.openSync(fdOf(pid, ino), 'r');
  try {
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, 0);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** A negotiated client; the greeting may take a daemon start (slow on a loaded machine). */
async function client(): Promise<RawQmpClient> {
  const c = await RawQmpClient.connect(sock);
  await c.line(60000);
  c.send('{"execute":"qmp_capabilities"}');
  expect(await c.line(60000)).toBe('{"return": {}}');
  return c;
}

/** The daemon now serving, and its memfds once the keeper store and the journal agree. */
async function currentDaemon(): Promise<number> {
  for (const deadline = Date.now() + 30000; ; ) {
    const pid = daemonPid();
    if (pid !== undefined) return pid;
    if (Date.now() > deadline) throw new Error('no daemon');
    await sleep(20);
  }
}

/** Acknowledged object-add: tag its memory and remember it. */
function remember(id: string, pid: number, e: JournalEntry): void {
  const tag = Buffer.from(`crash-points ${id} ${process.pid}`);
  writeTag(pid, e.fd!.ino, tag);
  known.set(id, { tag, dump: true });
}

async function addKnown(c: RawQmpClient, n: number): Promise<void> {
  const pid = await currentDaemon();
  for (let i = 0; i < n; i++) {
    const id = `o${nextId++}`;
    expect(await c.execute('object-add', { 'qom-type': TYPE, id, size: SIZE })).toEqual({ return: {} });
    remember(id, pid, journalEntries().get(id)!);
  }
}

interface Change {
  op: 'add' | 'set' | 'del';
  id: string;
  /** qom-set: the value asked. */
  value?: boolean;
  acked?: boolean;
}

function request(ch: Change, n: number): string {
  const args = ch.op === 'add' ? { 'qom-type': TYPE, id: ch.id, size: SIZE } : ch.op === 'del' ? { id: ch.id } : { path: `/objects/${ch.id}`, property: 'dump', value: ch.value };
  return JSON.stringify({ execute: ch.op === 'add' ? 'object-add' : ch.op === 'del' ? 'object-del' : 'qom-set', arguments: args, id: n });
}

/** Sends the changes (as `way` says) and records which were acknowledged before the kill. */
async function run(changes: Change[], way: Way): Promise<void> {
  const readReplies = async (c: RawQmpClient, mine: Change[]): Promise<void> => {
    for (let got = 0; got < mine.length; ) {
      let m: Record<string, unknown>;
      try {
        m = await c.json(20000);
      } catch {
        return; // the daemon died: what was not answered is in flight
      }
      if ('event' in m) continue;
      expect(m).toEqual({ return: {}, id: expect.any(Number) });
      mine[m.id as number].acked = true;
      got++;
    }
  };
  if (way === 'pipelined') {
    const c = await client();
    c.send(changes.map((ch, i) => request(ch, i)).join('\n'));
    await readReplies(c, changes);
    c.close();
    return;
  }
  const cs = await Promise.all(changes.map(() => client()));
  cs.forEach((c, i) => c.send(request(changes[i], 0)));
  await Promise.all(cs.map((c, i) => readReplies(c, [changes[i]])));
  for (const c of cs) c.close();
}

/** The checks of the header, after the restart; returns the restarted daemon's pid. */
async function verify(inflight: Change[], label: string): Promise<void> {
  const c = await client();
  const pid = await currentDaemon();
  const live = ((await c.execute('qom-list', { path: '/objects' })).return as { name: string; type: string }[]).filter((p) => p.type.startsWith('child<memory-backend')).map((p) => p.name);
  const cpr = (await c.execute('query-cpr')).return as { lost: { id: string }[]; problems: { problem: string }[] };
  expect([label, cpr.lost]).toEqual([label, []]);
  for (const p of cpr.problems) expect([label, p.problem]).toEqual([label, expect.stringMatching(/^preserved fd '.+' belongs to no journaled object; closed and removed from the fd store$/)]);
  const journal = journalEntries();

  // Each change in flight: wholly there (then it counts as acknowledged) or wholly absent.
  for (const ch of inflight) {
    if (ch.acked) continue;
    const there = live.includes(ch.id);
    expect([label, ch.id, there]).toEqual([label, ch.id, journal.has(ch.id)]);
    if (ch.op === 'add' && there) remember(ch.id, pid, journal.get(ch.id)!);
    if (ch.op === 'del' && !there) known.delete(ch.id);
    if (ch.op === 'set') {
      const now = (await c.execute('qom-get', { path: `/objects/${ch.id}`, property: 'dump' })).return as boolean;
      expect([label, ch.id, journal.get(ch.id)!.args.dump ?? true]).toEqual([label, ch.id, now]);
      expect([label, ch.id, [known.get(ch.id)!.dump, ch.value].includes(now)]).toEqual([label, ch.id, true]);
      known.get(ch.id)!.dump = now;
    }
  }
  for (const ch of inflight) {
    if (!ch.acked) continue;
    if (ch.op === 'add') remember(ch.id, pid, journal.get(ch.id) ?? ({ fd: { ino: 'missing' } } as JournalEntry));
    if (ch.op === 'del') known.delete(ch.id);
    if (ch.op === 'set') known.get(ch.id)!.dump = ch.value!;
  }

  // Every acknowledged object with its bytes and values; the live set is the journal's.
  expect([label, [...live].sort()]).toEqual([label, [...known.keys()].sort()]);
  expect([label, [...journal.keys()].sort()]).toEqual([label, [...known.keys()].sort()]);
  const mapped = mappedInodes(pid);
  for (const [id, k] of known) {
    const e = journal.get(id)!;
    expect([label, id, mapped.has(e.fd!.ino)]).toEqual([label, id, true]);
    expect([label, id, readTag(pid, e.fd!.ino, k.tag.length).toString()]).toEqual([label, id, k.tag.toString()]);
    const dump = (await c.execute('qom-get', { path: `/objects/${id}`, property: 'dump' })).return;
    expect([label, id, dump, e.args.dump ?? true]).toEqual([label, id, k.dump, k.dump]);
  }

  // The keeper holds one fd per journaled object and nothing else (it drops unclaimed ones as
  // the daemon's notifications arrive: settled within a moment).
  const want = [...journal.values()].map((e) => e.fd!.ino).sort();
  let held: string[] = [];
  for (const deadline = Date.now() + 5000; ; ) {
    held = memfds(sup.pid!).map((f) => f.ino).sort();
    if (JSON.stringify(held) === JSON.stringify(want) || Date.now() > deadline) break;
    await sleep(20);
  }
  expect([label, held]).toEqual([label, want]);
  c.close();
}

beforeAll(async () => {
  dir = tmpDir('hostmemd-crash-');
  sock = path.join(dir, 'qmp.sock');
  crashFile = path.join(dir, 'crash-at');
  sup = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd-supervise'), '--state-dir', dir, '--log-level', 'error'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, HOSTMEMD_TEST_CRASH_FILE: crashFile, HOSTMEMD_RESTART_BURST: '1000000', HOSTMEMD_WATCHDOG_SEC: '0' },
  });
  await waitForFile(sock, sup);
  await waitConnectable(sock);
});

afterAll(async () => {
  if (sup && sup.exitCode === null) {
    const gone = new Promise((r) => sup.once('exit', r));
    sup.kill('SIGTERM');
    await gone;
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test(`${ROUNDS * WAYS.length * (STEPS.add.length + STEPS.set.length + STEPS.del.length)} kill points: nothing acknowledged lost, no ghost, no leaked or duplicated fd in the keeper`, async () => {
  const t0 = Date.now();
  let kills = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const way of WAYS) {
      for (const op of ['add', 'set', 'del'] as const) {
        for (const step of STEPS[op]) {
          const label = `round ${round}, ${way}, ${step}`;
          const n = way === 'one' ? 1 : 3;
          // Objects to change: acknowledged ones, made now if there are too few.
          if (op !== 'add' && known.size < n) {
            const c = await client();
            await addKnown(c, n - known.size);
            c.close();
          }
          const targets = [...known.keys()].slice(0, n);
          const changes: Change[] = Array.from({ length: n }, (_, i) =>
            op === 'add' ? { op, id: `o${nextId++}` } : op === 'set' ? { op, id: targets[i], value: !known.get(targets[i])!.dump } : { op, id: targets[i] },
          );
          const before = await currentDaemon();
          fs.writeFileSync(crashFile, step);
          await run(changes, way);
          // The daemon must die at that step: a step never reached is a test bug.
          for (const deadline = Date.now() + 20000; daemonPid() === before && fs.existsSync(`/proc/${before}`); ) {
            if (Date.now() > deadline) throw new Error(`${label}: the daemon did not crash (the step was not reached)`);
            await sleep(10);
          }
          expect([label, fs.existsSync(crashFile)]).toEqual([label, false]);
          kills++;
          await verify(changes, label);
          if (kills % 22 === 0) process.stderr.write(`crash-points: ${kills} kills, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
        }
      }
    }
  }
  // Shown in the test log: the figures the header quotes.
  process.stderr.write(`crash-points: ${kills} kill points in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${known.size} objects at the end\n`);
  expect(kills).toBeGreaterThanOrEqual(ROUNDS * 66);
});
