// Fuzz target: the built daemon (dist/, via bin/hostmemd) as a child process with its limits
// set so that no input can make it allocate much (backend bytes, objects), a probe process
// asking query-version every few ms on its own connection (the "other client"), and the
// resource checks: fds (/proc/PID/fd) and mappings (/proc/PID/maps) against a baseline.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { spawnDaemon, Child } from '../helpers/daemon';
import { fdCount, mapsCount, markedAnonMapsCount } from '../helpers/proc';
import { RawQmpClient } from '../helpers/qmp-client';

/** Backend bytes and objects the fuzzed daemon may hold: sizes above are refused by its caps,
 *  so a generated `size: 2^53` or `prealloc: true` never costs more than this. */
export const FUZZ_MAX_BACKEND_BYTES = '16M';
export const FUZZ_MAX_OBJECTS = 32;

export interface Target {
  child: Child;
  pid: number;
  sock: string;
  /** The WebSocket QMP URL (ws://127.0.0.1:PORT/qmp) and its token. */
  wsUrl: string;
  token: string;
  /** The directory mem-path may lie in (the daemon's default allow-list, <state-dir>/files). */
  filesDir: string;
  probe: Probe;
  stop(): Promise<void>;
}

/** Starts the daemon (UNIX socket and WebSocket, request rate limit off so that fuzzing
 *  clients are not closed for speed) and the probe. */
export async function startTarget(): Promise<Target> {
  const child = await spawnDaemon([
    '--accel', 'none', '--log-level', 'error', '--ws', '127.0.0.1:0', '--ws-limit', 'rate=0',
    '--max-backend-bytes', FUZZ_MAX_BACKEND_BYTES, '--max-objects', String(FUZZ_MAX_OBJECTS),
  ]);
  if (child.proc.exitCode !== null) throw new Error(`daemon exited at start: ${child.stderr()}`);
  const pid = child.proc.pid!;
  // The web endpoint is ready before the QMP socket accepts (listen.ts starts it first);
  // its port is found in the daemon's listening sockets via /proc/net/tcp.
  const port = await listeningTcpPort(pid);
  const token = fs.readFileSync(path.join(child.dir, 'token'), 'utf8').trim();
  const probe = await startProbe(child.sock);
  return {
    child,
    pid,
    sock: child.sock,
    wsUrl: `ws://127.0.0.1:${port}/qmp`,
    token,
    filesDir: path.join(child.dir, 'files'),
    probe,
    stop: async () => {
      await probe.stop();
      await child.stop();
    },
  };
}

/** The TCP port the process listens on (state 0A in /proc/net/tcp, inode among its fds). */
async function listeningTcpPort(pid: number): Promise<number> {
  const deadline = Date.now() + 10000;
  for (;;) {
    const inodes = new Set<string>();
    for (const f of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${f}`));
        if (m) inodes.add(m[1]);
      } catch {
        // closed meanwhile
      }
    }
    for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && inodes.has(cols[9])) return parseInt(cols[1].split(':')[1], 16);
    }
    if (Date.now() > deadline) throw new Error('the daemon listens on no TCP port');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The probe: a separate node process (the fuzzer's own CPU work does not count) asking
 *  query-version in a loop, 5 ms apart. On "report\n" on its stdin it prints the largest
 *  round trip since the last report, counting a request still unanswered as its age so far. */
const PROBE = `
const net = require('node:net');
const c = net.connect(process.argv[1]);
let buf = '', stage = 0, t0 = 0, outstanding = false, max = 0, n = 0;
c.setEncoding('latin1');
c.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\\r\\n')) >= 0; ) { const l = buf.slice(0, i); buf = buf.slice(i + 2); onLine(l); }
});
c.on('close', () => { process.stdout.write(JSON.stringify({ closed: true }) + '\\n'); process.exit(1); });
function onLine(l) {
  if (stage === 0) { stage = 1; c.write('{"execute":"qmp_capabilities"}'); return; }
  if (stage === 1) { stage = 2; process.stdout.write('ready\\n'); send(); return; }
  // Events (OBJECT_ADDED...) begin with their timestamp: only a reply answers the request.
  if ('event' in JSON.parse(l)) return;
  outstanding = false; n++;
  max = Math.max(max, performance.now() - t0);
  setTimeout(send, 5);
}
function send() { outstanding = true; t0 = performance.now(); c.write('{"execute":"query-version"}'); }
let inBuf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  inBuf += d;
  for (let i; (i = inBuf.indexOf('\\n')) >= 0; ) {
    inBuf = inBuf.slice(i + 1);
    const m = Math.max(max, outstanding ? performance.now() - t0 : 0);
    process.stdout.write(JSON.stringify({ max: m, n }) + '\\n');
    max = 0; n = 0;
  }
});
process.stdin.on('end', () => process.exit(0));
`;

export interface Probe {
  /** Largest query-version round trip (ms) since the last call, and how many were answered. */
  report(): Promise<{ max: number; n: number }>;
  stop(): Promise<void>;
}

async function startProbe(sock: string): Promise<Probe> {
  const proc: ChildProcess = spawn(process.execPath, ['-e', PROBE, sock], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const waiters: ((line: string) => void)[] = [];
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    out += d;
    for (let i; (i = out.indexOf('\n')) >= 0; ) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      waiters.shift()?.(line);
    }
  });
  const next = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the probe did not answer')), 10000);
      waiters.push((l) => {
        clearTimeout(t);
        resolve(l);
      });
    });
  if ((await next()) !== 'ready') throw new Error('probe failed to negotiate');
  return {
    report: async () => {
      const line = next();
      proc.stdin!.write('report\n');
      const r = JSON.parse(await line) as { max?: number; n?: number; closed?: boolean };
      if (r.closed) throw new Error('the daemon closed the probe connection');
      return { max: r.max ?? 0, n: r.n ?? 0 };
    },
    stop: async () => {
      if (proc.exitCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.stdin!.end();
      await gone;
    },
  };
}

export interface Resources {
  fds: number;
  /** All mappings: reported, not compared (V8 and malloc map and unmap heap pages). */
  maps: number;
  /** Mappings of files (memfd, shm, mem-path files): backends; V8's anonymous heap pages vary. */
  fileMaps: number;
  /** Anonymous mappings marked by a backend's madvise: KSM-mergeable (merge=on, the default)
   *  or excluded from core dumps (dump=off). Nothing else in the daemon makes such mappings,
   *  so a private RAM backend left mapped shows here. */
  backendAnonMaps: number;
}

/** Mappings whose path is a backend's: memfd, /dev/shm, the state dir; not the node binary
 *  and its libraries, which are mapped once at start. */
function fileMappings(pid: number, stateDir: string): number {
  return fs
    .readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => /\/memfd:|\/dev\/shm\/|\[kvm-gmem\]/.test(l) || l.includes(stateDir)).length;
}

export function resources(t: Target): Resources {
  return { fds: fdCount(t.pid), maps: mapsCount(t.pid), fileMaps: fileMappings(t.pid, t.child.dir), backendAnonMaps: markedAnonMapsCount(t.pid) };
}

/** Waits (up to 5 s: closed connections are reaped asynchronously) until fds, file mappings
 *  and marked anonymous mappings are exactly back at the baseline; returns the last reading
 *  and whether it got there. The total mapping count is not compared: V8 maps and unmaps heap
 *  pages as it grows and collects (hundreds after megabyte inputs), which says nothing of the
 *  daemon's backends. */
export async function settle(t: Target, base: Resources): Promise<{ now: Resources; ok: boolean }> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const now = resources(t);
    const ok = now.fds === base.fds && now.fileMaps === base.fileMaps && now.backendAnonMaps === base.backendAnonMaps;
    if (ok || Date.now() > deadline) return { now, ok };
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Deletes every object under /objects (the fuzz run starts with none); returns how many. */
export async function deleteAllObjects(sock: string): Promise<number> {
  const c = await RawQmpClient.negotiated(sock);
  try {
    const r = await c.execute('qom-list', { path: '/objects' }, 'cleanup');
    const ids = ((r.return as { name: string; type: string }[]) ?? []).filter((p) => p.type.startsWith('child<')).map((p) => p.name);
    for (const id of ids) {
      const d = await c.execute('object-del', { id });
      if (!('return' in d)) throw new Error(`object-del ${id}: ${JSON.stringify(d)}`);
    }
    return ids.length;
  } finally {
    c.close();
  }
}
