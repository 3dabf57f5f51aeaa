// bench/scale: how hostmemd scales with the number of objects and the number of clients.
//
// 1. Object scaling (hostmemd): OBJECTS memfd backends of 1 MiB are created one at a time on
//    one connection. Reported: object-add rate per second for the first 100 objects and for each
//    1,000-object segment; query-memdev and qom-list /objects latency (median of 5) at 100, 1,000,
//    5,000 and 10,000 objects (those <= OBJECTS, plus the final count); the daemon's VmRSS and
//    RssAnon per object (from /proc/<pid>/status, before creation vs. all created; nothing is
//    subtracted; memfd pages are never touched so RssAnon is the daemon's own bookkeeping); the
//    object-del rate for deleting them all; the daemon's fd count (/proc/<pid>/fd) before creation
//    and after deletion. Each memfd holds one fd, so if OBJECTS would exceed the daemon's soft
//    "Max open files" limit (/proc/<pid>/limits), creation stops at limit - 64 objects; an
//    object-add error (GenericError is the expected clean failure) also stops creation and is
//    reported.
// 2. The same up to QEMU_OBJECTS against QEMU 7.2 (qemu-system-x86_64 -machine none), on a fresh
//    hostmemd and a QEMU run one after the other, with ratios hostmemd/QEMU for add rate and
//    query-memdev latency at the common checkpoints. Skipped when QEMU is not installed.
// 3. Client scaling (hostmemd): for each N in CLIENTS, N negotiated clients are connected (in
//    batches of 100; failures are counted, not raised); then query-version round trips p50/p99
//    from 200 sequential requests, each on a random client; and event fan-out: one extra client
//    does object-add of a 1 MiB memfd and the time from sending it until all N clients have
//    received the OBJECT_ADDED event line is measured (then object-del). Clients are closed
//    between rounds.
//
// Run: node bench/scale.mjs
// Env: OBJECTS (default 10000), QEMU_OBJECTS (default 2000), CLIENTS (default "1,10,100,1000").
import * as fs from 'node:fs';
import { Client, negotiatedClient, request, startHostmemd, startQemu, haveQemu, percentile, fmt, printTable } from './lib.mjs';

const OBJECTS = Number(process.env.OBJECTS ?? 10000);
const QEMU_OBJECTS = Number(process.env.QEMU_OBJECTS ?? 2000);
const CLIENTS = String(process.env.CLIENTS ?? '1,10,100,1000')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => n > 0);
const MiB = 1 << 20;
const CHECKPOINTS = [100, 1000, 5000, 10000];

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
  return { rss: kb('VmRSS'), anon: kb('RssAnon') };
}
const fdCount = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;
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
  r.fdBefore = fdCount(pid);
  let target = count;
  if (count > r.fdLimit - 64) {
    target = r.fdLimit - 64;
    const msg = `${server.name}: ${count} objects would exceed the fd soft limit ${r.fdLimit} (one fd per memfd); stopping at limit - 64 = ${target}`;
    console.log(`*** ${msg} ***`);
    r.notes.push(msg);
  }
  const cps = [...new Set([...CHECKPOINTS.filter((n) => n <= target), target])].sort((a, b) => a - b);
  r.before = procStatus(pid);
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
  r.after = procStatus(pid);
  r.fdFull = fdCount(pid);
  const t0 = now();
  for (let i = 0; i < r.created; i++) await must(c, 'object-del', { id: `m${i}` });
  r.delSecs = ms(t0) / 1000;
  r.delRate = r.created / r.delSecs;
  c.close();
  await new Promise((res) => setTimeout(res, 100));
  r.fdAfter = fdCount(pid);
  r.afterDel = procStatus(pid);
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
  printTable([
    ['measure', 'value'],
    ['VmRSS before / all created (KB)', `${r.before.rss} / ${r.after.rss}`],
    ['VmRSS per object (KB)', fmt((r.after.rss - r.before.rss) / n, 2)],
    ['RssAnon before / all created (KB)', `${r.before.anon} / ${r.after.anon}`],
    ['RssAnon per object (KB)', fmt((r.after.anon - r.before.anon) / n, 2)],
    ['VmRSS / RssAnon after delete-all (KB)', `${r.afterDel.rss} / ${r.afterDel.anon}`],
    ['object-del rate (/s)', `${fmt(r.delRate, 0)} (${r.created} in ${fmt(r.delSecs, 2)} s)`],
    ['fd soft limit', String(r.fdLimit)],
    ['fds before / all created / after delete-all', `${r.fdBefore} / ${r.fdFull} / ${r.fdAfter}`],
  ]);
  for (const note of r.notes) console.log(`note: ${note}`);
}

// ---- 1. object scaling on hostmemd ----
{
  const h = await startHostmemd();
  try {
    printScaling(await objectScaling(h, OBJECTS));
  } finally {
    await h.stop();
  }
}

// ---- 2. hostmemd vs QEMU 7.2 up to QEMU_OBJECTS ----
if (haveQemu()) {
  const h = await startHostmemd();
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
    ['per object (KB)', 'hostmemd', 'qemu'],
    ['VmRSS', fmt((ours.after.rss - ours.before.rss) / n(ours), 2), fmt((theirs.after.rss - theirs.before.rss) / n(theirs), 2)],
    ['RssAnon', fmt((ours.after.anon - ours.before.anon) / n(ours), 2), fmt((theirs.after.anon - theirs.before.anon) / n(theirs), 2)],
  ]);
} else console.log('\n*** qemu-system-x86_64 not installed: no side-by-side figures ***');

// ---- 3. client scaling on hostmemd ----
function withTimeout(p, msec) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), msec).unref())]);
}

/** Resolves with the time (ms since t0) at which a line containing OBJECT_ADDED is buffered. */
function watchAdded(c, t0ref) {
  return new Promise((resolve) => {
    const seen = () => c.lines.some((l) => l.includes('OBJECT_ADDED'));
    const onData = () => {
      // Client's own 'data' listener ran first and has split the lines into c.lines.
      if (seen()) {
        c.sock.off('data', onData);
        resolve(ms(t0ref.t0));
      }
    };
    c.sock.on('data', onData);
  });
}

async function clientRound(sock, N) {
  const clients = [];
  let failed = 0;
  const errors = new Map();
  for (let a = 0; a < N; a += 100) {
    const batch = Math.min(100, N - a);
    const res = await Promise.allSettled(
      Array.from({ length: batch }, () =>
        withTimeout(
          Client.connect(sock).then((c) => withTimeout(c.negotiate(), 10000).catch((e) => (c.close(), Promise.reject(e)))),
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
  for (const c of clients) c.sock.on('error', () => {});
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
    const watches = clients.map((c) => watchAdded(c, ref));
    ref.t0 = now();
    const add = must(extra, 'object-add', { 'qom-type': 'memory-backend-memfd', id: 'fan', size: MiB }).then(() => ms(ref.t0));
    const got = [];
    const all = Promise.all(watches.map((w) => w.then((v) => got.push(v))));
    try {
      await withTimeout(all, 15000);
    } catch {
      /* reported below */
    }
    r.addReply = await add;
    got.sort((x, y) => x - y);
    r.received = got.length;
    r.fanP50 = got.length ? percentile(got, 50) : NaN;
    r.fanAll = got.length === clients.length ? got[got.length - 1] : NaN;
    await must(extra, 'object-del', { id: 'fan' });
    extra.close();
  }
  for (const c of clients) c.close();
  await new Promise((res) => setTimeout(res, 200));
  return r;
}

{
  const h = await startHostmemd();
  const rows = [['clients', 'connected', 'failed', 'query-version p50 ms', 'p99 ms', 'object-add reply ms', 'OBJECT_ADDED received', 'fan-out p50 ms', 'fan-out all ms']];
  const errs = [];
  try {
    for (const N of CLIENTS) {
      const r = await clientRound(h.sock, N);
      rows.push([N, r.ok, r.failed, fmt(r.p50, 3), fmt(r.p99, 3), fmt(r.addReply, 3), `${r.received ?? 0}/${r.ok}`, fmt(r.fanP50, 3), fmt(r.fanAll, 3)]);
      if (r.errors) errs.push(`N=${N}: connection failures: ${r.errors}`);
      if (r.received !== undefined && r.received < r.ok) errs.push(`N=${N}: only ${r.received}/${r.ok} clients received OBJECT_ADDED within 15 s`);
    }
  } finally {
    await h.stop();
  }
  console.log('\n== hostmemd: client scaling (fan-out = time from sending object-add until the OBJECT_ADDED line arrives) ==');
  printTable(rows);
  for (const e of errs) console.log(`note: ${e}`);
}
