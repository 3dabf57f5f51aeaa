// Shared benchmark plumbing: start hostmemd (built) and QEMU 7.2 side by side, minimal
// line-reading QMP clients (UNIX socket and WebSocket), the daemon's inspector for gc() and
// heap figures, percentiles and table printing. Benchmarks only; not tests.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
/* global fetch */

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function waitFor(file, proc, what) {
  const deadline = Date.now() + 15000;
  while (!fs.existsSync(file)) {
    if (proc.exitCode !== null) throw new Error(`${what} exited early`);
    if (Date.now() > deadline) throw new Error(`${what} did not create ${file}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts the built daemon. With `inspect`, node's inspector listens on a loopback port and
 *  the result has `inspector` (gc(), memoryUsage()): only for memory measurements. `node`:
 *  more options for node itself (e.g. --cpu-prof). */
export async function startHostmemd(args = [], { inspect = false, node = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-'));
  const sock = path.join(dir, 'qmp.sock');
  const nodeArgs = [...node, ...(inspect ? ['--inspect=127.0.0.1:0'] : [])];
  const proc = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir, '--log-level', 'warn', ...args], { stdio: ['ignore', 'ignore', inspect ? 'pipe' : 'inherit'] });
  let inspector;
  if (inspect) {
    const url = await new Promise((resolve, reject) => {
      let err = '';
      const onData = (d) => {
        err += d;
        const m = /Debugger listening on (ws:\/\/\S+)/.exec(err);
        if (m) {
          proc.stderr.off('data', onData);
          // The inspector's own notices stay out of the report; the daemon's lines go on.
          proc.stderr.on('data', (x) => String(x).split('\n').forEach((l) => l && !/Debugger|inspector|help, see/.test(l) && process.stderr.write(l + '\n')));
          resolve(m[1]);
        }
      };
      proc.stderr.on('data', onData);
      proc.once('exit', () => reject(new Error(`hostmemd exited early: ${err}`)));
    });
    inspector = await Inspector.connect(url);
  }
  await waitFor(sock, proc, 'hostmemd');
  return {
    name: 'hostmemd',
    sock,
    pid: proc.pid,
    inspector,
    stop: () => {
      inspector?.close();
      return stop(proc, dir);
    },
  };
}

/** A Chrome DevTools Protocol session with the daemon (node --inspect). */
class Inspector {
  static connect(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => resolve(new Inspector(ws)));
      ws.once('error', reject);
    });
  }
  constructor(ws) {
    this.ws = ws;
    this.id = 0;
    this.pending = new Map();
    ws.on('message', (d) => {
      const m = JSON.parse(d);
      const p = m.id !== undefined && this.pending.get(m.id);
      if (p) {
        this.pending.delete(m.id);
        if (m.error) p.reject(new Error(`${m.error.message}`));
        else p.resolve(m.result);
      }
    });
  }
  call(method, params = {}) {
    return new Promise((resolve, reject) => {
      const id = ++this.id;
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
  /** A full garbage collection (twice, so that objects freed by finalizers go too). */
  async gc() {
    await this.call('HeapProfiler.collectGarbage');
    await new Promise((r) => setTimeout(r, 50));
    await this.call('HeapProfiler.collectGarbage');
  }
  /** process.memoryUsage() of the daemon. */
  async memoryUsage() {
    const r = await this.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    return JSON.parse(r.result.value);
  }
  close() {
    this.ws.close();
  }
}

export function haveQemu() {
  return spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** QEMU serves one client per monitor socket, so `monitors` sockets are opened for
 *  multi-client runs; `socks[i]` is the i-th, `sock` the first. */
export async function startQemu(extra = [], monitors = 1) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-qemu-'));
  const socks = Array.from({ length: monitors }, (_, i) => path.join(dir, `qmp${i}.sock`));
  const qmpArgs = socks.flatMap((s) => ['-qmp', `unix:${s},server=on,wait=off`]);
  const proc = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', ...qmpArgs, ...extra], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (const s of socks) await waitFor(s, proc, 'QEMU');
  return { name: 'qemu-7.2', sock: socks[0], socks, pid: proc.pid, stop: () => stop(proc, dir) };
}

async function stop(proc, dir) {
  if (proc.exitCode === null) {
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await gone;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Lines received from a QMP server, handed to waiters in order (any transport). */
export class LineQueue {
  constructor() {
    this.lines = [];
    this.waiter = null;
  }
  push(line) {
    this.lines.push(line);
    if (this.waiter && this.lines.length >= this.waiter.n) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(this.lines.splice(0, w.n));
    }
  }
  /** Resolves with the next n lines. */
  take(n = 1) {
    if (this.lines.length >= n) return Promise.resolve(this.lines.splice(0, n));
    return new Promise((resolve) => (this.waiter = { n, resolve }));
  }
  async negotiate() {
    await this.take(1);
    this.send('{"execute":"qmp_capabilities"}');
    await this.take(1);
    return this;
  }
}

/** A QMP client on a UNIX socket: CRLF-terminated lines. */
export class Client extends LineQueue {
  /** Connects; refused connections are tried again for a while: a server's socket file can
   *  exist a moment before it listens (the start helpers wait only for the file). */
  static async connect(sock, retryMs = 5000) {
    const deadline = Date.now() + retryMs;
    for (;;) {
      try {
        return await new Promise((resolve, reject) => {
          const s = net.connect(sock);
          s.once('connect', () => resolve(new Client(s)));
          s.once('error', reject);
        });
      } catch (e) {
        if (e.code !== 'ECONNREFUSED' || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
  constructor(sock) {
    super();
    this.sock = sock;
    /** The unfinished line's chunks. Only each new chunk is searched for CRLF, and a line is
     *  joined once: a 1.5 MB reply (query-memdev at 10,000 objects) comes in ~25 chunks, and
     *  appending to one string and searching it from the start each time cost this client
     *  ~120 ms of its own CPU per reply, which bench/scale.mjs then counted as the reply's. */
    this.parts = [];
    sock.setNoDelay?.(true);
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      let from = 0;
      const last = this.parts.length - 1;
      if (last >= 0 && d.startsWith('\n') && this.parts[last].endsWith('\r')) {
        // A CRLF split between two chunks.
        this.parts[last] = this.parts[last].slice(0, -1);
        this.line();
        from = 1;
      }
      for (let i = d.indexOf('\r\n', from); i >= 0; i = d.indexOf('\r\n', from)) {
        this.parts.push(d.slice(from, i));
        this.line();
        from = i + 2;
      }
      if (from < d.length) this.parts.push(d.slice(from));
    });
  }
  line() {
    const text = this.parts.length === 1 ? this.parts[0] : this.parts.join('');
    this.parts = [];
    this.push(text);
  }
  send(text) {
    this.sock.write(text);
  }
  close() {
    this.sock.destroy();
  }
}

/** Connects to `sock` and negotiates. A socket file appears at bind(), a moment before the
 *  server listens: a refused connection right after start is tried again (up to 5 s). */
export async function negotiatedClient(sock) {
  for (const deadline = Date.now() + 5000; ; ) {
    try {
      return await (await Client.connect(sock)).negotiate();
    } catch (e) {
      if (e.code !== 'ECONNREFUSED' || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Sends a command and waits for its reply, skipping events: { ret } or { err: 'Class: desc' }. */
export async function request(c, cmd, args) {
  c.send(JSON.stringify(args ? { execute: cmd, arguments: args } : { execute: cmd }));
  for (;;) {
    const [line] = await c.take(1);
    // An event (QEMU's member order: timestamp first) is skipped unparsed: with many clients
    // connected every one of them receives every OBJECT_ADDED, and parsing what it ignores
    // would make this client, not the server, the measure.
    if (line.startsWith('{"timestamp"')) continue;
    const m = JSON.parse(line);
    if (!('event' in m)) return 'error' in m ? { err: `${m.error.class}: ${m.error.desc}` } : { ret: m.return };
  }
}

/** Round-trip latency in µs of `req` on client `c`, one request at a time, after a warm-up. */
export async function measureRtt(c, req, n) {
  for (let i = 0; i < 200; i++) {
    c.send(req);
    await c.take(1);
  }
  const t = [];
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    c.send(req);
    await c.take(1);
    t.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  t.sort((a, b) => a - b);
  return { p50: percentile(t, 50), p99: percentile(t, 99) };
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once `url`/healthz answers. */
export async function waitHealthy(url) {
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The WebSocket twin of Client: QMP over /qmp with the token; every frame is one line. */
export class WsClient extends LineQueue {
  static connect(url, token) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/qmp`, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('error', reject);
    });
  }
  constructor(ws) {
    super();
    this.ws = ws;
    ws._socket?.setNoDelay?.(true);
    ws.on('message', (d) => this.push(d.toString('latin1')));
  }
  send(text) {
    this.ws.send(text);
  }
  close() {
    this.ws.terminate();
  }
}

export function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export function fmt(n, digits = 1) {
  return Number.isFinite(n) ? n.toFixed(digits) : String(n);
}

export function printTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(widths[i])).join('  '));
}

/** Flags every bench script takes: `--json FILE` (write the results in the `npm run bench`
 *  shape), `--quick` (small sizes and few repeats, to validate the script, not to measure). */
export function benchFlags(argv = process.argv.slice(2)) {
  const flags = { json: undefined, quick: false, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') flags.json = argv[++i];
    else if (argv[i] === '--quick') flags.quick = true;
    else flags.rest.push(argv[i]);
  }
  if (flags.quick && process.env.BENCH_QUICK === undefined) process.env.BENCH_QUICK = '1';
  return flags;
}

/** Writes `{ bench, results }` to `file` (when given): each result is { name, unit, hostmemd,
 *  qemu?, floor?, better: 'lower' | 'higher' }, the shape bench/run.mjs reads. */
export function writeJson(file, bench, results, extra = {}) {
  if (!file) return;
  const clean = results.filter((r) => Number.isFinite(r.hostmemd)).map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined && v !== null && !Number.isNaN(v))));
  fs.writeFileSync(file, JSON.stringify({ bench, results: clean, ...extra }, null, 1) + '\n');
}

export const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Compiles bench/floor/NAME.c with gcc into a temp dir; undefined (with a notice) without gcc.
 *  The binary is never committed: it is built for the machine that measures. */
export function buildFloor(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-floor-'));
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, name);
  const r = spawnSync('gcc', ['-O2', '-pthread', '-o', out, path.join(ROOT, 'bench', 'floor', `${name}.c`)], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.error || r.status !== 0) {
    console.log(`*** gcc not available or ${name}.c did not compile: no C floor ***`);
    return undefined;
  }
  return out;
}

/** The floor for QMP round trips: a plain node server on a UNIX socket (its own process) that
 *  sends a greeting line and answers every `{"execute"` it reads with a fixed reply line; no
 *  parsing, no dispatch. Same client code as for the daemons. Options:
 *  - `replies`: { command: line } answered as they are (the line without CRLF; e.g. a reply a
 *    daemon sent, so that a client reads the very same bytes from a server that costs nothing);
 *    the command's name is matched in the request's text, nothing else is looked at;
 *  - `durable`: each chunk of requests read is first appended to a log opened O_DSYNC in the
 *    server's temp dir (one durable write, on the state dirs' file system, before the replies):
 *    the floor for a server that answers only once a change is durable. */
export async function startEchoServer({ replies = {}, durable = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-echo-'));
  const sock = path.join(dir, 'echo.sock');
  const repliesFile = path.join(dir, 'replies.json');
  fs.writeFileSync(repliesFile, JSON.stringify(replies));
  const script = `
    const net = require('node:net');
    const fs = require('node:fs');
    const [sock, repliesFile, logFile] = process.argv.slice(1);
    const canned = new Map(Object.entries(JSON.parse(fs.readFileSync(repliesFile, 'latin1'))).map(([k, v]) => [k, Buffer.from(v + '\\r\\n', 'latin1')]));
    const REPLY = Buffer.from('{"return": {}}\\r\\n');
    const log = logFile ? fs.openSync(logFile, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND | fs.constants.O_DSYNC, 0o600) : undefined;
    const NAME = /\\{"execute"\\s*:\\s*"([^"]*)"/g;
    net.createServer((c) => {
      c.write('{"QMP": {"version": {}, "capabilities": []}}\\r\\n');
      let tail = '';
      c.setEncoding('latin1');
      c.on('data', (d) => {
        const s = tail + d;
        const out = [];
        let end = 0;
        for (const m of s.matchAll(NAME)) {
          out.push(canned.get(m[1]) ?? REPLY);
          end = m.index + m[0].length;
        }
        // An unfinished request start is kept for the next chunk.
        const cut = s.lastIndexOf('{', s.length - 1);
        tail = cut >= end ? s.slice(cut) : '';
        if (out.length === 0) return;
        const send = () => c.write(Buffer.concat(out));
        if (log === undefined) send();
        else fs.write(log, d, 0, 'latin1', (e) => (e ? c.destroy(e) : send()));
      });
      c.on('error', () => {});
    }).listen(sock);`;
  const proc = spawn(process.execPath, ['-e', script, sock, repliesFile, ...(durable ? [path.join(dir, 'log')] : [])], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitFor(sock, proc, 'echo server');
  return { name: 'echo', sock, pid: proc.pid, stop: () => stop(proc, dir) };
}

/** Median milliseconds of `node -e 0` (spawn to exit): the floor for start-up. */
export async function nodeStartMs(n = 7) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise((r) => spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }).once('exit', r));
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(t);
}
