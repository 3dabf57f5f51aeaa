// bench/restart: what a restart costs with N backends (default 1,000 memfd of 1 MiB), and what
// clients notice. (1) Live handover (cpr-handover to a --incoming-cpr successor) while a client
// sends query-version back to back: command time, the longest round trip the client saw, and
// every reply accounted for. (2) SIGKILL under a minimal sd_notify service manager (fd store,
// socket activation): from the kill to READY=1 of the new process with every object reattached.
// The add rate of the N objects (each journaled with fsync before its reply) is printed for
// reference. Run: npm run bench:restart
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { ROOT, benchFlags, negotiatedClient, request, percentile, fmt, printTable, writeJson } from './lib.mjs';

const flags = benchFlags();

const require = createRequire(import.meta.url);
const native = require(path.join(ROOT, 'dist', 'native'));
const S = native.sockets;
const { NotifyServer } = require(path.join(ROOT, 'dist', 'service', 'notify-server'));
const N = Number(process.env.OBJECTS ?? (flags.quick ? 100 : 1000));
const MiB = 1 << 20;

function spawnDaemon(args, extraEnv = {}, fds = []) {
  const script = 'LISTEN_PID=$$ exec "$@"';
  const proc = spawn('/bin/sh', ['-c', script, 'sh', process.execPath, path.join(ROOT, 'bin', 'hostmemd'), '--log-level', 'warn', ...args], {
    env: { ...process.env, ...extraEnv },
    stdio: ['ignore', 'ignore', 'inherit', ...fds],
  });
  return { proc, exited: new Promise((r) => proc.once('exit', (code) => r(code))) };
}

async function waitFile(p, ms = 20000) {
  const end = Date.now() + ms;
  while (!fs.existsSync(p)) {
    if (Date.now() > end) throw new Error(`${p} did not appear`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function addAll(sock) {
  const c = await negotiatedClient(sock);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const r = await request(c, 'object-add', { 'qom-type': 'memory-backend-memfd', id: `m${i}`, size: MiB });
    if ('err' in r) throw new Error(r.err);
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { c, rate: N / s };
}

async function handover() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-restart-'));
  const sock = path.join(dir, 'qmp.sock');
  const chan = path.join(dir, 'cpr.sock');
  const old = spawnDaemon(['--state-dir', dir, '--qmp', `unix:${sock}`]);
  await waitFile(sock);
  await new Promise((r) => setTimeout(r, 200));
  const { c, rate } = await addAll(sock);
  // A client sending query-version one after another, timing each.
  const load = await negotiatedClient(sock);
  const rtts = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const s = process.hrtime.bigint();
      const r = await request(load, 'query-version');
      if ('err' in r) throw new Error(r.err);
      rtts.push({ at: Number(s / 1000000n), us: Number(process.hrtime.bigint() - s) / 1000 });
    }
  })();
  const next = spawnDaemon(['--state-dir', dir, '--qmp', `unix:${sock}`, '--incoming-cpr', `unix:${chan}`]);
  await waitFile(chan);
  await new Promise((r) => setTimeout(r, 300));
  const t0 = process.hrtime.bigint();
  const r = await request(c, 'cpr-handover', { channel: `unix:${chan}` });
  const cmdMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if ('err' in r) throw new Error(r.err);
  const code = await old.exited;
  const exitMs = Number(process.hrtime.bigint() - t0) / 1e6;
  await new Promise((r2) => setTimeout(r2, 300));
  running = false;
  await loop;
  const memdev = await request(c, 'query-memdev');
  const during = rtts.filter((x) => x.at >= Number(t0 / 1000000n) - 1).map((x) => x.us).sort((a, b) => a - b);
  const before = rtts.filter((x) => x.at < Number(t0 / 1000000n) - 1).map((x) => x.us).sort((a, b) => a - b);
  next.proc.kill('SIGTERM');
  await next.exited;
  fs.rmSync(dir, { recursive: true, force: true });
  return { rate, cmdMs, exitMs, code, objects: memdev.ret.length, replies: rtts.length, maxDuring: during[during.length - 1] / 1000, p50Before: percentile(before, 50) / 1000 };
}

/** A minimal service manager: NOTIFY_SOCKET with an fd store, and a listening socket. */
async function sigkillRestart() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-restart-'));
  const notifyPath = path.join(dir, 'notify');
  const listener = S.socket(S.SOCK_STREAM);
  const sock = path.join(dir, 'qmp.sock');
  S.bind(listener, sock);
  S.listen(listener, 128);
  // The daemon's own fd-store rules (src/service/notify-server.ts), as hostmemd-supervise uses them.
  const waiters = [];
  const notify = new NotifyServer(notifyPath, (text) => {
    for (const w of waiters.splice(0)) w(text);
  });
  const ready = () => new Promise((resolve) => {
    const check = (t) => (/^READY=1/m.test(t) ? resolve() : waiters.push(check));
    waiters.push(check);
  });
  const start = () => {
    const passed = [{ name: 'qmp', fd: listener }, ...notify.store];
    return spawnDaemon(['--state-dir', dir], { NOTIFY_SOCKET: notifyPath, LISTEN_FDS: String(passed.length), LISTEN_FDNAMES: passed.map((p) => p.name).join(':') }, passed.map((p) => p.fd.fd));
  };
  const tCold = process.hrtime.bigint();
  let d = start();
  await ready();
  // The reference: a cold start (empty state) to READY=1, under the same service manager.
  const coldMs = Number(process.hrtime.bigint() - tCold) / 1e6;
  const { c } = await addAll(sock);
  c.close?.();
  const stored = notify.store.length;
  const t0 = process.hrtime.bigint();
  d.proc.kill('SIGKILL');
  await d.exited;
  d = start();
  await ready();
  const readyMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const c2 = await negotiatedClient(sock);
  const cpr = (await request(c2, 'query-cpr')).ret;
  const reattached = cpr.objects.filter((o) => o.origin === 'reattached').length;
  d.proc.kill('SIGTERM');
  await d.exited;
  await notify.close();
  listener.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return { stored, readyMs, coldMs, reattached, problems: cpr.problems.length };
}

const h = await handover();
const k = await sigkillRestart();
console.log(`bench/restart: ${N} memfd backends of 1 MiB, node ${process.version}, ${os.cpus().length} CPUs`);
printTable([
  ['measure', 'value'],
  ['object-add rate while journaling (fsync per entry), objects/s', fmt(h.rate, 0)],
  ['handover: cpr-handover command time, ms', fmt(h.cmdMs)],
  ['handover: until the old process exited, ms', fmt(h.exitMs)],
  ['handover: old process exit code', h.code],
  ['handover: objects in the successor', `${h.objects}/${N}`],
  ['handover: query-version p50 before, ms', fmt(h.p50Before, 3)],
  ['handover: longest query-version round trip across it, ms', fmt(h.maxDuring)],
  ['handover: query-version replies received (none lost: the loop checks each)', h.replies],
  ['SIGKILL restart: fds in the store', `${k.stored}/${N}`],
  ['SIGKILL restart: kill to READY=1 of the new process, ms', fmt(k.readyMs)],
  ['cold start (empty state) to READY=1, ms', fmt(k.coldMs)],
  ['SIGKILL restart / cold start (goal, issue 16: <= 2)', fmt(k.readyMs / k.coldMs, 2)],
  ['SIGKILL restart: objects reattached, problems', `${k.reattached}/${N}, ${k.problems}`],
]);
writeJson(flags.json, 'restart', [
  { name: `SIGKILL to READY with ${N} backends (floor: cold start to READY)`, unit: 'ms', hostmemd: k.readyMs, floor: k.coldMs, better: 'lower' },
  { name: `handover: longest query-version round trip across it`, unit: 'ms', hostmemd: h.maxDuring, better: 'lower' },
  { name: `handover: cpr-handover command time, ${N} backends`, unit: 'ms', hostmemd: h.cmdMs, better: 'lower' },
]);
process.exit(0);
