// bench/prealloc: object-add of a memfd backend with prealloc=on, prealloc-threads=THREADS
// (default 1 GiB, 2 threads) on hostmemd and on QEMU 7.2 (both over QMP), next to the kernel
// floor: bench/floor/populate.c (memfd_create + ftruncate + mmap + one MADV_POPULATE_WRITE per
// thread), compiled here with gcc. The three are interleaved: ROUNDS runs of the comparison, the
// order rotating each round, each system doing one warm-up cycle and CYCLES timed cycles per
// round (object-add timed; object-del, munmap and close not), so load from other processes
// falls on all three alike. Reported: per round the median of its cycles, overall the median
// of the round medians; ratios hostmemd/QEMU and floor rate / hostmemd rate.
// Run: npm run build && node bench/prealloc.mjs [--quick] [--json FILE] [--other CHECKOUT]
// --other: also an earlier build (another worktree, built), interleaved the same way (A/B).
// Env: SIZE (bytes, default 1 GiB), THREADS (2), ROUNDS (3), CYCLES (3). --quick: 256 MiB,
// one round of one cycle.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { benchFlags, buildFloor, haveQemu, median, negotiatedClient, request, startHostmemd, startQemu, fmt, printTable, writeJson } from './lib.mjs';

const flags = benchFlags();
const quick = flags.quick;
const SIZE = Number(process.env.SIZE ?? (quick ? 256 << 20 : 1 << 30));
const THREADS = Number(process.env.THREADS ?? 2);
const ROUNDS = Number(process.env.ROUNDS ?? (quick ? 1 : 3));
const CYCLES = Number(process.env.CYCLES ?? (quick ? 1 : 3));
const GiB = 1 << 30;

async function exec(c, cmd, args) {
  const r = await request(c, cmd, args);
  if ('err' in r) throw new Error(`${cmd}: ${r.err}`);
  return r.ret;
}

/** One warm-up and CYCLES timed object-adds (seconds each) on a QMP server. */
async function qmpCycles(c) {
  const args = { 'qom-type': 'memory-backend-memfd', id: 'pre', size: SIZE, prealloc: true, 'prealloc-threads': THREADS };
  const t = [];
  for (let i = 0; i <= CYCLES; i++) {
    const s = process.hrtime.bigint();
    await exec(c, 'object-add', args);
    const secs = Number(process.hrtime.bigint() - s) / 1e9;
    await exec(c, 'object-del', { id: 'pre' });
    if (i > 0) t.push(secs);
  }
  return t;
}

/** The same with the C program: one process, one warm-up and CYCLES timed cycles. */
function floorCycles(bin) {
  const r = spawnSync(bin, [String(SIZE), String(THREADS), String(CYCLES + 1)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`populate failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').slice(1).map(Number);
}

const otherAt = flags.rest.indexOf('--other');
const other = otherAt >= 0 ? flags.rest[otherAt + 1] : undefined;

const systems = [];
const h = await startHostmemd();
const hc = await negotiatedClient(h.sock);
systems.push({ name: 'hostmemd', run: () => qmpCycles(hc) });
let o, oc;
if (other) {
  const lib = await import(path.resolve(other, 'bench', 'lib.mjs'));
  o = await lib.startHostmemd();
  oc = await negotiatedClient(o.sock);
  systems.push({ name: 'other', run: () => qmpCycles(oc) });
}
let q, qc;
if (haveQemu()) {
  q = await startQemu();
  qc = await negotiatedClient(q.sock);
  systems.push({ name: 'qemu', run: () => qmpCycles(qc) });
} else console.log('*** qemu-system-x86_64 not installed: no QEMU figures ***');
const bin = buildFloor('populate');
if (bin) systems.push({ name: 'floor', run: async () => floorCycles(bin) });

console.log(`prealloc ${fmt(SIZE / GiB, 2)} GiB memfd, ${THREADS} threads: ${ROUNDS} interleaved rounds, 1 warm-up + ${CYCLES} cycles each (machine may be loaded: compare within a round)`);
const perRound = Object.fromEntries(systems.map((s) => [s.name, []]));
try {
  for (let r = 0; r < ROUNDS; r++) {
    const order = systems.map((_, i) => systems[(i + r) % systems.length]);
    const line = [];
    for (const s of order) {
      const m = median(await s.run());
      perRound[s.name].push(m);
      line.push(`${s.name} ${fmt(m, 3)} s`);
    }
    console.log(`round ${r + 1}: ${line.join(', ')}`);
  }
} finally {
  hc.close();
  qc?.close();
  oc?.close();
  await h.stop();
  await o?.stop();
  await q?.stop();
}

const ours = median(perRound.hostmemd);
const theirs = perRound.qemu ? median(perRound.qemu) : undefined;
const floor = perRound.floor ? median(perRound.floor) : undefined;
const rows = [['measure', 'hostmemd', 'qemu-7.2', 'C floor', 'hostmemd/qemu', 'floor/hostmemd (rate)']];
const list = (v) => (v ? v.map((x) => fmt(x, 3)).join(' ') : '-');
rows.push([`${fmt(SIZE / GiB, 2)} GiB prealloc, ${THREADS} threads, median (s)`, fmt(ours, 3), theirs ? fmt(theirs, 3) : '-', floor ? fmt(floor, 3) : '-', theirs ? fmt(ours / theirs, 2) : '-', floor ? `${fmt((100 * floor) / ours, 0)}%` : '-']);
rows.push(['round medians (s)', list(perRound.hostmemd), list(perRound.qemu), list(perRound.floor), '', '']);
rows.push(['rate (GiB/s)', fmt(SIZE / GiB / ours, 2), theirs ? fmt(SIZE / GiB / theirs, 2) : '-', floor ? fmt(SIZE / GiB / floor, 2) : '-', '', 'goal: hostmemd <= qemu, >= 90% of floor rate']);
if (o) rows.push([`--other ${other} (s)`, fmt(median(perRound.other), 3), list(perRound.other), '', `this/other ${fmt(ours / median(perRound.other), 2)}`, '']);
printTable(rows);
writeJson(flags.json, 'prealloc', [{ name: `memfd ${fmt(SIZE / GiB, 2)} GiB prealloc, ${THREADS} threads`, unit: 's', hostmemd: ours, qemu: theirs, floor, better: 'lower' }]);
