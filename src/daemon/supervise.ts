// hostmemd-supervise: keeps guest memory across daemon crashes where there is no systemd (a
// shell, `npm start`, a container). It is a small service manager in systemd's image: it owns
// the QMP sockets and a NOTIFY_SOCKET with an fd store, starts bin/hostmemd with LISTEN_FDS,
// and when the daemon dies (crash, kill -9, missed watchdog) starts it again with the stored
// backend fds, so every acknowledged object comes back with its memory. A clean exit (quit,
// SIGTERM) ends the supervisor too, like `systemctl stop`; SIGHUP is ignored. If the supervisor itself dies
// (kill -9), the daemon gets SIGTERM from the kernel and stops; a new supervisor then takes
// over the (now stale) sockets and reports the lost memory through the journal.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { parseCli } from './cli';
import { defaultQmpPath, resolveGroup } from './socket-paths';
import { createListeningSocket } from '../transport/unix-socket';
import { NotifyServer } from '../service/notify-server';
import { SUPERVISOR_PID_ENV } from '../service/supervisor';
import { createLogger } from './logger';
import type * as native from '../native';
import { errorText } from '../errors/text';

/** Restarts faster than this many in RESTART_WINDOW_MS back off (a crash loop must not spin).
 *  $HOSTMEMD_RESTART_BURST overrides it (the crash-point test kills the daemon hundreds of
 *  times in a row). */
const RESTART_BURST = 5;
const RESTART_WINDOW_MS = 10000;
const RESTART_DELAY_MS = 100;
const BACKOFF_MS = 5000;
const KILL_AFTER_ABORT_MS = 3000;
/** The daemon pings at half this; a loop blocked for longer is aborted and restarted.
 *  $HOSTMEMD_WATCHDOG_SEC overrides it (0 turns the watchdog off). */
export const WATCHDOG_MS = 20000;

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'hostmemd');

export async function runSupervisor(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const cli = parseCli(argv, env);
  if (cli.kind === 'exit') {
    (cli.code === 0 ? process.stdout : process.stderr).write(cli.output);
    return cli.code;
  }
  const o = cli.options;
  const restartBurst = env.HOSTMEMD_RESTART_BURST !== undefined ? Number(env.HOSTMEMD_RESTART_BURST) : RESTART_BURST;
  const watchdogMs = env.HOSTMEMD_WATCHDOG_SEC !== undefined ? Number(env.HOSTMEMD_WATCHDOG_SEC) * 1000 : WATCHDOG_MS;
  const log = createLogger(o.logLevel).child({ component: 'supervise' });
  fs.mkdirSync(o.stateDir, { recursive: true, mode: 0o750 });
  const runDir = path.join(o.stateDir, 'supervise');
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const notifyPath = path.join(runDir, 'notify');

  // The QMP sockets live here, not in the daemon: clients wait in them while it restarts.
  const gid = o.socketGroup !== undefined ? resolveGroup(o.socketGroup) : undefined;
  // The default socket only when no monitor of any kind is given, as in the daemon (listen.ts).
  const paths = o.qmp.length > 0 || o.monitors.length > 0 ? o.qmp : [defaultQmpPath(o, env)];
  const listeners: { path: string; fd: native.Fd }[] = [];
  try {
    for (const p of paths) {
      fs.mkdirSync(path.dirname(p), { recursive: true });
      listeners.push({ path: p, fd: await createListeningSocket(p, o.socketMode, gid) });
    }
  } catch (e) {
    for (const l of listeners) l.fd.close();
    process.stderr.write(`hostmemd-supervise: ${errorText(e)}\n`);
    return 1;
  }
  // Only now, with the sockets ours (a live one is refused above), is a notify socket left
  // here a dead supervisor's: a second supervisor must not unlink a running one's.
  fs.rmSync(notifyPath, { force: true });

  let child: ChildProcess | undefined;
  let lastPing = Date.now();
  let ready = false;
  let everReady = false;
  const notify = new NotifyServer(notifyPath, (_text, f) => {
    if (f.get('READY') === '1') ready = everReady = true;
    if (f.get('WATCHDOG') === '1' || f.get('READY') === '1') lastPing = Date.now();
    if (f.has('STATUS')) log.info({ status: f.get('STATUS') }, 'daemon status');
  });

  const start = (): ChildProcess => {
    const passed = [...listeners.map((l, i) => ({ name: `qmp${i}`, fd: l.fd })), ...notify.store];
    ready = false;
    lastPing = Date.now();
    // LISTEN_PID must be the daemon's own pid: `exec` keeps the shell's.
    const c = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$ exec "$@"', 'sh', process.execPath, BIN, ...argv], {
      env: {
        ...env,
        NOTIFY_SOCKET: notifyPath,
        // The daemon asks for SIGTERM when we die (PR_SET_PDEATHSIG): an orphan could preserve
        // nothing and would keep the sockets from the next supervisor.
        [SUPERVISOR_PID_ENV]: String(process.pid),
        LISTEN_FDS: String(passed.length),
        LISTEN_FDNAMES: passed.map((p) => p.name).join(':'),
        ...(watchdogMs > 0 ? { WATCHDOG_USEC: String(Math.round(watchdogMs * 1000)) } : {}),
      },
      stdio: ['ignore', 'inherit', 'inherit', ...passed.map((p) => p.fd.fd)],
    });
    log.info({ pid: c.pid, fds: notify.store.length }, 'daemon started');
    return c;
  };

  const watchdog = setInterval(() => {
    if (watchdogMs > 0 && child && ready && Date.now() - lastPing > watchdogMs) {
      log.error({ pid: child.pid, limitMs: watchdogMs }, 'watchdog timeout: aborting the daemon');
      const hung = child;
      // A stopped process gets no signal but SIGKILL until it continues: abort, continue, and
      // kill it if it is still there a moment later.
      hung.kill('SIGABRT');
      hung.kill('SIGCONT');
      setTimeout(() => {
        if (hung.exitCode === null && hung.signalCode === null) hung.kill('SIGKILL');
      }, KILL_AFTER_ABORT_MS).unref();
      lastPing = Date.now();
    }
  }, Math.max(50, Math.min(1000, watchdogMs / 4)));

  let stopping = false;
  const forward = (sig: NodeJS.Signals): void => {
    stopping = true;
    log.info({ signal: sig }, 'stopping the daemon');
    child?.kill(sig);
    child?.kill('SIGCONT');
  };
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  // SIGHUP (a reload, a closed terminal) must not end us: the fd store, and with it every
  // backend's memory, lives in this process. Logged and ignored, as the daemon does.
  process.on('SIGHUP', () => log.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: the daemon and its fd store keep running (SIGTERM stops them)'));

  const restarts: number[] = [];
  let code = 0;
  for (;;) {
    child = start();
    const c = child;
    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => c.once('exit', (ec, s) => r([ec, s])));
    if (stopping || exitCode === 0) {
      code = exitCode ?? 1;
      break;
    }
    if (!everReady) {
      // It never started (a bad --object, an unusable path): restarting cannot help.
      log.error({ exitCode, signal }, 'the daemon failed to start; not restarting');
      code = exitCode ?? 1;
      break;
    }
    // A failure: keep the store, start again (systemd's Restart=on-failure).
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && now - restarts[0] > RESTART_WINDOW_MS) restarts.shift();
    const wait = restarts.length > restartBurst ? BACKOFF_MS : RESTART_DELAY_MS;
    log.warn({ exitCode, signal, fds: notify.store.length, restartInMs: wait }, 'daemon died; restarting with its stored fds');
    await new Promise((r) => setTimeout(r, wait));
    if (stopping) break;
  }
  clearInterval(watchdog);
  await notify.close();
  for (const l of listeners) {
    l.fd.close();
    fs.rmSync(l.path, { force: true });
  }
  fs.rmSync(runDir, { recursive: true, force: true });
  log.info({ code }, 'stopped');
  return code;
}
