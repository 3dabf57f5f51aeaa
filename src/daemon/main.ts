// Composition root: the Daemon and its phases, in order: assemble (every part, wired through
// the event bus, each resource registering how it lets go), restore (--object, the journal, a
// handover's takeover), listen (QMP sockets, web), ready (sd_notify), and stop(mode) — one
// teardown path for a shutdown, a handover and a failed start. The only module that puts real
// parts together.
import { CRASH_FILE_ENV, installCrashHook } from './crash-hook';
import * as fs from 'node:fs';
import * as native from '../native';
import { HandoverSender, IncomingStart, receiveHandoverStart } from '../handover/handover';
import { SdNotifier, ListenFds, takeListenFds } from '../service/sd-notify';
import { Supervisor, followSupervisor } from '../service/supervisor';
import { Monitor } from '../qmp/monitor';
import { UnixQmpServer } from '../transport/unix-socket';
import { errorText } from '../errors/text';
import { PACKAGE_STRING } from '../version';
import { DaemonOptions } from './cli';
import { createLogger, Logger } from './logger';
import { EventBus, ShutdownReason } from './event-bus';
import { StopMode, Teardown } from './teardown';
import { Parts, assemble } from './assemble';
import { restore } from './restore';
import { listen } from './listen';
import { observe } from './observe';
import { memPathAllowList } from './mem-path-allow';
// The web stack (fastify, ws, prom-client) is loaded only with --ws: it costs ~120 ms of start.
import type { WebServer } from '../web/server';
import type { DaemonMetrics } from '../web/metrics';

type WebModules = { server: typeof import('../web/server'); metrics: typeof import('../web/metrics') };

/** What a start brings in before assembly: the web modules, fds passed by systemd, and the
 *  backend fds of a handover's predecessor. */
interface Inputs {
  web?: WebModules;
  passed: ListenFds;
  incoming?: IncomingStart;
  /** Directories mem-path may lie in (mem-path-allow.ts). */
  memPathAllow: readonly string[];
}

export class Daemon {
  readonly bus = new EventBus();
  readonly monitor: Monitor;
  readonly stopped: Promise<void>;
  socketPaths: readonly string[] = [];
  web?: WebServer;
  private readonly teardown: Teardown;
  private readonly notifier: SdNotifier;
  private readonly parts: Parts;
  private readonly metrics?: DaemonMetrics;
  /** The QMP listeners, filled by listen(); a handover passes them on. */
  private readonly servers: UnixQmpServer[] = [];
  private readonly handover: HandoverSender;
  private shutdownEventSent = false;
  /** While the journal's objects come back: one log line for all of them, not one each. */
  private journalRestoring = false;
  private stopping?: Promise<void>;
  private resolveStopped!: () => void;

  /** Phase 1, assemble. */
  constructor(
    private readonly options: DaemonOptions,
    readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv,
    private readonly inputs: Inputs,
  ) {
    this.stopped = new Promise<void>((r) => (this.resolveStopped = r));
    this.teardown = new Teardown(logger);
    this.notifier = SdNotifier.fromEnv(env);
    this.teardown.add('sd_notify', () => this.notifier.close());
    const parts = assemble({
      options,
      logger,
      bus: this.bus,
      teardown: this.teardown,
      notifier: this.notifier,
      memPathAllow: inputs.memPathAllow,
      handover: (ch, ms) => this.handover.prepare(ch, ms),
    });
    this.parts = parts;
    this.monitor = parts.monitor;
    adoptPassedFds(parts, inputs, logger);
    this.handover = new HandoverSender({
      monitor: parts.monitor,
      fds: parts.fds,
      servers: () => this.servers,
      stateDir: options.stateDir,
      privateBackends: () => [...parts.objects.list()].filter((o) => o.keeping()?.preservable === false).map((o) => o.name),
      logger,
      finish: (successor) => void this.stop('handed-over', { successor }),
    });
    this.metrics = inputs.web?.metrics.createMetrics({
      backends: parts.backends,
      commands: parts.schemaCommands,
      preallocsRunning: () => parts.preallocs.running.size,
      limits: () => ({ objects: options.maxObjects, backendBytes: options.maxBackendBytes, clients: options.maxClients }),
      journalDegraded: () => parts.journal.health().degraded,
    });
    observe(this.bus, { monitor: parts.monitor, logger, metrics: this.metrics, restoring: () => this.journalRestoring });
    this.bus.on('shutdown-requested', (reason) => {
      // QEMU's order: the SHUTDOWN event, then quit's reply, then EOF.
      this.shutdownEventSent = true;
      setImmediate(() => void this.shutdown(reason));
    });
  }

  /** Phases 2 and 3: restore the objects, then listen. */
  async restoreAndListen(): Promise<void> {
    const { options, parts, inputs } = this;
    const takeover = await restore(parts, options.objects, inputs.incoming, this.logger, (running) => (this.journalRestoring = running));
    const web = inputs.web && this.metrics ? { mod: inputs.web.server, metrics: this.metrics } : undefined;
    const l = await listen({ options, env: this.env, parts, bus: this.bus, teardown: this.teardown, logger: this.logger, activated: inputs.passed.listeners, incoming: inputs.incoming, takeover, web, servers: this.servers });
    this.socketPaths = l.paths;
    this.web = l.web;
  }

  /** Phase 4: validators compiled in the background, the service manager told. */
  announceReady(): void {
    const { parts, notifier, logger } = this;
    // One small step per event-loop turn so that clients connecting now are greeted in
    // between; a command arriving first compiles its own. Stops when the stop begins.
    const steps = [...parts.warmUpSteps];
    const warmUp = (): void => {
      if (this.stopping || steps.length === 0) return;
      if (!steps[0]()) steps.shift();
      setImmediate(warmUp).unref();
    };
    setImmediate(warmUp).unref();
    try {
      notifier.ready(`serving QMP on ${this.socketPaths.join(', ')}; ${parts.objects.usage.objects} objects`);
      const ms = notifier.startWatchdog((err) => logger.error({ err }, 'sd_notify WATCHDOG failed'));
      if (ms !== undefined) logger.info({ intervalMs: ms }, 'systemd watchdog pings enabled');
    } catch (err) {
      logger.error({ err }, 'sd_notify READY failed');
    }
    logger.info(
      { sockets: this.socketPaths, version: PACKAGE_STRING, kvm: parts.kvm.facts.enabled, commands: parts.schemaCommands.length, memPathAllow: this.inputs.memPathAllow },
      'hostmemd ready',
    );
  }

  /** An orderly shutdown (signal, quit): objects stay journaled, memory in the fd store. */
  shutdown(reason: ShutdownReason): Promise<void> {
    return this.stop('exit', { reason });
  }

  /** The one way out, whatever the mode (see StopMode); later calls get the first's promise. */
  stop(mode: StopMode, why: { reason?: ShutdownReason; successor?: number } = {}): Promise<void> {
    this.stopping ??= (async () => {
      const { monitor, objects } = this.parts;
      if (mode === 'exit') {
        this.logger.info({ reason: why.reason }, 'shutting down');
        for (const s of this.servers) s.stopAccepting();
        this.web?.stopAccepting();
        if (!this.shutdownEventSent) monitor.emitEvent('SHUTDOWN', { guest: false, reason: why.reason ?? 'host-signal' });
        await monitor.whenIdle(); // in-flight commands finish and are answered
        monitor.closeAll();
        try {
          this.notifier.stopping(`stopping (${why.reason}); ${objects.usage.objects} objects kept in the journal`);
        } catch (err) {
          this.logger.error({ err }, 'sd_notify STOPPING failed');
        }
      } else if (mode === 'handed-over') {
        this.logger.info({ successor: why.successor }, 'exiting after handover; memory and objects live on in the successor');
        monitor.closeAll(); // only sessions that could not move (WebSocket) are left
      }
      await this.teardown.run(mode);
      if (mode === 'exit') this.logger.info('stopped');
      this.logger.flush();
      this.resolveStopped();
    })();
    return this.stopping;
  }
}

/** Fds passed at start (systemd's store, a predecessor's) wait in the registry for their
 *  backends; systemd 252 lists the newest entry of a name first: that one is kept. */
function adoptPassedFds(parts: Parts, inputs: Inputs, logger: Logger): void {
  const seen = new Set<string>();
  for (const s of inputs.passed.stored) {
    if (seen.has(s.name)) {
      logger.warn({ name: s.name }, 'passed fd: a second fd of this name was closed');
      s.fd.close();
      continue;
    }
    seen.add(s.name);
    parts.fds.adopt(s.name, s.fd, true);
  }
  for (const f of inputs.incoming?.fds ?? []) parts.fds.adopt(f.name, f.fd);
  if (inputs.incoming) logger.info({ from: inputs.incoming.fromPid, fds: inputs.incoming.fds.length }, 'handover: backend fds received');
}

/** Every fd-backed backend holds one fd: raise the soft RLIMIT_NOFILE to the hard limit. */
function raiseFdLimit(logger: Logger): void {
  try {
    const lim = native.getrlimit(native.RLIMIT_NOFILE);
    if (lim.cur < lim.max) {
      native.setrlimit(native.RLIMIT_NOFILE, { cur: lim.max, max: lim.max });
      logger.info({ from: Number(lim.cur), to: Number(lim.max) }, 'raised the open-file soft limit to the hard limit');
    }
  } catch (err) {
    logger.warn({ err }, 'could not raise the open-file limit');
  }
}

/** Starts a daemon through its phases; a failure in any of them stops it again, leaving the
 *  memory where it was preserved. */
export async function startDaemon(options: DaemonOptions, logger: Logger = createLogger(options.logLevel), env: NodeJS.ProcessEnv = process.env): Promise<Daemon> {
  const web = options.ws ? { server: await import('../web/server'), metrics: await import('../web/metrics') } : undefined;
  // A --ws that may not bind is refused before anything is allocated.
  const wsRefusal = options.ws && web!.server.remoteBindRefusal(options.ws.host, options.ws.port, options.wsAllowRemote);
  if (wsRefusal) throw new Error(wsRefusal);
  try {
    fs.mkdirSync(options.stateDir, { recursive: true, mode: 0o750 });
  } catch (err) {
    // Serving comes first: the journal reports itself degraded and refuses new objects.
    logger.error({ err, stateDir: options.stateDir }, 'could not create the state directory');
  }
  const memPathAllow = memPathAllowList(options.memPathAllow, options.stateDir, logger);
  raiseFdLimit(logger);
  // systemd: fds passed at start (listening sockets, stored backend fds).
  const passed = takeListenFds(env);
  for (const p of passed.problems) logger.warn({}, `passed fd: ${p}`);
  // --incoming-cpr: wait for the running daemon and take its backend fds first.
  const incoming = options.incomingCpr ? await receiveHandoverStart(options.incomingCpr, options.stateDir, logger) : undefined;
  const daemon = new Daemon(options, logger, env, { web, passed, incoming, memPathAllow });
  try {
    await daemon.restoreAndListen();
  } catch (e) {
    await daemon.stop('failed-start');
    throw e;
  }
  daemon.announceReady();
  return daemon;
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
  const logger = createLogger(cli.options.logLevel);
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
    return await serve(cli.options, logger);
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

async function serve(options: DaemonOptions, logger: Logger): Promise<number> {
  if (options.name !== undefined) logger.info({ name: options.name }, '-name: recorded (hostmemd has no guest to name)');
  if (options.startPaused) logger.info('-S: hostmemd has no vCPUs to hold; it serves at once');
  // Under hostmemd-supervise: SIGTERM when it dies, and if it already has, no start at all (an
  // orphan could preserve nothing and would hold its sockets from the next supervisor).
  let supervisor: Supervisor | undefined;
  try {
    supervisor = followSupervisor(process.env);
  } catch (err) {
    logger.warn({ err }, 'cannot arrange to stop with hostmemd-supervise (prctl PR_SET_PDEATHSIG)');
  }
  if (supervisor && !supervisor.alive()) {
    process.stderr.write(`hostmemd: hostmemd-supervise (pid ${supervisor.pid}) is gone; not starting without it\n`);
    return 1;
  }
  // QEMU stops on SIGHUP as on SIGTERM; here a stop can drop memory (when nothing keeps the
  // fds), and SIGHUP usually means "reload" or a closed terminal: logged and ignored, from the
  // start on. There is no configuration to reload, and the log is a stream: nothing to reopen.
  process.on('SIGHUP', () => logger.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: hostmemd keeps running with its objects and memory (SIGTERM or quit stops it)'));
  if (installCrashHook(process.env)) logger.warn({ env: CRASH_FILE_ENV }, 'crash-point test hook installed: this daemon kills itself at the step its file names');
  let daemon: Daemon;
  try {
    daemon = await startDaemon(options, logger);
  } catch (e) {
    process.stderr.write(`hostmemd: ${errorText(e)}\n`);
    return 1;
  }
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
