// bench/cold-query: the first query-memdev and qom-list /objects right after adding N memfd
// backends (a management stack queries right after it changed something), at a Python client
// (bench/cold_query.py: a raw UNIX-socket client, the standard library only), hostmemd side
// by side with QEMU 7.2. Reported per server: time until the reply line is read, the same with
// json.loads, and for hostmemd its main thread's CPU time over the call (/proc/PID/schedstat:
// "server-side", not inflated by waiting for a CPU on a loaded machine).
// Goals (issue 16): first query-memdev after 10,000 adds <= 20 ms server-side, <= 50 ms at a
// Python client; qom-list /objects likewise.
// Run: npm run build && node bench/cold-query.mjs [--quick] [--json FILE]
// Env: OBJECTS (default 10,000; --quick 1,000), QEMU_OBJECTS (default: OBJECTS; 0 skips QEMU).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT, benchFlags, haveQemu, startHostmemd, startQemu, fmt, printTable, writeJson } from './lib.mjs';

const flags = benchFlags();
const N = Number(process.env.OBJECTS ?? (flags.quick ? 1000 : 10000));
const QN = Number(process.env.QEMU_OBJECTS ?? N);

function measure(server, n, withCpu) {
  const r = spawnSync('python3', [path.join(ROOT, 'bench', 'cold_query.py'), server.sock, String(n), ...(withCpu ? [String(server.pid)] : [])], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`cold_query.py: ${r.stderr || r.error}`);
  return JSON.parse(r.stdout);
}

const h = await startHostmemd();
let ours;
try {
  ours = measure(h, N, true);
  console.log(`hostmemd, ${N} objects: ${JSON.stringify(ours)}`);
} finally {
  await h.stop();
}
let theirs;
if (haveQemu() && QN > 0) {
  const q = await startQemu();
  try {
    theirs = measure(q, QN, false);
  } finally {
    await q.stop();
  }
} else if (QN > 0) console.log('*** qemu-system-x86_64 not installed: no QEMU figures ***');

const rows = [['call', `hostmemd read ms (${N})`, 'python ms', 'server CPU ms', `qemu read ms (${QN})`, 'python ms']];
for (const cmd of ['query-memdev', 'qom-list']) {
  for (const when of ['first', 'second', 'after-add']) {
    const o = ours[cmd][when];
    const t = theirs?.[cmd][when];
    rows.push([`${cmd} ${when}`, fmt(o.read_ms, 1), fmt(o.python_ms, 1), fmt(o.server_cpu_ms, 1), t ? fmt(t.read_ms, 1) : '-', t ? fmt(t.python_ms, 1) : '-']);
  }
}
printTable(rows);
console.log('goal: first call <= 20 ms server-side, <= 50 ms at the Python client (10,000 objects)');
const res = [];
for (const cmd of ['query-memdev', 'qom-list']) {
  const label = cmd === 'qom-list' ? 'qom-list /objects' : cmd;
  res.push({ name: `first ${label} after ${N} adds, Python client`, unit: 'ms', hostmemd: ours[cmd].first.python_ms, qemu: QN === N ? theirs?.[cmd].first.python_ms : undefined, better: 'lower' });
  res.push({ name: `first ${label} after ${N} adds, server CPU`, unit: 'ms', hostmemd: ours[cmd].first.server_cpu_ms, better: 'lower' });
}
writeJson(flags.json, 'cold-query', res);
