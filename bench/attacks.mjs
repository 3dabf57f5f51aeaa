// bench/attacks: the hostile inputs of issue 13 against a hostmemd child process, each on a
// fresh daemon, while a probe (a separate process, so that building and sending the attack does
// not count) asks query-version one request at a time, 2 ms apart, over the UNIX socket. Prints,
// per attack, the probe's p50/p99/max round trip, the daemon's peak RSS (VmHWM), its RSS 2 s
// after the attack, its log volume, and whether the attack got the answer it should.
// Run: npm run build && node bench/attacks.mjs [--only NAME[,NAME]] [--scale F] [--json FILE]
//   --only    attacks to run (names below; default all)
//   --scale   multiplies every attack's size (default 1 = the sizes; 0.05 for a quick
//             check of the script itself)
//   --json    writes { bench: 'attacks', results: [{ name, unit, hostmemd, better }] }
//   --warm    ms to wait after the daemon starts, before the probe (default 5000: the daemon
//             compiles its argument validators in the background after start)
//   env HOSTMEMD_NODE_ARGS: extra node options for the daemon (e.g. "--cpu-prof
//             --cpu-prof-dir=/tmp/prof" to find where the event loop is held, "--trace-gc")
//   env HOSTMEMD_ATTACK_LOG: a file the daemons' stderr (the log) and stdout (--trace-gc) are
//             appended to
// Attacks: bad-token (one 64 MiB message ending in a bad byte), unfinished (100 connections each
// holding an unfinished 2.1 MB `[{},{},...`), ws-frame (one WebSocket frame of 2.33 M requests),
// non-ascii-id (a 64 MiB id of non-ASCII characters, reply read in full), long-name (a 64 MiB
// command name), host-nodes (a 4 MB object-add with 1 M wrongly typed host-nodes), pipeline
// (1 M pipelined query-version with a reader taking ~13 MB/s).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { ROOT, freePort, waitHealthy, fmt, printTable } from './lib.mjs';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const SCALE = Number(flag('--scale', '1'));
const ONLY = flag('--only', '')
  .split(',')
  .filter((s) => s);
const JSON_FILE = flag('--json', undefined);
const WARM_MS = Number(flag('--warm', '5000'));
const n = (x) => Math.max(1, Math.round(x * SCALE));

/** `p`'s value, or `fallback` once `ms` pass; the timer is cleared either way (a bound left
 *  pending would keep this process alive for its whole length after the attacks are done). */
function within(p, ms, fallback) {
  let timer;
  const bound = new Promise((r) => (timer = setTimeout(() => r(fallback), ms)));
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

/** A daemon child process with its UNIX socket and, with `ws`, the web endpoint. Its stderr
 *  (the log, at the default level) is counted, not shown. */
async function startDaemon({ ws = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-attack-'));
  const sock = path.join(dir, 'qmp.sock');
  const port = ws ? await freePort() : 0;
  const extra = ws ? ['--ws', `127.0.0.1:${port}`] : [];
  const logFile = process.env.HOSTMEMD_ATTACK_LOG;
  const proc = spawn(process.execPath, [...(process.env.HOSTMEMD_NODE_ARGS ?? '').split(' ').filter((a) => a), path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir, '--accel', 'none', ...extra], { stdio: ['ignore', logFile ? 'pipe' : 'ignore', 'pipe'] });
  let logBytes = 0;
  proc.stdout?.on('data', (d) => fs.appendFileSync(logFile, d));
  proc.stderr.on('data', (d) => {
    logBytes += d.length;
    if (logFile) fs.appendFileSync(logFile, d);
  });
  const deadline = Date.now() + 15000;
  while (!fs.existsSync(sock)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error('hostmemd did not start');
    await new Promise((r) => setTimeout(r, 10));
  }
  const url = `http://127.0.0.1:${port}`;
  if (ws) await waitHealthy(url);
  return {
    proc,
    sock,
    url,
    token: ws ? fs.readFileSync(path.join(dir, 'token'), 'utf8').trim() : '',
    logBytes: () => logBytes,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const gone = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await gone;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** RSS now and at its peak (MiB) from /proc; undefined once the process is gone. */
function rss(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) / 1024;
    return { now: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

// The probe process (tools/qmp-probe.cjs): negotiates, prints "ready", then query-version in a
// loop until its stdin ends, then prints the round trips' p50/p99/max (ms). An answer still
// missing 10 s after the end counts as taking that long.
const PROBE = path.join(ROOT, 'tools', 'qmp-probe.cjs');
const PROBE_GRACE_MS = 10000;

async function startProbe(sock) {
  const p = spawn(process.execPath, [PROBE, sock, String(PROBE_GRACE_MS)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.setEncoding('utf8');
  const exited = new Promise((r) => p.on('exit', r));
  await new Promise((resolve, reject) => {
    p.stdout.on('data', (d) => {
      out += d;
      if (out.startsWith('ready\n')) resolve();
    });
    void exited.then(() => reject(new Error(`probe exited: ${out}`)));
  });
  return {
    async stop() {
      p.stdin.end();
      await exited;
      return JSON.parse(out.slice('ready\n'.length));
    },
  };
}

function connect(sock) {
  return new Promise((resolve, reject) => {
    const s = net.connect(sock);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A raw client: every line it receives (latin1), a way to wait for the n-th, and its close. */
async function rawClient(sock, { negotiate = true } = {}) {
  const s = await connect(sock);
  const c = { s, lines: [], buf: '', closed: false, waiters: [] };
  s.setEncoding('latin1');
  s.on('error', () => undefined);
  const wake = () => {
    for (const w of c.waiters.splice(0)) w();
  };
  s.on('data', (d) => {
    c.buf += d;
    for (let i; (i = c.buf.indexOf('\r\n')) >= 0; ) {
      c.lines.push(c.buf.slice(0, i));
      c.buf = c.buf.slice(i + 2);
    }
    wake();
  });
  s.on('close', () => {
    c.closed = true;
    wake();
  });
  c.until = async (cond, ms) => {
    const deadline = Date.now() + ms;
    while (!cond() && !c.closed && Date.now() < deadline) await new Promise((r) => (c.waiters.push(r), setTimeout(r, 100)));
    return cond();
  };
  await c.until(() => c.lines.length >= 1, 5000);
  if (negotiate) {
    s.write('{"execute":"qmp_capabilities"}');
    await c.until(() => c.lines.length >= 2, 5000);
  }
  return c;
}

function write(s, data) {
  return new Promise((resolve) => s.write(data, () => resolve()));
}

const ATTACKS = {
  // One 64 MiB message ending in a bad byte: the error echoes 1 KiB of the token.
  async 'bad-token'(d) {
    const c = await rawClient(d.sock);
    const size = n(64 * MiB) - 64; // just under QEMU's token limit (64 MiB), so the byte is read
    await write(c.s, Buffer.concat([Buffer.from('{"execute":"query-version","id":"'), Buffer.alloc(size, 0x80), Buffer.from([0x01])]));
    const ok = await c.until(() => c.lines.length >= 3, 120000);
    c.s.destroy();
    return { ok: ok && c.lines[2].includes('JSON parse error, stray') && c.lines[2].length < 8192, detail: `${size} bytes` };
  },

  // 100 connections each holding an unfinished 2.1 MB `[{},{},...` (just under QEMU's 2 Mi
  // tokens); past the input budget they are cut off.
  async unfinished(d) {
    const body = Buffer.from('[' + '{},'.repeat(699_000));
    const conns = n(100);
    const cs = [];
    for (let i = 0; i < conns; i++) {
      const c = await rawClient(d.sock, { negotiate: false });
      cs.push(c);
      await write(c.s, body);
    }
    await new Promise((r) => setTimeout(r, 2000));
    const cut = cs.filter((c) => c.lines.some((l) => l.includes('QMP input limit exceeded'))).length;
    for (const c of cs) c.s.destroy();
    return { ok: d.alive(), detail: `${conns} connections, ${cut} cut off at the input budget` };
  },

  // One WebSocket frame carrying 2.33 M requests: closed by the rate limit (per request).
  async 'ws-frame'(d) {
    const ws = new WebSocket(`${d.url.replace(/^http/, 'ws')}/qmp`, { headers: { authorization: `Bearer ${d.token}` }, perMessageDeflate: false });
    let replies = 0;
    const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
    ws.on('error', () => undefined);
    // Counted from the start: the greeting can come with the upgrade's reply and be emitted
    // before a listener attached after 'open' would be (that wait never ended once).
    const waiters = [];
    ws.on('message', () => {
      replies++;
      for (const w of waiters.splice(0)) w();
    });
    const atLeast = async (count) => {
      const deadline = Date.now() + 10000;
      while (replies < count) {
        if (Date.now() > deadline) throw new Error(`ws-frame: ${replies} messages, ${count} expected within 10 s`);
        await new Promise((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    };
    await new Promise((r) => ws.once('open', r));
    await atLeast(1); // the greeting
    ws.send('{"execute":"qmp_capabilities"}');
    await atLeast(2);
    const reqs = n(2_330_000);
    ws.send('{"execute":"query-version"}'.repeat(reqs));
    const how = await within(closed, 120000, undefined);
    ws.terminate();
    return { ok: how?.code === 1008, detail: `${reqs} requests in one frame: ${replies} replies, close ${how?.code}` };
  },

  // A 64 MiB id of non-ASCII characters (2-byte UTF-8): the reply echoes it (\u00e9 each, as
  // QEMU does), 192 MB read in full by the attacker.
  async 'non-ascii-id'(d) {
    const c = await rawClient(d.sock);
    const chars = n(32 * MiB) - 64; // 2 bytes each: just under the token limit
    let got = 0;
    let done;
    const replied = new Promise((r) => (done = r));
    c.s.removeAllListeners('data');
    c.s.on('data', (b) => {
      got += b.length; // latin1: one character per byte
      if (b.endsWith('\n')) done();
    });
    await write(c.s, Buffer.concat([Buffer.from('{"execute":"query-version","id":"'), Buffer.alloc(chars * 2, Buffer.from('é')), Buffer.from('"}')]));
    const ok = await within(replied.then(() => true), 120000, false);
    c.s.destroy();
    return { ok, detail: `${chars} characters, reply ${(got / MiB).toFixed(0)} MiB` };
  },

  // A 64 MiB command name: CommandNotFound with the name clipped, a clipped log line.
  async 'long-name'(d) {
    const c = await rawClient(d.sock);
    const size = n(64 * MiB) - 64; // just under the token limit
    const log0 = d.logBytes();
    await write(c.s, Buffer.concat([Buffer.from('{"execute":"'), Buffer.alloc(size, 'x'), Buffer.from('","id":1}')]));
    const ok = await c.until(() => c.lines.length >= 3, 120000);
    await new Promise((r) => setTimeout(r, 200));
    c.s.destroy();
    const log = d.logBytes() - log0;
    return { ok: ok && c.lines[2].includes('CommandNotFound') && c.lines[2].length < 8192 && log < 64 * 1024, detail: `${size} bytes; ${log} log bytes`, log };
  },

  // A 4 MB object-add with 1 M wrongly typed host-nodes: a type error, memory given back.
  async 'host-nodes'(d) {
    const c = await rawClient(d.sock);
    const count = n(1_000_000);
    const nodes = '"a",'.repeat(count - 1) + '"a"';
    await write(c.s, `{"execute":"object-add","arguments":{"qom-type":"memory-backend-ram","id":"m0","size":1048576,"host-nodes":[${nodes}]}}`);
    const ok = await c.until(() => c.lines.length >= 3, 120000);
    c.s.destroy();
    return { ok: ok && c.lines[2].includes('"error"'), detail: `${count} host-nodes: ${(c.lines[2] ?? '').slice(0, 100)}` };
  },

  // 1 M pipelined query-version in one write, replies read at ~13 MB/s.
  async pipeline(d) {
    const s = await connect(d.sock);
    const count = n(1_000_000);
    const RATE = 13 * MiB;
    let lines = 0;
    let lastCr = false;
    let bytes = 0;
    let closed = false;
    const t0 = performance.now();
    s.on('error', () => undefined);
    s.on('close', () => (closed = true));
    const all = new Promise((resolve) => {
      s.on('data', (chunk) => {
        if (lastCr && chunk[0] === 0x0a) lines++;
        for (let j = chunk.indexOf('\r\n'); j >= 0; j = chunk.indexOf('\r\n', j + 2)) lines++;
        lastCr = chunk[chunk.length - 1] === 0x0d;
        bytes += chunk.length;
        if (lines >= count + 2) return resolve();
        // Read no faster than RATE: pause until the bytes so far are due.
        const due = (bytes / RATE) * 1000 - (performance.now() - t0);
        if (due > 1) {
          s.pause();
          setTimeout(() => s.resume(), due);
        }
      });
      s.on('close', resolve);
    });
    const reqs = ['{"execute":"qmp_capabilities"}'];
    for (let i = 0; i < count; i++) reqs.push(`{"execute":"query-version","id":${i}}`);
    s.write(reqs.join(''));
    await within(all, 300000, undefined);
    s.destroy();
    const secs = (performance.now() - t0) / 1000;
    return { ok: !closed || lines >= count + 2 ? lines >= count + 2 : false, detail: `${lines - 2} of ${count} replies in ${secs.toFixed(1)} s (${(bytes / MiB / secs).toFixed(1)} MiB/s)` };
  },
};

const rows = [['attack', 'p50 ms', 'p99 ms', 'max ms', 'probes', 'peak RSS MiB', 'RSS after MiB', 'answered', 'detail']];
const results = [];
for (const [name, attack] of Object.entries(ATTACKS)) {
  if (ONLY.length && !ONLY.includes(name)) continue;
  const d = await startDaemon({ ws: name === 'ws-frame' });
  try {
    await new Promise((r) => setTimeout(r, WARM_MS));
    const probe = await startProbe(d.sock);
    await new Promise((r) => setTimeout(r, 300)); // a baseline before the attack
    const r = await attack(d);
    await new Promise((r2) => setTimeout(r2, 300));
    const lat = await probe.stop();
    await new Promise((r2) => setTimeout(r2, 2000));
    const mem = rss(d.proc.pid);
    const alive = d.alive();
    rows.push([name, fmt(lat.p50), fmt(lat.p99), fmt(lat.max), lat.n, fmt(mem?.peak ?? NaN, 0), fmt(mem?.now ?? NaN, 0), r.ok && alive ? 'yes' : alive ? 'NO' : 'DIED', r.detail]);
    results.push({ name: `${name} query-version p99`, unit: 'ms', hostmemd: lat.p99, better: 'lower' });
    results.push({ name: `${name} query-version max`, unit: 'ms', hostmemd: lat.max, better: 'lower' });
    results.push({ name: `${name} peak RSS`, unit: 'MiB', hostmemd: mem?.peak ?? null, better: 'lower' });
    results.push({ name: `${name} RSS 2 s after`, unit: 'MiB', hostmemd: mem?.now ?? null, better: 'lower' });
    if (r.log !== undefined) results.push({ name: `${name} log bytes`, unit: 'bytes', hostmemd: r.log, better: 'lower' });
  } finally {
    await d.stop();
  }
}
console.log(`hostile input (issue 13), scale ${SCALE}; probe: query-version every 2 ms on another connection; load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores`);
printTable(rows);
if (JSON_FILE) fs.writeFileSync(JSON_FILE, JSON.stringify({ bench: 'attacks', results }, null, 2) + '\n');
