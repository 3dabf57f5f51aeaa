// bench/websocket: QMP over the /qmp WebSocket next to the UNIX socket, on one hostmemd:
// round-trip latency (p50/p99 of query-version, one request at a time), pipelined replies/s
// (one client sends a batch, then waits for every reply; one frame per message over
// WebSocket), and event fan-out: the time from an object-add of a small memfd backend (sent by
// a UNIX client) until all 100 connected WebSocket clients have received OBJECT_ADDED.
// The message rate limit is lifted (--ws-limit rate=0) so that it is the transport that is
// measured. Run: npm run bench:ws
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, WsClient, benchFlags, freePort, measureRtt, startHostmemd, percentile, fmt, printTable, waitHealthy, writeJson } from './lib.mjs';

const flags = benchFlags();

const RTT_N = Number(process.env.RTT_N ?? (flags.quick ? 300 : 3000));
const PIPE_N = Number(process.env.PIPE_N ?? (flags.quick ? 2000 : 20000));
const FANOUT_CLIENTS = Number(process.env.FANOUT_CLIENTS ?? (flags.quick ? 10 : 100));
const FANOUT_ROUNDS = Number(process.env.FANOUT_ROUNDS ?? (flags.quick ? 6 : 30));
const REQ = '{"execute":"query-version","id":1}';

const latency = (c) => measureRtt(c, REQ, RTT_N);

/** UNIX: the whole batch in one write (a byte stream). WebSocket: one frame per message. */
async function pipelined(c, n, ws) {
  const s = process.hrtime.bigint();
  const done = c.take(n);
  if (ws) for (let i = 0; i < n; i++) c.send(REQ);
  else c.send(REQ.repeat(n));
  await done;
  return n / (Number(process.hrtime.bigint() - s) / 1e9);
}

/** Resolves when `c` has received an event line naming `id`; other lines are dropped. */
function waitEvent(c, name, id) {
  return new Promise((resolve) => {
    const check = (d) => {
      const line = d.toString('latin1');
      if (line.includes(`"event": "${name}"`) && line.includes(`"id": "${id}"`)) {
        c.ws.off('message', check);
        resolve(process.hrtime.bigint());
      }
    };
    c.ws.on('message', check);
  });
}

async function fanout(url, token, sock) {
  const clients = await Promise.all(Array.from({ length: FANOUT_CLIENTS }, async () => (await WsClient.connect(url, token)).negotiate()));
  // Fan-out listeners read frames directly; nothing else should queue lines on them.
  for (const c of clients) c.ws.removeAllListeners('message');
  const trigger = await (await Client.connect(sock)).negotiate();
  const all = [];
  const first = [];
  for (let r = 0; r < FANOUT_ROUNDS + 3; r++) {
    const id = `fan${r}`;
    const got = clients.map((c) => waitEvent(c, 'OBJECT_ADDED', id));
    const s = process.hrtime.bigint();
    trigger.send(`{"execute":"object-add","arguments":{"qom-type":"memory-backend-memfd","id":"${id}","size":2097152}}`);
    const times = await Promise.all(got);
    await trigger.take(2); // the event and the reply, in either order
    trigger.send(`{"execute":"object-del","arguments":{"id":"${id}"}}`);
    await trigger.take(2);
    if (r < 3) continue; // warm-up
    all.push(Number(times.reduce((a, b) => (b > a ? b : a)) - s) / 1000);
    first.push(Number(times.reduce((a, b) => (b < a ? b : a)) - s) / 1000);
  }
  trigger.close();
  for (const c of clients) c.close();
  all.sort((a, b) => a - b);
  first.sort((a, b) => a - b);
  return { allP50: percentile(all, 50), allP99: percentile(all, 99), firstP50: percentile(first, 50) };
}

const port = await freePort();
const h = await startHostmemd(['--accel', 'none', '--ws', `127.0.0.1:${port}`, '--ws-limit', 'rate=0']);
const url = `http://127.0.0.1:${port}`;
let rows;
let fan;
let figures;
try {
  await waitHealthy(url);
  const token = fs.readFileSync(path.join(path.dirname(h.sock), 'token'), 'utf8').trim();

  const u = await (await Client.connect(h.sock)).negotiate();
  const uLat = await latency(u);
  const uPipe = await pipelined(u, PIPE_N, false);
  u.close();

  const w = await (await WsClient.connect(url, token)).negotiate();
  const wLat = await latency(w);
  const wPipe = await pipelined(w, PIPE_N, true);
  w.close();

  rows = [
    ['transport', 'rtt p50 µs', 'rtt p99 µs', 'pipelined 1 client /s'],
    ['unix socket', fmt(uLat.p50), fmt(uLat.p99), fmt(uPipe, 0)],
    ['websocket', fmt(wLat.p50), fmt(wLat.p99), fmt(wPipe, 0)],
    ['ratio ws/unix', fmt(wLat.p50 / uLat.p50, 2), fmt(wLat.p99 / uLat.p99, 2), fmt(wPipe / uPipe, 2)],
  ];
  fan = await fanout(url, token, h.sock);
  figures = { uLat, uPipe, wLat, wPipe };
} finally {
  await h.stop();
}
printTable(rows);
console.log('');
printTable([
  [`event fan-out to ${FANOUT_CLIENTS} WebSocket clients (${FANOUT_ROUNDS} rounds)`, 'p50 µs', 'p99 µs'],
  ['object-add sent → last client has OBJECT_ADDED', fmt(fan.allP50), fmt(fan.allP99)],
  ['object-add sent → first client has OBJECT_ADDED', fmt(fan.firstP50), ''],
]);
writeJson(flags.json, 'websocket', [
  { name: 'WebSocket query-version round trip p50', unit: 'µs', hostmemd: figures.wLat.p50, better: 'lower' },
  { name: 'UNIX socket query-version round trip p50 (same run)', unit: 'µs', hostmemd: figures.uLat.p50, better: 'lower' },
  { name: 'WebSocket pipelined replies, 1 client', unit: '/s', hostmemd: figures.wPipe, better: 'higher' },
  { name: `event fan-out to ${FANOUT_CLIENTS} WebSocket clients p50`, unit: 'µs', hostmemd: fan.allP50, better: 'lower' },
]);
