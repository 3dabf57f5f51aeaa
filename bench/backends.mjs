// bench/backends: object-add+object-del cycle of a 64 MiB memfd, 1 GiB preallocation with
// prealloc-threads=2 (memfd and guest-memfd), side by side with QEMU 7.2, against the kernel
// floor measured in the facts doc; and QMP latency on another connection during a 4 GiB
// preallocation. Run: npm run bench:backends
import { existsSync } from 'node:fs';
import { benchFlags, negotiatedClient, request, startHostmemd, startQemu, haveQemu, percentile, fmt, printTable, writeJson } from './lib.mjs';

const flags = benchFlags();

const CYCLES = Number(process.env.CYCLES ?? (flags.quick ? 20 : 200));
/** GiB preallocated while query-version latency is measured. */
const LAT_GIB = Number(process.env.LAT_GIB ?? (flags.quick ? 1 : 4));
const GiB = 1 << 30;
// Kernel floor for MADV_POPULATE_WRITE measured on this machine kind (guest-memfd-facts §0, §7).
const FLOOR_1T = 2.5;
const FLOOR_2T = [3.0, 3.9];

const client = negotiatedClient;

/** A command's result; a QMP error ends the benchmark. */
async function exec(c, cmd, args) {
  const r = await request(c, cmd, args);
  if ('err' in r) throw new Error(`${cmd}: ${r.err}`);
  return r.ret;
}

async function cycle(sock, qomType = 'memory-backend-memfd') {
  const c = await client(sock);
  const args = { 'qom-type': qomType, id: 'cyc', size: 64 << 20 };
  for (let i = 0; i < 20; i++) {
    await exec(c, 'object-add', args);
    await exec(c, 'object-del', { id: 'cyc' });
  }
  const s = process.hrtime.bigint();
  for (let i = 0; i < CYCLES; i++) {
    await exec(c, 'object-add', args);
    await exec(c, 'object-del', { id: 'cyc' });
  }
  c.close();
  return Number(process.hrtime.bigint() - s) / 1e6 / CYCLES;
}

async function prealloc(sock, qomType, size = GiB, threads = 2) {
  const c = await client(sock);
  const best = [];
  for (let i = 0; i < 3; i++) {
    const s = process.hrtime.bigint();
    await exec(c, 'object-add', { 'qom-type': qomType, id: 'pre', size, prealloc: true, 'prealloc-threads': threads });
    best.push(Number(process.hrtime.bigint() - s) / 1e9);
    await exec(c, 'object-del', { id: 'pre' });
  }
  c.close();
  const secs = Math.min(...best);
  return { secs, gibps: size / GiB / secs };
}

/** query-version round trips on a second connection while the first preallocates 4 GiB. */
async function latencyDuringPrealloc(sock, sock2) {
  const a = await client(sock);
  const b = await client(sock2);
  const t = [];
  let done = false;
  const add = exec(a, 'object-add', { 'qom-type': 'memory-backend-memfd', id: 'big', size: LAT_GIB * GiB, prealloc: true, 'prealloc-threads': 2 }).then(() => (done = true));
  while (!done) {
    const s = process.hrtime.bigint();
    b.send('{"execute":"query-version"}');
    await b.take(1);
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
    await new Promise((r) => setTimeout(r, 1));
  }
  await add;
  await exec(a, 'object-del', { id: 'big' });
  a.close();
  b.close();
  t.sort((x, y) => x - y);
  return { n: t.length, p50: percentile(t, 50), p99: percentile(t, 99), max: t[t.length - 1] };
}

async function measure(server, withGmem) {
  const r = { cycle: await cycle(server.sock), memfd: await prealloc(server.sock, 'memory-backend-memfd') };
  if (withGmem) {
    r.gmemCycle = await cycle(server.sock, 'memory-backend-guest-memfd');
    r.gmem = await prealloc(server.sock, 'memory-backend-guest-memfd');
  }
  // QEMU serves one client per monitor: the second connection uses its second monitor.
  r.lat = await latencyDuringPrealloc(server.sock, server.socks?.[1] ?? server.sock);
  return r;
}

const h = await startHostmemd();
let ours;
try {
  // guest-memfd needs /dev/kvm (the daemon's accelerator); without it those rows stay empty.
  ours = await measure(h, existsSync('/dev/kvm'));
  console.log('hostmemd:', JSON.stringify(ours));
} finally {
  await h.stop();
}
let theirs;
if (haveQemu()) {
  const q = await startQemu([], 2);
  try {
    theirs = await measure(q, false);
  } finally {
    await q.stop();
  }
} else console.log('*** qemu-system-x86_64 not installed: no side-by-side figures ***');

const rows = [['measure', 'hostmemd', 'qemu-7.2', 'ratio', 'note']];
const ratio = (a, b) => (b ? fmt(a / b, 2) : '-');
rows.push(['memfd 64 MiB add+del cycle (ms)', fmt(ours.cycle, 3), theirs ? fmt(theirs.cycle, 3) : '-', ratio(ours.cycle, theirs?.cycle), 'goal: ratio <= 1']);
rows.push(['guest-memfd 64 MiB add+del cycle (ms)', ours.gmem ? fmt(ours.gmemCycle, 3) : 'no /dev/kvm', 'n/a', '', 'QEMU 7.2 has no guest-memfd backend']);
rows.push(['memfd 1 GiB prealloc, 2 threads (s)', fmt(ours.memfd.secs, 3), theirs ? fmt(theirs.memfd.secs, 3) : '-', ratio(ours.memfd.secs, theirs?.memfd.secs), 'goal: ratio <= 1']);
rows.push(['memfd 1 GiB prealloc (GiB/s)', fmt(ours.memfd.gibps, 2), theirs ? fmt(theirs.memfd.gibps, 2) : '-', '', `floor ${FLOOR_2T[0]}-${FLOOR_2T[1]} GiB/s (2 threads), ${FLOOR_1T} (1); ${fmt((100 * ours.memfd.gibps) / FLOOR_2T[0], 0)}% of ${FLOOR_2T[0]}`]);
if (ours.gmem) rows.push(['guest-memfd 1 GiB prealloc, 2 threads (GiB/s)', fmt(ours.gmem.gibps, 2), 'n/a', '', `${fmt((100 * ours.gmem.gibps) / FLOOR_2T[0], 0)}% of ${FLOOR_2T[0]}`]);
rows.push([`query-version during ${LAT_GIB} GiB prealloc p50 (ms)`, fmt(ours.lat.p50, 2), theirs ? fmt(theirs.lat.p50, 2) : '-', '', `${ours.lat.n} samples (qemu: ${theirs?.lat.n ?? '-'})`]);
rows.push([`query-version during ${LAT_GIB} GiB prealloc p99 (ms)`, fmt(ours.lat.p99, 2), theirs ? fmt(theirs.lat.p99, 2) : '-', '', 'goal: p99 < 20 ms']);
rows.push([`query-version during ${LAT_GIB} GiB prealloc max (ms)`, fmt(ours.lat.max, 2), theirs ? fmt(theirs.lat.max, 2) : '-', '', '']);
printTable(rows);
writeJson(flags.json, 'backends', [
  { name: 'memfd 64 MiB object-add+object-del cycle', unit: 'ms', hostmemd: ours.cycle, qemu: theirs?.cycle, better: 'lower' },
  { name: 'guest-memfd 64 MiB object-add+object-del cycle', unit: 'ms', hostmemd: ours.gmemCycle, better: 'lower' },
  { name: 'memfd 1 GiB prealloc, 2 threads (best of 3)', unit: 's', hostmemd: ours.memfd.secs, qemu: theirs?.memfd.secs, better: 'lower' },
  { name: `query-version p99 during ${LAT_GIB} GiB prealloc`, unit: 'ms', hostmemd: ours.lat.p99, qemu: theirs?.lat.p99, better: 'lower' },
]);
