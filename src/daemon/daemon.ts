// Composition root: the Daemon and its phases, in order: assemble (every part, wired through
// the event bus, each resource registering how it lets go), restore (--object, the journal, a
// handover's takeover), listen (QMP sockets, web), ready (sd_notify), and stop(mode) — one
// teardown path for a shutdown, a handover and a failed start. The only module that puts real
// parts together. main.ts loads it after the QMP sockets greet (early.ts), when they can.
import * as fs from 'node:fs';
import * as native from '../native';
import { HandoverSender, IncomingStart, receiveHandoverStart } from '../handover/handover';
import { SdNotifier, ListenFds, takeListenFds } from '../service/sd-notify';
import { Monitor } from '../qmp/monitor';
import { UnixQmpServer } from '../transport/unix-socket';
import { PACKAGE_STRING } from '../version';
import { DaemonOptions } from './cli';
import type { Logger } from './logger';
import { EventBus, ShutdownReason } from './event-bus';
import { StopMode, Teardown } from './teardown';
import { Parts, assemble } from './assemble';
import { restore } from './restore';
import { listen } from './listen';
import { observe } from './observe';
import type { EarlyStart } from './early';
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
  /** The sockets greet already (early.ts): its bus, teardown, monitor and servers are used. */
  early?: EarlyStart;
}

export class Daemon {
  readonly bus: EventBus;
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
    const early = inputs.early;
    early?.setLog(logger);
    this.bus = early?.bus ?? new EventBus();
    this.teardown = early?.teardown ?? new Teardown(logger);
    if (early) this.servers.push(...early.servers);
    this.notifier = SdNotifier.fromEnv(env);
    this.teardown.add('sd_notify', () => this.notifier.close());
    const parts = assemble({
      options,
      logger,
      bus: this.bus,
      teardown: this.teardown,
      notifier: this.notifier,
      memPathAllow: inputs.memPathAllow,
      monitor: early?.monitor,
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
    const l = await listen({ options, env: this.env, parts, bus: this.bus, teardown: this.teardown, logger: this.logger, activated: inputs.passed.listeners, incoming: inputs.incoming, takeover, web, servers: this.servers, early: inputs.early });
    this.socketPaths = l.paths;
    this.web = l.web;
    // Clients greeted early: their commands run now, in the order they came.
    if (inputs.early) parts.monitor.serve(parts.dispatcher);
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

/** Runs a daemon through its phases (main.ts's startDaemon, after the early step if any); a
 *  failure in any of them stops it again, leaving the memory where it was preserved. */
export async function startServing(options: DaemonOptions, logger: Logger, env: NodeJS.ProcessEnv, early?: EarlyStart): Promise<Daemon> {
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
  const passed = early?.passed ?? takeListenFds(env);
  for (const p of passed.problems) logger.warn({}, `passed fd: ${p}`);
  // --incoming-cpr: wait for the running daemon and take its backend fds first.
  const incoming = options.incomingCpr ? await receiveHandoverStart(options.incomingCpr, options.stateDir, logger) : undefined;
  const daemon = new Daemon(options, logger, env, { web, passed, incoming, memPathAllow, early });
  try {
    await daemon.restoreAndListen();
  } catch (e) {
    await daemon.stop('failed-start');
    throw e;
  }
  daemon.announceReady();
  return daemon;
}
