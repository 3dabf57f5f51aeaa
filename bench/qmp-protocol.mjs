// bench/qmp-protocol: QMP round-trip latency (p50/p99 of query-version, one client, one
// request at a time) and pipelined replies/s with 1 and 16 clients, hostmemd side by side
// with QEMU 7.2 when qemu-system-x86_64 is installed. Run: npm run bench:qmp
import { readFileSync } from 'node:fs';
import { Client, benchFlags, measureRtt, nodeStartMs, startEchoServer, startHostmemd, startQemu, haveQemu, percentile, fmt, printTable, writeJson } from './lib.mjs';

const flags = benchFlags();

const RTT_N = Number(process.env.RTT_N ?? (flags.quick ? 300 : 3000));
const PIPE_N = Number(process.env.PIPE_N ?? (flags.quick ? 2000 : 20000));
/** Start-up runs per server (median): 7 as issue 16 asks. */
const STARTS = Number(process.env.STARTS ?? (flags.quick ? 3 : 7));
const REQ = '{"execute":"query-version","id":1}';

async function latency(sock) {
  const c = await (await Client.connect(sock)).negotiate();
  const r = await measureRtt(c, REQ, RTT_N);
  c.close();
  return r;
}

/** Each client writes its whole batch at once, then waits for every reply. */
async function pipelined(server, clients, perClient) {
  // hostmemd serves every client on one socket; QEMU needs one monitor socket per client.
  const sockFor = (i) => (server.socks ? server.socks[i] : server.sock);
  const cs = await Promise.all(Array.from({ length: clients }, async (_, i) => (await Client.connect(sockFor(i))).negotiate()));
  const batch = REQ.repeat(perClient);
  const s = process.hrtime.bigint();
  await Promise.all(
    cs.map((c) => {
      const done = c.take(perClient);
      c.send(batch);
      return done;
    }),
  );
  const secs = Number(process.hrtime.bigint() - s) / 1e9;
  cs.forEach((c) => c.close());
  return (clients * perClient) / secs;
}

async function measure(server, pipeN) {
  const lat = await latency(server.sock);
  const p1 = await pipelined(server, 1, pipeN);
  const p16 = await pipelined(server, 16, Math.ceil(pipeN / 16));
  return { ...lat, p1, p16 };
}

const results = [];
const h = await startHostmemd();
try {
  results.push(['hostmemd', await measure(h, PIPE_N)]);
} finally {
  await h.stop();
}
if (haveQemu()) {
  const q = await startQemu([], 16);
  try {
    // QEMU serves one request at a time (~3,500/s here): a smaller batch keeps the run short.
    results.push(['qemu-7.2', await measure(q, Math.min(PIPE_N, 8000))]);
  } finally {
    await q.stop();
  }
} else {
  console.log('*** qemu-system-x86_64 not installed: no side-by-side figures ***');
}
// The floor: a plain echo server over a UNIX socket (bench/lib.mjs startEchoServer).
const e = await startEchoServer();
let echo;
try {
  echo = await measure(e, PIPE_N);
} finally {
  await e.stop();
}

/** Start to greeting (spawn → first line), start to the first answered query-version (sent
 *  with qmp_capabilities right after the greeting: hostmemd greets before it is ready, issue
 *  16, so the two differ), query-qmp-schema latency and idle RSS. */
async function startup(start, n = STARTS) {
  const times = [];
  const answered = [];
  const schemaMs = [];
  let rssKb = 0;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const srv = await start();
    const c = await Client.connect(srv.sock);
    await c.take(1);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    c.send('{"execute":"qmp_capabilities"}{"execute":"query-version"}');
    await c.take(2);
    answered.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (i === 0) {
      for (let k = 0; k < 30; k++) {
        const s = process.hrtime.bigint();
        c.send('{"execute":"query-qmp-schema"}');
        await c.take(1);
        schemaMs.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
      rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${srv.pid}/status`, 'utf8'))[1]);
    }
    c.close();
    await srv.stop();
  }
  times.sort((a, b) => a - b);
  answered.sort((a, b) => a - b);
  schemaMs.sort((a, b) => a - b);
  return { greet: percentile(times, 50), answered: percentile(answered, 50), schema: percentile(schemaMs, 50), rssKb };
}

const st = [['hostmemd', await startup(() => startHostmemd())]];
if (haveQemu()) st.push(['qemu-7.2', await startup(() => startQemu())]);
const nodeMs = await nodeStartMs(STARTS);
const srows = [['server', `start to greeting ms (median of ${STARTS})`, 'start to first query-version answer ms', 'query-qmp-schema ms (p50 of 30)', 'idle RSS MB']];
for (const [name, r] of st) srows.push([name, fmt(r.greet), fmt(r.answered), fmt(r.schema, 2), fmt(r.rssKb / 1024)]);
srows.push(['node -e 0 (floor)', fmt(nodeMs), '', '', '']);
printTable(srows);
console.log(`start to greeting / node -e 0: ${fmt(st[0][1].greet / nodeMs, 2)} (goal, issue 16: <= 1.3); first answer / node -e 0: ${fmt(st[0][1].answered / nodeMs, 2)}`);
console.log('goals (issue 7): start to greeting <= 150 ms, query-qmp-schema <= 5 ms, idle RSS < 80 MB');
console.log('');

const rows = [['server', 'rtt p50 µs', 'rtt p99 µs', 'pipelined 1 client /s', 'pipelined 16 clients /s']];
for (const [name, r] of results) rows.push([name, fmt(r.p50), fmt(r.p99), fmt(r.p1, 0), fmt(r.p16, 0)]);
if (results.length === 2) {
  const [ours, theirs] = [results[0][1], results[1][1]];
  rows.push(['ratio hostmemd/qemu', fmt(ours.p50 / theirs.p50, 2), fmt(ours.p99 / theirs.p99, 2), fmt(ours.p1 / theirs.p1, 1), fmt(ours.p16 / theirs.p16, 1)]);
  console.log(`goal: p50 ratio <= 0.6 (${ours.p50 / theirs.p50 <= 0.6 ? 'met' : 'NOT met'}); pipelined ratio >= 10 (${ours.p1 / theirs.p1 >= 10 && ours.p16 / theirs.p16 >= 10 ? 'met' : 'NOT met'})`);
}
rows.push(['echo server (floor)', fmt(echo.p50), fmt(echo.p99), fmt(echo.p1, 0), fmt(echo.p16, 0)]);
printTable(rows);

const ours = results[0][1];
const theirs = results[1]?.[1];
const q = theirs ? st[1][1] : undefined;
writeJson(flags.json, 'qmp-protocol', [
  { name: 'query-version round trip p50', unit: 'µs', hostmemd: ours.p50, qemu: theirs?.p50, floor: echo.p50, better: 'lower' },
  { name: 'query-version round trip p99', unit: 'µs', hostmemd: ours.p99, qemu: theirs?.p99, floor: echo.p99, better: 'lower' },
  { name: 'pipelined replies, 1 client', unit: '/s', hostmemd: ours.p1, qemu: theirs?.p1, floor: echo.p1, better: 'higher' },
  { name: 'pipelined replies, 16 clients', unit: '/s', hostmemd: ours.p16, qemu: theirs?.p16, floor: echo.p16, better: 'higher' },
  { name: `start to greeting (median of ${STARTS})`, unit: 'ms', hostmemd: st[0][1].greet, qemu: q?.greet, floor: nodeMs, better: 'lower' },
  { name: `start to first answered query-version (median of ${STARTS})`, unit: 'ms', hostmemd: st[0][1].answered, qemu: q?.answered, floor: nodeMs, better: 'lower' },
  { name: 'query-qmp-schema p50', unit: 'ms', hostmemd: st[0][1].schema, qemu: q?.schema, better: 'lower' },
  { name: 'idle RSS', unit: 'MB', hostmemd: st[0][1].rssKb / 1024, qemu: q && q.rssKb / 1024, better: 'lower' },
]);
