// Entry of bin/hostmemd: the command line, the pid file, signals, and the start itself. Light
// on purpose (issue 16): when the start may greet first (early.ts), the QMP sockets listen and
// greet before the rest of the daemon (daemon.ts: pino, the schema, ajv, QOM, backends, the
// journal) is loaded, a part per event-loop turn so that greetings go out in between; commands
// wait until the objects are restored. Everything else is the Daemon's (daemon.ts).
import * as fs from 'node:fs';
import * as native from '../native';
import { CRASH_FILE_ENV, installCrashHook } from './crash-hook';
import { Supervisor, followSupervisor } from '../service/supervisor';
import { errorText } from '../errors/text';
import { greetsEarly, listenEarly } from './early';
import type { DaemonOptions } from './cli';
import type { Logger } from './logger';
import type { Daemon } from './daemon';

export type { Daemon } from './daemon';

/** What the rest of a start loads, one part per turn of the event loop after the sockets
 *  listen: each part is ~5-20 ms of module evaluation, so a client connecting meanwhile is
 *  greeted within one part, not after all of them. Leaves first (each loads what it imports
 *  that is not loaded yet). */
const LOAD_STEPS: (() => Promise<unknown>)[] = [
  () => import('./logger'),
  () => import('../qapi/validate'),
  () => import('./schema-cache'),
  () => import('../qom/user-creatable'),
  () => import('../backends'),
  () => import('../journal/object-journal'),
  () => import('../commands/hmp'),
  () => import('../handover/handover'),
  () => import('./assemble'),
  () => import('./daemon'),
];

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Loads every part (bin/hostmemd --write-code-cache: the V8 code cache then holds them all,
 *  so the rest of a start compiles little as well). */
export async function loadAllParts(): Promise<void> {
  for (const load of LOAD_STEPS) await load();
}

/** Starts a daemon: the early step when it can (early.ts), then the rest (daemon.ts). Without
 *  `logger`, one is made after the sockets listen (pino is ~30 ms of loading). */
export async function startDaemon(options: DaemonOptions, logger?: Logger, env: NodeJS.ProcessEnv = process.env): Promise<Daemon> {
  const early = greetsEarly(options) ? await listenEarly(options, env) : undefined;
  try {
    if (early) {
      for (const load of LOAD_STEPS) {
        await nextTurn();
        await load();
      }
      await nextTurn();
    }
    logger ??= (await import('./logger')).createLogger(options.logLevel);
    const { startServing } = await import('./daemon');
    return await startServing(options, logger, env, early);
  } catch (e) {
    await early?.teardown.run('failed-start');
    if (logger) await flushLog(logger);
    throw e;
  }
}

/** How long a failed start waits for the log lines already queued to reach stderr. */
const LOG_FLUSH_MS = 1000;

/** Waits (bounded) until the log lines written so far have reached stderr: a failed start's
 *  message must be the last line there, as QEMU's is, and the log is written asynchronously. */
async function flushLog(logger: Logger): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, LOG_FLUSH_MS);
    logger.flush(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Entry used by bin/hostmemd: parse, start, handle signals, exit with a status. */
export async function runFromCommandLine(argv: readonly string[]): Promise<number> {
  const { parseCli } = await import('./cli');
  const cli = parseCli(argv, process.env);
  if (cli.kind === 'exit') {
    (cli.code === 0 ? process.stdout : process.stderr).write(cli.output);
    return cli.code;
  }
  for (const line of cli.warnings) process.stderr.write(line + '\n');
  // -pidfile: written before anything starts, as QEMU does, and removed at exit.
  const pidfile = cli.options.pidfile;
  if (pidfile !== undefined) {
    try {
      writePidfile(pidfile);
    } catch (e) {
      process.stderr.write(`hostmemd: cannot create PID file: ${errorText(e)}\n`);
      return 1;
    }
  }
  try {
    return await serve(cli.options);
  } finally {
    if (pidfile !== undefined) removePidfile(pidfile);
  }
}

/** Writes `<pid>\n` (mode 0600), as QEMU's -pidfile does. Unlike QEMU's, the file is not
 *  locked: a second daemon given the same file overwrites it. */
function writePidfile(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o600);
  } catch (e) {
    throw new Error(`Cannot open pid file: ${native.strerror(Math.abs((e as NodeJS.ErrnoException).errno ?? 0))}`);
  }
  try {
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`);
  } catch (e) {
    throw new Error(`Failed to write PID file: ${native.strerror(Math.abs((e as NodeJS.ErrnoException).errno ?? 0))}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Removes the pid file if it is still this process's. */
function removePidfile(file: string): void {
  try {
    if (fs.readFileSync(file, 'utf8') === `${process.pid}\n`) fs.unlinkSync(file);
  } catch {
    /* gone already */
  }
}

async function serve(options: DaemonOptions): Promise<number> {
  // Under hostmemd-supervise: SIGTERM when it dies, and if it already has, no start at all (an
  // orphan could preserve nothing and would hold its sockets from the next supervisor).
  let supervisor: Supervisor | undefined;
  let supervisorError: unknown;
  try {
    supervisor = followSupervisor(process.env);
  } catch (err) {
    supervisorError = err;
  }
  if (supervisor && !supervisor.alive()) {
    process.stderr.write(`hostmemd: hostmemd-supervise (pid ${supervisor.pid}) is gone; not starting without it\n`);
    return 1;
  }
  // QEMU stops on SIGHUP as on SIGTERM; here a stop can drop memory (when nothing keeps the
  // fds), and SIGHUP usually means "reload" or a closed terminal: logged and ignored, from the
  // start on. There is no configuration to reload, and the log is a stream: nothing to reopen.
  const log: { current?: Logger } = {};
  process.on('SIGHUP', () => log.current?.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: hostmemd keeps running with its objects and memory (SIGTERM or quit stops it)'));
  const crashHook = installCrashHook(process.env);
  let daemon: Daemon;
  try {
    daemon = await startDaemon(options);
  } catch (e) {
    process.stderr.write(`hostmemd: ${errorText(e)}\n`);
    return 1;
  }
  // Said once there is a logger (it is made after the sockets listen).
  const logger = (log.current = daemon.logger);
  if (options.name !== undefined) logger.info({ name: options.name }, '-name: recorded (hostmemd has no guest to name)');
  if (options.startPaused) logger.info('-S: hostmemd has no vCPUs to hold; it serves at once');
  if (supervisorError !== undefined) logger.warn({ err: supervisorError }, 'cannot arrange to stop with hostmemd-supervise (prctl PR_SET_PDEATHSIG)');
  if (crashHook) logger.warn({ env: CRASH_FILE_ENV }, 'crash-point test hook installed: this daemon kills itself at the step its file names');
  const onSignal = (sig: NodeJS.Signals): void => {
    logger.info({ signal: sig }, 'signal received');
    if (supervisor && !supervisor.alive()) {
      logger.error({ supervisor: supervisor.pid }, 'hostmemd-supervise is gone, and with it the fd store: stopping (the journal reports the memory that is lost)');
    }
    void daemon.shutdown('host-signal');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Running until stopped, even with nothing else left to wait for: a monitor whose peer went
  // away (an fd or connected-out monitor) leaves no socket, and QEMU keeps running then too.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await daemon.stopped;
  clearInterval(keepAlive);
  return 0;
}
