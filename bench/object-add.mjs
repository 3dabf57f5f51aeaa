// bench/object-add: what durability costs object-add (issue 16 item 3, group commit). Every
// hostmemd object-add is journaled (the reply waits until the change is durable); QEMU journals
// nothing. Measured in one run, each on a fresh daemon (state dir in os.tmpdir(), so the floor
// and the journal share a file system: checked, the run stops if they do not):
//  - floor: 1 / (one fdatasync on the state fs): sequential appends of an entry-sized record
//    (400 bytes) to a file in a temp dir beside the state dirs, each followed by fdatasync;
//  - first object-add after start: the daemon's validators come compiled from the build, but
//    the rest of the add path is compiled on first use while the start's last parts load.
//    That one-time cost is shown on its own line (ms, median), not spread over the rates: on
//    each fresh server one object-add (and its object-del) runs first, then WARM_MS pass
//    (the start is over) before the timed part. QEMU gets the same warm-up;
//  - one client, sequential: OBJECTS object-adds of 1 MiB memfd backends, each waiting for its
//    reply (compared with the floor: one durable write per object is the goal);
//  - one client, pipelined: the same OBJECTS object-adds sent in one write;
//  - CLIENTS clients concurrently: OBJECTS object-adds in all, shared out, each client
//    sequential on its own connection (the goal: >= 4x the one-client rate);
//  - QEMU 7.2, one client, sequential, OBJECTS object-adds (skipped without QEMU): the
//    CLIENTS-client rate is compared with it;
//  - the durable echo floor: the same sequential object-adds against a plain node server that
//    does nothing but append each request to an O_DSYNC log on the state fs before its reply
//    (bench/lib.mjs startEchoServer({ durable: true })): what one round trip plus one durable
//    write per request allows a server that keeps its event loop free. One client sequential
//    can reach 1/fdatasync only where both together cost less than one fdatasync.
//  - the same one-client and CLIENTS-client rates at STEADY objects (default 1,000; 0 skips):
//    a fresh daemon runs its first hundreds of adds before V8 has optimised their code, so at
//    100 objects the ratio measures warm-up as much as concurrency.
// Each figure is the median of REPEATS runs.
//
// Run: node bench/object-add.mjs [--json FILE]   (npm run build first)
// Env: OBJECTS (default 100), CLIENTS (default 16), REPEATS (default 3), FLOOR_SYNCS (default 200), STEADY (default 1000),
// WARM_MS (default 1500: the pause after the warm-up object-add; 0 measures right after start).
// --json FILE writes { "bench": "object-add", "results": [{ name, unit, hostmemd, qemu?, floor?,
// better }] } (rates in objects/s, higher is better).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { haveQemu, negotiatedClient, request, startEchoServer, startHostmemd, startQemu, fmt, printTable } from './lib.mjs';

const OBJECTS = Number(process.env.OBJECTS ?? 100);
const CLIENTS = Number(process.env.CLIENTS ?? 16);
const REPEATS = Number(process.env.REPEATS ?? 3);
const FLOOR_SYNCS = Number(process.env.FLOOR_SYNCS ?? 200);
const WARM_MS = Number(process.env.WARM_MS ?? 1500);
const STEADY = Number(process.env.STEADY ?? 1000);
const SIZE = 1024 * 1024;
const jsonAt = process.argv.indexOf('--json');
const jsonFile = jsonAt >= 0 ? process.argv[jsonAt + 1] : undefined;
if (jsonAt >= 0 && !jsonFile) throw new Error('--json needs a file name');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const add = (id) => JSON.stringify({ execute: 'object-add', arguments: { 'qom-type': 'memory-backend-memfd', id, size: SIZE } });

/** The file system (st_dev) the floor is measured on: where startHostmemd makes state dirs. */
let floorDev;

/** fdatasyncs per second of an appended entry-sized record, on the state dirs' file system. */
function floorRate() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-floor-'));
  floorDev = fs.statSync(dir).dev;
  try {
    const fd = fs.openSync(path.join(dir, 'log'), 'a', 0o600);
    const rec = Buffer.alloc(400, 0x61);
    for (let i = 0; i < 10; i++) {
      fs.writeSync(fd, rec);
      fs.fdatasyncSync(fd);
    }
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < FLOOR_SYNCS; i++) {
      fs.writeSync(fd, rec);
      fs.fdatasyncSync(fd);
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    fs.closeSync(fd);
    return FLOOR_SYNCS / s;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function expectOk(c, id) {
  const r = await request(c, 'object-add', { 'qom-type': 'memory-backend-memfd', id, size: SIZE });
  if (r.err) throw new Error(`object-add ${id}: ${r.err}`);
}

/** Sequential object-adds on `clients` connections at once; objects per second. */
async function sequentialRate(server, clients, objects = OBJECTS) {
  const socks = server.socks ?? [server.sock];
  const cs = await Promise.all(Array.from({ length: clients }, (_, i) => negotiatedClient(socks[i % socks.length])));
  const per = Array.from({ length: clients }, (_, k) => Math.floor(objects / clients) + (k < objects % clients ? 1 : 0));
  const t0 = process.hrtime.bigint();
  await Promise.all(
    cs.map(async (c, k) => {
      for (let i = 0; i < per[k]; i++) await expectOk(c, `c${k}-${i}`);
    }),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const c of cs) c.close();
  return objects / s;
}

/** OBJECTS object-adds sent in one write on one connection; objects per second. */
async function pipelinedRate(server) {
  const c = await negotiatedClient(server.sock);
  const t0 = process.hrtime.bigint();
  c.send(Array.from({ length: OBJECTS }, (_, i) => add(`p${i}`)).join('\n'));
  let got = 0;
  while (got < OBJECTS) {
    const [line] = await c.take(1);
    const m = JSON.parse(line);
    if ('event' in m) continue;
    if (m.error) throw new Error(`pipelined object-add: ${m.error.class}: ${m.error.desc}`);
    got++;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  c.close();
  return OBJECTS / s;
}

/** The first object-add on a fresh server (ms), then its object-del, then WARM_MS of quiet. */
async function warmUp(server) {
  if (server.name === 'hostmemd' && fs.statSync(path.dirname(server.sock)).dev !== floorDev) {
    throw new Error(`the daemon's state dir ${path.dirname(server.sock)} is not on the file system the floor was measured on`);
  }
  const c = await negotiatedClient(server.sock);
  const t0 = process.hrtime.bigint();
  await expectOk(c, 'warm-up');
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const r = await request(c, 'object-del', { id: 'warm-up' });
  if (r.err) throw new Error(`object-del warm-up: ${r.err}`);
  c.close();
  await new Promise((res) => setTimeout(res, WARM_MS));
  return ms;
}

/** The first object-add's ms on each fresh server, by server name. */
const firstAdds = {};

/** Runs `fn` on a fresh, warmed-up server REPEATS times; the median. */
async function repeat(start, fn) {
  const xs = [];
  for (let r = 0; r < REPEATS; r++) {
    const server = await start();
    try {
      (firstAdds[server.name] ??= []).push(await warmUp(server));
      xs.push(await fn(server));
    } finally {
      await server.stop();
    }
  }
  return median(xs);
}

const floors = [];
for (let r = 0; r < REPEATS; r++) floors.push(floorRate());
const floor = median(floors);
const one = await repeat(() => startHostmemd(), (s) => sequentialRate(s, 1));
const piped = await repeat(() => startHostmemd(), (s) => pipelinedRate(s));
const many = await repeat(() => startHostmemd(), (s) => sequentialRate(s, CLIENTS));
const qemu = haveQemu() ? await repeat(() => startQemu(), (s) => sequentialRate(s, 1)) : undefined;
const oneSteady = STEADY > 0 ? await repeat(() => startHostmemd(), (s) => sequentialRate(s, 1, STEADY)) : undefined;
const manySteady = STEADY > 0 ? await repeat(() => startHostmemd(), (s) => sequentialRate(s, CLIENTS, STEADY)) : undefined;
const durableEcho = await repeat(async () => {
  const e = await startEchoServer({ durable: true });
  if (fs.statSync(path.dirname(e.sock)).dev !== floorDev) throw new Error(`the durable echo server's log ${e.sock} is not on the file system the floor was measured on`);
  return e;
}, (s) => sequentialRate(s, 1));

console.log(`object-add with the journal on: ${OBJECTS} objects of 1 MiB (memfd), median of ${REPEATS}, each on a fresh server after one warm-up object-add and ${WARM_MS} ms; state fs floor from ${FLOOR_SYNCS} fdatasyncs`);
printTable([
  ['case', 'hostmemd /s', 'reference /s', 'ratio', 'goal'],
  ['one client, sequential', fmt(one, 0), `${fmt(floor, 0)} (1/fdatasync)`, fmt(one / floor, 2), '>= 1'],
  ['one client, sequential, vs durable echo', fmt(one, 0), `${fmt(durableEcho, 0)} (durable echo)`, fmt(one / durableEcho, 2), ''],
  ['durable echo vs 1/fdatasync', fmt(durableEcho, 0), `${fmt(floor, 0)} (1/fdatasync)`, fmt(durableEcho / floor, 2), ''],
  ['one client, pipelined', fmt(piped, 0), `${fmt(one, 0)} (one client)`, fmt(piped / one, 2), ''],
  [`${CLIENTS} clients`, fmt(many, 0), `${fmt(one, 0)} (one client)`, fmt(many / one, 2), '>= 4'],
  ...(STEADY > 0 ? [[`${CLIENTS} clients, ${STEADY} objects`, fmt(manySteady, 0), `${fmt(oneSteady, 0)} (one client, ${STEADY})`, fmt(manySteady / oneSteady, 2), '>= 4']] : []),
  [`${CLIENTS} clients vs QEMU 7.2, one client`, fmt(many, 0), qemu === undefined ? 'QEMU not installed' : fmt(qemu, 0), qemu === undefined ? '-' : fmt(many / qemu, 2), '>= 1'],
]);
const firstQemuAdds = firstAdds['qemu-7.2'] ?? [];
const firstQemu = firstQemuAdds.length > 0 ? `, QEMU 7.2 ${fmt(median(firstQemuAdds), 1)}` : '';
console.log(`first object-add after start (ms, median of ${firstAdds.hostmemd.length}): hostmemd ${fmt(median(firstAdds.hostmemd), 1)}${firstQemu}`);

if (jsonFile) {
  const results = [
    { name: `object-add one client sequential, ${OBJECTS} objects (journal on; floor: 1/fdatasync)`, unit: 'objects/s', hostmemd: one, floor, better: 'higher' },
    { name: `object-add one client sequential, ${OBJECTS} objects (floor: a durable echo server, one O_DSYNC append per request)`, unit: 'objects/s', hostmemd: one, floor: durableEcho, better: 'higher' },
    { name: `object-add one client pipelined, ${OBJECTS} objects`, unit: 'objects/s', hostmemd: piped, better: 'higher' },
    { name: `object-add ${CLIENTS} clients, ${OBJECTS} objects (QEMU: one client)`, unit: 'objects/s', hostmemd: many, ...(qemu === undefined ? {} : { qemu }), better: 'higher' },
    ...(STEADY > 0
      ? [
          { name: `object-add one client sequential, ${STEADY} objects`, unit: 'objects/s', hostmemd: oneSteady, better: 'higher' },
          { name: `object-add ${CLIENTS} clients, ${STEADY} objects`, unit: 'objects/s', hostmemd: manySteady, better: 'higher' },
        ]
      : []),
    { name: 'first object-add after start', unit: 'ms', hostmemd: median(firstAdds.hostmemd), ...(firstQemuAdds.length > 0 ? { qemu: median(firstQemuAdds) } : {}), better: 'lower' },
  ];
  fs.writeFileSync(jsonFile, JSON.stringify({ bench: 'object-add', results }, null, 2) + '\n');
}
