// bench/scale: how hostmemd scales with the number of objects and the number of clients.
//
// 1. Object scaling (hostmemd): OBJECTS memfd backends of 1 MiB are created one at a time on
//    one connection. Reported: object-add rate per second for the first 100 objects and for each
//    1,000-object segment; query-memdev and qom-list /objects latency (median of 5) at 100, 1,000,
//    5,000 and 10,000 objects (those <= OBJECTS, plus the final count): the round trip at this
//    Node client, JSON.parse of the reply included (bench/cold-query.mjs splits a first call
//    into server CPU, reading and parsing); memory per object; the object-del rate for deleting
//    them all; the daemon's fd count (/proc/<pid>/fd, the fds not there at the start named) and
//    mappings (/proc/<pid>/maps: all, and those of memfd backends) before creation (after one
//    object-add and object-del: hostmemd's journal keeps its log open from the first change
//    on), all created and after deletion. Memory: hostmemd runs under node --inspect so that the bench can force a full
//    garbage collection (HeapProfiler.collectGarbage) before each reading: garbage not yet
//    collected is not memory the objects hold. Read from /proc/<pid>/status before creation,
//    all created (also before that gc, as earlier versions of this bench did) and after
//    delete-all: VmRSS, RssAnon, RssFile, RssShmem, VmPTE, and the JS heap in use. "RSS beyond
//    the backend memory" is the VmRSS growth minus the RssShmem growth (memfd pages are shmem;
//    this bench never touches them, so RssShmem should not move); page tables (VmPTE) and the
//    kernel's VMAs are not in VmRSS at all and are shown apart. Each memfd holds one fd, so if
//    OBJECTS would exceed the daemon's soft "Max open files" limit (/proc/<pid>/limits),
//    creation stops at limit - 64 objects; an object-add error (GenericError is the expected
//    clean failure) also stops creation and is reported.
// 2. The same up to QEMU_OBJECTS against QEMU 7.2 (qemu-system-x86_64 -machine none), on a fresh
//    hostmemd and a QEMU run one after the other, with ratios hostmemd/QEMU for add rate and
//    query-memdev latency at the common checkpoints. Skipped when QEMU is not installed.
// 3. Client scaling (hostmemd): for each N in CLIENTS, N negotiated clients are connected (in
//    batches of 100; failures are counted, not raised); then query-version round trips p50/p99
//    from 200 sequential requests, each on a random client; and event fan-out: one extra client
//    does object-add of a 1 MiB memfd and the time from sending it until all N clients have
//    received the OBJECT_ADDED event line is measured (then object-del). Clients are closed
//    between rounds. Then the same with MIXED clients (default 1,000), half on the UNIX socket
//    and half over the /qmp WebSocket with the token (a daemon started with --ws), with the
//    fan-out time also given per transport.
// 4. The acceptance checks of issue 7, each printed as PASS or FAIL with its figure.
//
// Run: node bench/scale.mjs
// Env: OBJECTS (default 10000), QEMU_OBJECTS (default 2000), CLIENTS (default "1,10,100,1000"),
//      MIXED (default 1000; 0 skips the mixed run).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, WsClient, benchFlags, freePort, negotiatedClient, request, startHostmemd, startQemu, haveQemu, percentile, fmt, printTable, waitHealthy, writeJson } from './lib.mjs';

const flags = benchFlags();
const quick = flags.quick;
const OBJECTS = Number(process.env.OBJECTS ?? (quick ? 500 : 10000));
const QEMU_OBJECTS = Number(process.env.QEMU_OBJECTS ?? (quick ? 300 : 2000));
const CLIENTS = String(process.env.CLIENTS ?? (quick ? '1,10' : '1,10,100,1000'))
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0);
const MIXED = Number(process.env.MIXED ?? (quick ? 20 : 1000));
const MiB = 1 << 20;
// 500, 2000: more points for the scale chart of `npm run bench` (bench/run.mjs).
const CHECKPOINTS = [100, 500, 1000, 2000, 5000, 10000];

const now = () => process.hrtime.bigint();
const ms = (t0) => Number(now() - t0) / 1e6;
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

const client = negotiatedClient;
const exec = request;

async function must(c, cmd, args) {
  const r = await exec(c, cmd, args);
  if (r.err) throw new Error(`${cmd}: ${r.err}`);
  return r.ret;
}

function procStatus(pid) {
  const txt = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(txt)?.[1] ?? NaN);
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), shmem: kb('RssShmem'), pte: kb('VmPTE') };
}
/** procStatus after a full gc when the server is hostmemd under the inspector, plus its JS heap. */
async function memory(server) {
  if (server.inspector) await server.inspector.gc();
  const st = procStatus(server.pid);
  if (server.inspector) st.heapKb = (await server.inspector.memoryUsage()).heapUsed / 1024;
  return st;
}
const fdCount = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;
/** fd number -> what it refers to (/proc/<pid>/fd links), to name what an fd count difference is. */
function fdTargets(pid) {
  const out = new Map();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.set(fd, fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}
/** The fds of `b` that `a` does not have (or had with another target), as "fd -> target". */
const fdsAdded = (a, b) => [...b].filter(([fd, t]) => a.get(fd) !== t).map(([fd, t]) => `${fd} -> ${t}`);
/** Mappings of the process: all, and those of memfd backends (both daemons name them so). */
function mapCount(pid) {
  const lines = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l !== '');
  return { all: lines.length, memfd: lines.filter((l) => l.includes('/memfd:memory-backend-memfd')).length };
}
function fdSoftLimit(pid) {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : Infinity;
}

/** Creates up to `count` 1 MiB memfd backends on one connection, measuring as described above. */
async function objectScaling(server, count) {
  const c = await client(server.sock);
  const pid = server.pid;
  const r = { name: server.name, requested: count, notes: [] };
  r.fdLimit = fdSoftLimit(pid);
  // One object added and deleted first: hostmemd's journal opens its log at the first change
  // and keeps it open (one fd for the daemon's life), which is not something the objects hold.
  const warm = await exec(c, 'object-add', { 'qom-type': 'memory-backend-memfd', id: 'warm-up', size: MiB });
  if (!warm.err) await must(c, 'object-del', { id: 'warm-up' });
  r.fdsBefore = fdTargets(pid);
  r.fdBefore = r.fdsBefore.size;
  let target = count;
  if (count > r.fdLimit - 64) {
    target = r.fdLimit - 64;
    const msg = `${server.name}: ${count} objects would exceed the fd soft limit ${r.fdLimit} (one fd per memfd); stopping at limit - 64 = ${target}`;
    console.log(`*** ${msg} ***`);
    r.notes.push(msg);
  }
  const cps = [...new Set([...CHECKPOINTS.filter((n) => n <= target), target])].sort((a, b) => a - b);
  r.before = await memory(server);
  r.mapsBefore = mapCount(pid);
  r.addTimes = []; // ms per object-add
  r.checkpoints = [];
  for (let i = 0; i < target; i++) {
    const t0 = now();
    const res = await exec(c, 'object-add', { 'qom-type': 'memory-backend-memfd', id: `m${i}`, size: MiB });
    const dt = ms(t0);
    if (res.err) {
      const msg = `${server.name}: object-add #${i + 1} failed after ${i} objects (fds ${fdCount(pid)}/${r.fdLimit}): ${res.err}`;
      console.log(`*** ${msg} ***`);
      r.notes.push(msg);
      break;
    }
    r.addTimes.push(dt);
    const n = i + 1;
    if (cps.includes(n)) {
      const md = [];
      const ql = [];
      for (let k = 0; k < 5; k++) {
        let t = now();
        await must(c, 'query-memdev');
        md.push(ms(t));
        t = now();
        await must(c, 'qom-list', { path: '/objects' });
        ql.push(ms(t));
      }
      r.checkpoints.push({ n, memdev: median(md), qomList: median(ql) });
    }
  }
  r.created = r.addTimes.length;
  r.afterNoGc = procStatus(pid);
  r.after = await memory(server);
  r.fdFull = fdCount(pid);
  r.mapsFull = mapCount(pid);
  const t0 = now();
  for (let i = 0; i < r.created; i++) await must(c, 'object-del', { id: `m${i}` });
  r.delSecs = ms(t0) / 1000;
  r.delRate = r.created / r.delSecs;
  // Counted while this client is still connected, as at the start.
  const fdsAfter = fdTargets(pid);
  r.fdAfter = fdsAfter.size;
  r.fdsLeft = fdsAdded(r.fdsBefore, fdsAfter);
  delete r.fdsBefore;
  r.mapsAfter = mapCount(pid);
  r.afterDel = await memory(server);
  c.close();
  return r;
}

/** Segments [from, to) with their object-add rate (per second). */
function segments(addTimes) {
  const segs = [];
  const rate = (a, b) => (b - a) / (addTimes.slice(a, b).reduce((x, y) => x + y, 0) / 1000);
  if (addTimes.length >= 1) segs.push({ label: `1-${Math.min(100, addTimes.length)}`, from: 0, to: Math.min(100, addTimes.length) });
  for (let a = 0; a < addTimes.length; a += 1000) {
    const b = Math.min(a + 1000, addTimes.length);
    if (a === 0 && b <= 100) break; // same as the first-100 row
    segs.push({ label: `${a + 1}-${b}`, from: a, to: b });
  }
  return segs.map((s) => ({ ...s, rate: rate(s.from, s.to) }));
}

/** KB of VmRSS per object beyond the backends' own (shmem) pages, before -> all created. */
function rssPerObject(r) {
  return (r.after.rss - r.after.shmem - (r.before.rss - r.before.shmem)) / (r.created || NaN);
}

function printScaling(r) {
  console.log(`\n== ${r.name}: object scaling, ${r.created} x 1 MiB memfd (requested ${r.requested}) ==`);
  const rows = [['objects', 'add/s']];
  for (const s of segments(r.addTimes)) rows.push([s.label, fmt(s.rate, 0)]);
  printTable(rows);
  console.log('');
  const cp = [['at objects', 'query-memdev ms (med 5)', 'qom-list /objects ms (med 5)']];
  for (const p of r.checkpoints) cp.push([p.n, fmt(p.memdev, 3), fmt(p.qomList, 3)]);
  printTable(cp);
  console.log('');
  const n = r.created || NaN;
  const per = (a, b, k) => fmt((b[k] - a[k]) / n, 2);
  const gcd = r.after.heapKb !== undefined ? 'after a full gc' : 'no gc (not a node process)';
  printTable([
    ['memory (KB; /proc status)', 'before', 'all created, no gc', `all created, ${gcd}`, 'after delete-all', 'per object (before -> all created)'],
    ['VmRSS', r.before.rss, r.afterNoGc.rss, r.after.rss, r.afterDel.rss, per(r.before, r.after, 'rss')],
    ['RssAnon', r.before.anon, r.afterNoGc.anon, r.after.anon, r.afterDel.anon, per(r.before, r.after, 'anon')],
    ['RssFile', r.before.file, r.afterNoGc.file, r.after.file, r.afterDel.file, per(r.before, r.after, 'file')],
    ['RssShmem (backend pages)', r.before.shmem, r.afterNoGc.shmem, r.after.shmem, r.afterDel.shmem, per(r.before, r.after, 'shmem')],
    ['VmPTE (page tables; not in VmRSS)', r.before.pte, r.afterNoGc.pte, r.after.pte, r.afterDel.pte, per(r.before, r.after, 'pte')],
    ...(r.after.heapKb !== undefined ? [['JS heap in use', fmt(r.before.heapKb, 0), '', fmt(r.after.heapKb, 0), fmt(r.afterDel.heapKb, 0), per(r.before, r.after, 'heapKb')]] : []),
  ]);
  console.log(`RSS growth per object beyond the backend memory itself (VmRSS - RssShmem, ${gcd}): ${fmt(rssPerObject(r), 2)} KB (without the gc: ${fmt((r.afterNoGc.rss - r.afterNoGc.shmem - (r.before.rss - r.before.shmem)) / n, 2)} KB)`);
  console.log('');
  printTable([
    ['measure', 'value'],
    ['object-del rate (/s)', `${fmt(r.delRate, 0)} (${r.created} in ${fmt(r.delSecs, 2)} s)`],
    ['fd soft limit', String(r.fdLimit)],
    ['fds before / all created / after delete-all', `${r.fdBefore} / ${r.fdFull} / ${r.fdAfter}`],
    ['memfd backend mappings before / all created / after delete-all', `${r.mapsBefore.memfd} / ${r.mapsFull.memfd} / ${r.mapsAfter.memfd}`],
    ['all mappings before / all created / after delete-all', `${r.mapsBefore.all} / ${r.mapsFull.all} / ${r.mapsAfter.all}`],
  ]);
  for (const note of r.notes) console.log(`note: ${note}`);
}

// ---- 1. object scaling on hostmemd ----
let scaling;
{
  const h = await startHostmemd([], { inspect: true });
  try {
    scaling = await objectScaling(h, OBJECTS);
    printScaling(scaling);
  } finally {
    await h.stop();
  }
}

// ---- 2. hostmemd vs QEMU 7.2 up to QEMU_OBJECTS ----
let versus;
if (haveQemu() && QEMU_OBJECTS > 0) {
  const h = await startHostmemd([], { inspect: true });
  let ours;
  try {
    ours = await objectScaling(h, QEMU_OBJECTS);
  } finally {
    await h.stop();
  }
  const q = await startQemu();
  let theirs;
  try {
    theirs = await objectScaling(q, QEMU_OBJECTS);
  } finally {
    await q.stop();
  }
  versus = { ours, theirs };
  printScaling(ours);
  printScaling(theirs);
  console.log(`\n== hostmemd vs QEMU 7.2, ${QEMU_OBJECTS} x 1 MiB memfd (ratio = hostmemd / QEMU) ==`);
  const so = segments(ours.addTimes);
  const st = segments(theirs.addTimes);
  const rows = [['objects', 'hostmemd add/s', 'qemu add/s', 'ratio (>1: hostmemd faster)']];
  for (const s of so) {
    const t = st.find((x) => x.label === s.label);
    if (t) rows.push([s.label, fmt(s.rate, 0), fmt(t.rate, 0), fmt(s.rate / t.rate, 2)]);
  }
  const all = (r) => r.addTimes.length / (r.addTimes.reduce((x, y) => x + y, 0) / 1000);
  rows.push(['all', fmt(all(ours), 0), fmt(all(theirs), 0), fmt(all(ours) / all(theirs), 2)]);
  rows.push(['object-del all', fmt(ours.delRate, 0), fmt(theirs.delRate, 0), fmt(ours.delRate / theirs.delRate, 2)]);
  printTable(rows);
  console.log('');
  const lat = [['at objects', 'hostmemd query-memdev ms', 'qemu query-memdev ms', 'ratio (<1: hostmemd faster)', 'hostmemd qom-list ms', 'qemu qom-list ms', 'ratio']];
  for (const p of ours.checkpoints) {
    const t = theirs.checkpoints.find((x) => x.n === p.n);
    if (t) lat.push([p.n, fmt(p.memdev, 3), fmt(t.memdev, 3), fmt(p.memdev / t.memdev, 2), fmt(p.qomList, 3), fmt(t.qomList, 3), fmt(p.qomList / t.qomList, 2)]);
  }
  printTable(lat);
  console.log('');
  const n = (r) => r.created || NaN;
  printTable([
    ['per object (KB; hostmemd after a full gc)', 'hostmemd', 'qemu'],
    ['VmRSS - RssShmem', fmt(rssPerObject(ours), 2), fmt(rssPerObject(theirs), 2)],
    ['VmRSS', fmt((ours.after.rss - ours.before.rss) / n(ours), 2), fmt((theirs.after.rss - theirs.before.rss) / n(theirs), 2)],
    ['RssAnon', fmt((ours.after.anon - ours.before.anon) / n(ours), 2), fmt((theirs.after.anon - theirs.before.anon) / n(theirs), 2)],
  ]);
} else if (QEMU_OBJECTS > 0) console.log('\n*** qemu-system-x86_64 not installed: no side-by-side figures ***');

// ---- 3. client scaling on hostmemd ----
function withTimeout(p, msec) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), msec).unref())]);
}

/** Resolves with the time (ms since t0) at which `c` has received a line with OBJECT_ADDED
 *  (any transport: it watches the client's line queue). */
function watchAdded(c, t0ref) {
  return new Promise((resolve) => {
    const push = c.push;
    c.push = (line) => {
      push.call(c, line);
      if (line.includes('OBJECT_ADDED')) {
        c.push = push;
        resolve(ms(t0ref.t0));
      }
    };
  });
}

/** Connects N clients with `connect(i)` (batches of 100), then measures as described above. */
async function clientRound(sock, N, connect = () => Client.connect(sock)) {
  const clients = [];
  let failed = 0;
  const errors = new Map();
  for (let a = 0; a < N; a += 100) {
    const batch = Math.min(100, N - a);
    const res = await Promise.allSettled(
      Array.from({ length: batch }, (_, k) =>
        withTimeout(
          connect(a + k).then((c) => withTimeout(c.negotiate(), 10000).catch((e) => (c.close(), Promise.reject(e)))),
          10000,
        ),
      ),
    );
    for (const x of res) {
      if (x.status === 'fulfilled') clients.push(x.value);
      else {
        failed++;
        const k = x.reason?.code ?? x.reason?.message ?? String(x.reason);
        errors.set(k, (errors.get(k) ?? 0) + 1);
      }
    }
  }
  for (const c of clients) (c.sock ?? c.ws).on('error', () => {});
  const r = { N, ok: clients.length, failed, errors: [...errors].map(([k, v]) => `${k} x${v}`).join(', ') };
  if (clients.length) {
    const t = [];
    for (let i = 0; i < 200; i++) {
      const c = clients[Math.floor(Math.random() * clients.length)];
      const t0 = now();
      await must(c, 'query-version');
      t.push(ms(t0));
    }
    t.sort((x, y) => x - y);
    r.p50 = percentile(t, 50);
    r.p99 = percentile(t, 99);

    const extra = await client(sock);
    const ref = { t0: 0n };
    const got = [];
    const byKind = new Map();
    const watches = clients.map((c) =>
      watchAdded(c, ref).then((v) => {
        got.push(v);
        const kind = c.ws ? 'websocket' : 'unix';
        byKind.set(kind, Math.max(byKind.get(kind) ?? 0, v));
      }),
    );
    ref.t0 = now();
    const add = must(extra, 'object-add', { 'qom-type': 'memory-backend-memfd', id: 'fan', size: MiB }).then(() => ms(ref.t0));
    try {
      await withTimeout(Promise.all(watches), 15000);
    } catch {
      /* reported below */
    }
    r.addReply = await add;
    got.sort((x, y) => x - y);
    r.received = got.length;
    r.fanP50 = got.length ? percentile(got, 50) : NaN;
    r.fanAll = got.length === clients.length ? got[got.length - 1] : NaN;
    r.fanByKind = byKind;
    await must(extra, 'object-del', { id: 'fan' });
    extra.close();
  }
  for (const c of clients) c.close();
  await new Promise((res) => setTimeout(res, 200));
  return r;
}

const clientRows = [['clients', 'connected', 'failed', 'query-version p50 ms', 'p99 ms', 'object-add reply ms', 'OBJECT_ADDED received', 'fan-out p50 ms', 'fan-out all ms']];
const rowOf = (label, r) => [label, r.ok, r.failed, fmt(r.p50, 3), fmt(r.p99, 3), fmt(r.addReply, 3), `${r.received ?? 0}/${r.ok}`, fmt(r.fanP50, 3), fmt(r.fanAll, 3)];
const clientNotes = [];
const noteErrors = (label, r) => {
  if (r.errors) clientNotes.push(`${label}: connection failures: ${r.errors}`);
  if (r.received !== undefined && r.received < r.ok) clientNotes.push(`${label}: only ${r.received}/${r.ok} clients received OBJECT_ADDED within 15 s`);
};
const unixRounds = new Map();
{
  const h = await startHostmemd();
  try {
    for (const N of CLIENTS) {
      const r = await clientRound(h.sock, N);
      unixRounds.set(N, r);
      clientRows.push(rowOf(`${N} unix`, r));
      noteErrors(`N=${N}`, r);
    }
  } finally {
    await h.stop();
  }
}

let mixed;
if (MIXED > 0) {
  const port = await freePort();
  const h = await startHostmemd(['--ws', `127.0.0.1:${port}`]);
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitHealthy(url);
    const token = fs.readFileSync(path.join(path.dirname(h.sock), 'token'), 'utf8').trim();
    // Even indexes on the UNIX socket, odd ones over the WebSocket.
    mixed = await clientRound(h.sock, MIXED, (i) => (i % 2 === 0 ? Client.connect(h.sock) : WsClient.connect(url, token)));
    clientRows.push(rowOf(`${MIXED} mixed`, mixed));
    noteErrors(`mixed N=${MIXED}`, mixed);
  } finally {
    await h.stop();
  }
}

console.log('\n== hostmemd: client scaling (fan-out = time from sending object-add until the OBJECT_ADDED line arrives) ==');
printTable(clientRows);
if (mixed) {
  const k = mixed.fanByKind ?? new Map();
  console.log(`mixed run: half UNIX socket, half WebSocket (/qmp, token); fan-out to all UNIX clients ${fmt(k.get('unix'), 3)} ms, to all WebSocket clients ${fmt(k.get('websocket'), 3)} ms`);
}
for (const e of clientNotes) console.log(`note: ${e}`);

// ---- 4. acceptance (issue 7) ----
{
  const checks = [];
  const check = (ok, text) => checks.push(`${ok ? 'PASS' : 'FAIL'}  ${text}`);
  const segs = segments(scaling.addTimes);
  const first = segs[0];
  const last = segs[segs.length - 1];
  const at = (n) => scaling.checkpoints.find((p) => p.n === n);
  const largest = scaling.checkpoints[scaling.checkpoints.length - 1];
  const n = scaling.created;
  if (n < 10000) check(false, `10,000 objects were not reached (${n} created): the checks below are at ${n}`);
  check(last.rate >= 0.8 * first.rate, `object-add rate at ${last.label} objects ${fmt(last.rate, 0)}/s >= 80% of the rate at ${first.label} (${fmt(first.rate, 0)}/s): ${fmt((100 * last.rate) / first.rate, 0)}%`);
  const md = at(10000) ?? largest;
  check(md.memdev <= 50, `query-memdev at ${md.n} objects ${fmt(md.memdev, 1)} ms <= 50 ms`);
  const kb = rssPerObject(scaling);
  check(kb <= 4, `RSS growth per object beyond the backend memory ${fmt(kb, 2)} KB <= 4 KB (VmRSS - RssShmem, after a full gc, ${n} objects)`);
  check(
    scaling.fdAfter === scaling.fdBefore && scaling.mapsAfter.memfd === scaling.mapsBefore.memfd,
    `after deleting all: fds ${scaling.fdAfter} (at start ${scaling.fdBefore}, after one object-add/del: the journal's log stays open), backend mappings ${scaling.mapsAfter.memfd} (at start ${scaling.mapsBefore.memfd})${scaling.fdsLeft.length ? `; fds not there at start: ${scaling.fdsLeft.join(', ')}` : ''}`,
  );
  const r1000 = unixRounds.get(1000);
  for (const [label, r] of [['1,000 UNIX-socket clients', r1000], [`${MIXED} mixed clients`, mixed]]) {
    if (!r) continue;
    check(r.failed === 0 && r.p99 <= 20, `${label}: all connected (${r.ok}/${r.N}), query-version p99 ${fmt(r.p99, 2)} ms <= 20 ms`);
    check(r.received === r.ok && r.fanAll <= 100, `${label}: OBJECT_ADDED reached all ${r.ok} in ${fmt(r.fanAll, 1)} ms <= 100 ms`);
  }
  console.log('\n== acceptance (issue 7) ==');
  for (const c of checks) console.log(c);
  console.log('(the slow-client cut-off, caps and EMFILE are covered by tests, not timed here)');
}

// ---- 5. --json: figures and the scale curves for bench/run.mjs's chart ----
{
  /** object-add rate per window of objects: the curve's points (x: objects at the window's end). */
  const rateCurve = (r) => {
    const n = r.addTimes.length;
    const step = Math.max(50, Math.ceil(n / 20));
    const pts = [];
    for (let a = 0; a < n; a += step) {
      const b = Math.min(a + step, n);
      pts.push([b, (b - a) / (r.addTimes.slice(a, b).reduce((x, y) => x + y, 0) / 1000)]);
    }
    return pts;
  };
  const curve = (r) => r && { addRate: rateCurve(r), queryMemdevMs: r.checkpoints.map((p) => [p.n, p.memdev]), qomListMs: r.checkpoints.map((p) => [p.n, p.qomList]) };
  const largest = scaling.checkpoints[scaling.checkpoints.length - 1];
  const common = versus && versus.ours.checkpoints.filter((p) => versus.theirs.checkpoints.some((t) => t.n === p.n)).pop();
  const theirsAt = common && versus.theirs.checkpoints.find((t) => t.n === common.n);
  const allRate = (r) => r.addTimes.length / (r.addTimes.reduce((x, y) => x + y, 0) / 1000);
  const results = [
    { name: `object-add rate, ${scaling.created} x 1 MiB memfd, one client`, unit: '/s', hostmemd: allRate(scaling), better: 'higher' },
    { name: `query-memdev at ${largest.n} objects`, unit: 'ms', hostmemd: largest.memdev, better: 'lower' },
    { name: `qom-list /objects at ${largest.n} objects`, unit: 'ms', hostmemd: largest.qomList, better: 'lower' },
    { name: 'RSS beyond backend memory per object', unit: 'KB', hostmemd: rssPerObject(scaling), better: 'lower' },
  ];
  if (versus) {
    results.push({ name: `object-add rate, ${versus.ours.created} objects, vs QEMU`, unit: '/s', hostmemd: allRate(versus.ours), qemu: allRate(versus.theirs), better: 'higher' });
    if (common) results.push({ name: `query-memdev at ${common.n} objects, vs QEMU`, unit: 'ms', hostmemd: common.memdev, qemu: theirsAt.memdev, better: 'lower' });
    if (common) results.push({ name: `qom-list /objects at ${common.n} objects, vs QEMU`, unit: 'ms', hostmemd: common.qomList, qemu: theirsAt.qomList, better: 'lower' });
  }
  const r1 = unixRounds.get(Math.max(...unixRounds.keys()));
  if (r1) results.push({ name: `query-version p99 with ${r1.N} clients`, unit: 'ms', hostmemd: r1.p99, better: 'lower' });
  writeJson(flags.json, 'scale', results, { curves: { hostmemd: curve(scaling), qemu: curve(versus?.theirs) } });
}
