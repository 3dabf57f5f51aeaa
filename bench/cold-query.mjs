// bench/cold-query: the first query-memdev and qom-list /objects right after adding N memfd
// backends (a management stack queries right after it changed something), at a Python client
// (bench/cold_query.py: a raw UNIX-socket client, the standard library only), hostmemd side
// by side with QEMU 7.2. Reported per server: time until the reply line is read, the same with
// json.loads, and for hostmemd its main thread's CPU time over the call (/proc/PID/schedstat:
// "server-side", not inflated by waiting for a CPU on a loaded machine).
// Goals (issue 16): first query-memdev after 10,000 adds <= 20 ms server-side, <= 50 ms at a
// Python client; qom-list /objects likewise.
// The Python client's floor: the same client run against a plain node server that costs
// nothing (bench/lib.mjs startEchoServer: every object-add answered at once, query-memdev and
// qom-list with the very bytes hostmemd sent for them, taken from the daemon before it
// stopped), each client a fresh python3 process as for the daemons. What it measures is the
// client's own reading and json.loads of a reply of that size, from a server of no cost.
// QEMU 7.2 is measured at a smaller size: its object-add slows as objects accumulate (~55 ms
// each at 3,000 on a 2-core machine, growing linearly, so 10,000 take it a quarter of an hour).
// Its adding also stops at a time bound; hostmemd is then measured again at the count QEMU
// reached, for a side-by-side row. A failure on either side is reported, never a traceback.
// Run: npm run build && node bench/cold-query.mjs [--quick] [--json FILE] [--cpu-prof DIR]
//   --cpu-prof DIR  the daemon's run at OBJECTS under node --cpu-prof (profile written to DIR;
//                   CPU_PROF_INTERVAL µs, default 100); prints the functions with the most
//                   samples during each first call
// Env: OBJECTS (default 10,000; --quick 1,000), QEMU_OBJECTS (default: the smaller of OBJECTS
//      and 2,000; 0 skips QEMU), QEMU_ADD_SECONDS (default 120: QEMU stops being given objects
//      after the batch that passes it).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, benchFlags, haveQemu, negotiatedClient, startEchoServer, startHostmemd, startQemu, fmt, printTable, writeJson } from './lib.mjs';

const flags = benchFlags();
const N = Number(process.env.OBJECTS ?? (flags.quick ? 1000 : 10000));
const QN = Number(process.env.QEMU_OBJECTS ?? Math.min(N, 2000));
const QEMU_ADD_SECONDS = Number(process.env.QEMU_ADD_SECONDS ?? 120);
const profAt = flags.rest.indexOf('--cpu-prof');
const cpuProfDir = profAt >= 0 ? path.resolve(flags.rest[profAt + 1] ?? 'cpu-prof') : undefined;
const CALLS = ['query-memdev', 'qom-list'];
const WHEN = ['first', 'second', 'after-add'];

/** cold_query.py's result: per call its figures, or { error, added }. */
function measure(server, n, { withCpu = false, addSeconds } = {}) {
  const args = [path.join(ROOT, 'bench', 'cold_query.py'), server.sock, String(n), ...(withCpu ? ['--pid', String(server.pid), '--state-dir', path.dirname(server.sock)] : []), ...(addSeconds ? ['--add-seconds', String(addSeconds)] : [])];
  // A backstop only: cold_query.py bounds itself when given --add-seconds.
  const r = spawnSync('python3', args, { encoding: 'utf8', maxBuffer: 1 << 26, timeout: ((addSeconds ?? 1800) + 300) * 1000 });
  try {
    return JSON.parse(r.stdout);
  } catch {
    const why = r.error ? r.error.message : `exited with ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').pop()}`;
    return { error: `cold_query.py ${why}`, added: 0 };
  }
}

/** The client's run on a fresh daemon; with `replies`, the reply lines of query-memdev and
 *  qom-list /objects as the daemon sends them after the run are put there. */
async function onHostmemd(n, node = [], replies) {
  const h = await startHostmemd([], { node });
  try {
    const r = measure(h, n, { withCpu: true });
    if (replies && !r.error) {
      const c = await negotiatedClient(h.sock);
      for (const [name, req] of [['query-memdev', { execute: 'query-memdev' }], ['qom-list', { execute: 'qom-list', arguments: { path: '/objects' } }]]) {
        c.send(JSON.stringify(req));
        for (;;) {
          const [line] = await c.take(1);
          if (line.startsWith('{"return"')) {
            replies[name] = line;
            break;
          }
          if (line.startsWith('{"error"')) throw new Error(`${name}: ${line}`);
        }
      }
      c.close();
    }
    return r;
  } finally {
    await h.stop();
  }
}

/** The client's run against a server of no cost that answers with `replies`. */
async function onFloor(n, replies) {
  const e = await startEchoServer({ replies });
  try {
    return measure(e, n);
  } finally {
    await e.stop();
  }
}

let failed = false;
const replies = {};
const ours = await onHostmemd(N, cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir, '--cpu-prof-interval', String(process.env.CPU_PROF_INTERVAL ?? 100)] : [], replies);
console.log(`hostmemd, ${N} objects: ${JSON.stringify(ours)}`);
if (ours.error) {
  console.log(`*** hostmemd: ${ours.error} (after ${ours.added} of ${N} objects) ***`);
  failed = true;
}
const floor = ours.error ? undefined : await onFloor(N, replies);
if (floor) console.log(`floor (a server of no cost, hostmemd's reply bytes), ${N} objects: ${JSON.stringify(floor)}`);
if (floor?.error) console.log(`*** floor server: ${floor.error} ***`);
if (cpuProfDir && !ours.error) printProfile(cpuProfDir, ours);

let theirs;
let oursAtQ;
if (QN > 0 && haveQemu()) {
  const q = await startQemu();
  try {
    theirs = measure(q, QN, { addSeconds: QEMU_ADD_SECONDS });
  } finally {
    await q.stop();
  }
  console.log(`QEMU 7.2: ${JSON.stringify(theirs)}`);
  if (theirs.error) console.log(`*** QEMU 7.2: ${theirs.error} (after ${theirs.added} of ${QN} objects): no QEMU figures ***`);
  else {
    const why = theirs.bounded ? `adding stopped at the ${QEMU_ADD_SECONDS} s bound (QEMU_ADD_SECONDS)` : `QEMU_OBJECTS=${QN}`;
    console.log(`QEMU 7.2 measured at ${theirs.added} objects (${why}; added in ${fmt(theirs.add_seconds, 1)} s): its object-add slows as objects accumulate`);
    if (theirs.added !== N) {
      oursAtQ = await onHostmemd(theirs.added);
      if (oursAtQ.error) console.log(`*** hostmemd at ${theirs.added}: ${oursAtQ.error} ***`);
    } else oursAtQ = ours;
  }
} else if (QN > 0) console.log('*** qemu-system-x86_64 not installed: no QEMU figures ***');

const ok = (r) => r && !r.error;
const Q = ok(theirs) ? theirs.added : undefined;
const head = ['call', `hostmemd read ms (${N})`, 'python ms', 'of which json.loads', 'server CPU ms', 'floor python ms'];
if (Q !== undefined) head.push(`hostmemd python ms (${Q})`, `qemu read ms (${Q})`, 'python ms');
const rows = [head];
for (const cmd of CALLS) {
  for (const when of WHEN) {
    const o = ok(ours) ? ours[cmd][when] : undefined;
    const fl = ok(floor) ? floor[cmd][when] : undefined;
    const row = [`${cmd} ${when}`, o ? fmt(o.read_ms, 1) : '-', o ? fmt(o.python_ms, 1) : '-', o ? fmt(o.parse_ms, 1) : '-', o ? fmt(o.server_cpu_ms, 1) : '-', fl ? fmt(fl.python_ms, 1) : '-'];
    if (Q !== undefined) {
      const a = ok(oursAtQ) ? oursAtQ[cmd][when] : undefined;
      const t = theirs[cmd][when];
      row.push(a ? fmt(a.python_ms, 1) : '-', fmt(t.read_ms, 1), fmt(t.python_ms, 1));
    }
    rows.push(row);
  }
}
printTable(rows);
console.log('goal: first call <= 20 ms server-side, <= 50 ms at the Python client (10,000 objects)');
console.log("(python ms = reading the reply line + Python's own json.loads of it; floor python ms = the same client, fresh, against a server of no cost sending hostmemd's reply bytes)");

const res = [];
for (const cmd of CALLS) {
  const label = cmd === 'qom-list' ? 'qom-list /objects' : cmd;
  if (ok(ours)) {
    res.push({ name: `first ${label} after ${N} adds, Python client (floor: the same client against a server of no cost)`, unit: 'ms', hostmemd: ours[cmd].first.python_ms, qemu: Q === N ? theirs[cmd].first.python_ms : undefined, floor: ok(floor) ? floor[cmd].first.python_ms : undefined, better: 'lower' });
    res.push({ name: `first ${label} after ${N} adds, server CPU`, unit: 'ms', hostmemd: ours[cmd].first.server_cpu_ms, better: 'lower' });
  }
  if (Q !== undefined && Q !== N && ok(oursAtQ)) {
    res.push({ name: `first ${label} after ${Q} adds (QEMU's size), Python client`, unit: 'ms', hostmemd: oursAtQ[cmd].first.python_ms, qemu: theirs[cmd].first.python_ms, better: 'lower' });
  }
}
writeJson(flags.json, 'cold-query', res);
if (failed) process.exitCode = 1;

/** The functions with the most samples in the daemon's profile during each first call (the
 *  call's window from cold_query.py: CLOCK_MONOTONIC, V8's profile clock too). */
function printProfile(dir, result) {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f));
  const file = files.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  if (!file) return console.log(`*** no .cpuprofile in ${dir} ***`);
  const p = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  let t = p.startTime;
  const at = p.timeDeltas.map((d) => (t += d));
  console.log(`\ncpu profile: ${file}`);
  for (const cmd of CALLS) {
    const { t0, t1 } = result[cmd].first;
    const self = new Map();
    let total = 0;
    let count = 0;
    for (let i = 0; i < p.samples.length; i++) {
      if (at[i] < t0 * 1e6 || at[i] > t1 * 1e6) continue;
      const f = byId.get(p.samples[i]).callFrame;
      if (f.functionName === '(idle)') continue;
      const ms = (p.timeDeltas[i + 1] ?? 0) / 1000;
      const key = `${f.functionName || '(anonymous)'} ${f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : ''}`;
      self.set(key, (self.get(key) ?? 0) + ms);
      total += ms;
      count++;
    }
    // Few samples on a loaded machine: the sampling thread waits for a CPU too.
    console.log(`first ${cmd}: ${count} samples, ${fmt(total, 1)} ms on the main thread (not idle) between request and reply read; most self time:`);
    for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`  ${fmt(v, 1).padStart(6)} ms  ${k}`);
  }
}
