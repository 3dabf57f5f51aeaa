// Composition root: loads the QAPI schema, builds the validator and the command table, wires
// handlers, the monitor and the transports, and owns the daemon's lifecycle (signals, clean
// shutdown). The only module that puts real parts together.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSchemaCached } from './schema-cache';
import { buildCommandTable } from '../qapi/command-table';
import { buildIntrospection } from '../qapi/introspect';
import { ArgValidator } from '../qapi/validate';
import { encodeJson } from '../json/writer';
import { JsonValue } from '../json/value';
import { Dispatcher, DispatchCommand } from '../qmp/dispatcher';
import { Monitor } from '../qmp/monitor';
import { Handler } from '../qmp/messages';
import { UnixQmpServer } from '../transport/unix-socket';
import { controlHandlers } from '../commands/control';
import { accelHandlers } from '../commands/accel';
import { qomHandlers } from '../commands/qom';
import { cprHandlers } from '../commands/cpr';
import { KvmAccelerator, KvmProbe } from '../accel/kvm';
import { TypeRegistry, registerBaseTypes } from '../qom/object';
import { ObjectTree } from '../qom/tree';
import { ObjectManager } from '../qom/user-creatable';
import { registerBackendTypes, PreallocTracker, HostMemoryBackend } from '../backends';
import { FdRegistry } from '../cpr/fd-registry';
import { Journal } from '../cpr/journal';
import { ObjectJournal } from '../cpr/object-journal';
import { SdNotifier, takeListenFds, validFdName } from '../cpr/sd-notify';
import { HandoverSender, IncomingStart, IncomingTakeover, confirmHandover, receiveHandoverStart, receiveHandoverTakeover } from './handover';
import * as os from 'node:os';
import * as native from '../native';
import { PACKAGE_STRING, QEMU_LEVEL } from '../version';
import { CONFIG_SYMBOLS, SCHEMA_MAIN } from './config';
import { DaemonOptions } from './cli';
import { parseObjectOpt } from './object-opt';
import { defaultQmpPath, resolveGroup } from './socket-paths';
import { toQmpError } from '../errors/to-qmp';
import { createLogger, Logger } from './logger';
// The web stack (fastify, ws, prom-client) is loaded only with --ws: it costs ~120 ms of start.
import type { CapsView, WebServer } from '../web/server';
import type { DaemonMetrics } from '../web/metrics';

export interface Daemon {
  readonly monitor: Monitor;
  readonly socketPaths: string[];
  /** The web endpoint (console, /qmp WebSocket, /metrics) when --ws is given. */
  readonly web?: WebServer;
  readonly logger: Logger;
  /** Resolves when the daemon has shut down. */
  readonly stopped: Promise<void>;
  shutdown(reason: 'host-qmp-quit' | 'host-signal'): Promise<void>;
}

/** Every fd-backed backend holds one fd: raise the soft RLIMIT_NOFILE to the hard limit. */
function raiseFdLimit(logger: Logger): void {
  try {
    const lim = native.getrlimit(native.RLIMIT_NOFILE);
    if (lim.cur < lim.max) {
      native.setrlimit(native.RLIMIT_NOFILE, { cur: lim.max, max: lim.max });
      logger.info({ from: Number(lim.cur), to: Number(lim.max) }, 'raised the open-file soft limit to the hard limit');
    }
  } catch (e) {
    logger.warn({ err: e }, 'could not raise the open-file limit');
  }
}

export async function startDaemon(options: DaemonOptions, logger: Logger = createLogger(options.logLevel), env: NodeJS.ProcessEnv = process.env): Promise<Daemon> {
  const webMod = options.ws ? await import('../web/server') : undefined;
  const metricsMod = options.ws ? await import('../web/metrics') : undefined;
  // A --ws that may not bind is refused before anything is allocated.
  const wsRefusal = options.ws && webMod!.remoteBindRefusal(options.ws.host, options.ws.port, options.wsAllowRemote);
  if (wsRefusal) throw new Error(wsRefusal);
  fs.mkdirSync(options.stateDir, { recursive: true, mode: 0o750 });
  raiseFdLimit(logger);
  // systemd: fds passed at start (listening sockets, stored backend fds) and the notify socket.
  const passed = takeListenFds(env);
  for (const p of passed.problems) logger.warn({}, `passed fd: ${p}`);
  const notifier = SdNotifier.fromEnv(env);
  const notifyError = (what: string) => (e: unknown): void => logger.error({ err: e }, `sd_notify ${what} failed`);

  // The interface, from qapi/: validators compiled once here, not per call.
  // Precomputed by the build (dist/qapi-model.json) when fresh, else parsed from qapi/.
  const model = loadSchemaCached(SCHEMA_MAIN);
  const table = buildCommandTable(model, CONFIG_SYMBOLS);
  const validator = new ArgValidator(model, CONFIG_SYMBOLS, false);
  const schemaJson = encodeJson(buildIntrospection(model, CONFIG_SYMBOLS) as unknown as JsonValue, { qdictOrder: true });

  const version = { qemu: { ...QEMU_LEVEL }, package: PACKAGE_STRING };
  let daemon: Daemon | undefined;
  let shutdownEventSent = false;
  const handlers = new Map<string, Handler>();
  const implemented = (): string[] => table.filter((c) => handlers.has(c.name)).map((c) => c.name);
  const add = (m: Map<string, Handler>): void => m.forEach((h, n) => handlers.set(n, h));
  const commandNames: string[] = [];
  add(
    controlHandlers({
      version,
      commandNames,
      schemaJson,
      requestShutdown: (reason) => {
        // QEMU's order: the SHUTDOWN event, then quit's reply, then EOF.
        monitorRef?.emitEvent('SHUTDOWN', { guest: false, reason });
        shutdownEventSent = true;
        setImmediate(() => void daemon?.shutdown(reason));
      },
    }),
  );
  const kvm = options.accel === 'kvm' ? KvmAccelerator.open(options.kvmProbeOverride as Partial<KvmProbe>) : KvmAccelerator.disabled('--accel none');
  if (kvm.facts.unavailable) logger.warn({ reason: kvm.facts.unavailable }, 'guest_memfd backends unavailable');
  const preallocs = new PreallocTracker();
  // Every backend fd goes to systemd's fd store as soon as it exists (before the reply), and
  // leaves it on object-del; a restarted daemon gets them back by name.
  const fds = new FdRegistry(
    notifier.enabled
      ? {
          saved: (name, fd, preserve) => {
            // A private mapping's pages are not in its fd: storing the fd would keep nothing.
            if (!preserve) return;
            if (!validFdName(name)) throw new Error(`'${name}' cannot name an fd in systemd's fd store`);
            notifier.storeFd(name, fd);
          },
          removed: (name) => {
            try {
              notifier.removeFd(name);
            } catch (e) {
              notifyError('FDSTOREREMOVE')(e);
            }
          },
        }
      : {},
  );
  const seenStored = new Set<string>();
  for (const s of passed.stored) {
    // systemd 252 lists the newest entry of a name first: keep that one.
    if (seenStored.has(s.name)) {
      logger.warn({ name: s.name }, 'passed fd: a second fd of this name was closed');
      s.fd.close();
      continue;
    }
    seenStored.add(s.name);
    fds.adopt(s.name, s.fd);
  }
  // --incoming-cpr: wait for the running daemon and take its backend fds first.
  let incoming: IncomingStart | undefined;
  if (options.incomingCpr) {
    try {
      incoming = await receiveHandoverStart(options.incomingCpr, options.stateDir, logger);
    } catch (e) {
      kvm.close();
      throw e;
    }
    for (const f of incoming.fds) fds.adopt(f.name, f.fd);
    logger.info({ from: incoming.fromPid, fds: incoming.fds.length }, 'handover: backend fds received');
  }
  const types = new TypeRegistry();
  registerBaseTypes(types);
  const tree = new ObjectTree(types);
  registerBackendTypes(types, {
    preallocs,
    fds,
    cpuCount: () => os.availableParallelism(),
    resolvePath: (p) => {
      const r = tree.resolve(p);
      return r.kind === 'found' ? { typeName: r.obj.typeName } : r.kind;
    },
    createGuestMemfd: (size) => kvm.createSharedGuestMemfd(size),
  });
  let monitorRef: Monitor | undefined;
  let cprRef: ObjectJournal | undefined;
  let serversRef: UnixQmpServer[] = [];
  let finishHandover: ((successor: number) => void) | undefined;
  // Web metrics (only with --ws): fed by the hooks below, read at scrape time.
  const backends = (): HostMemoryBackend[] => [...objects.list()].filter((o): o is HostMemoryBackend => o instanceof HostMemoryBackend);
  const metrics: DaemonMetrics | undefined = metricsMod ? metricsMod.createMetrics({
        backends,
        commands: table.map((c) => c.name),
        preallocsRunning: () => preallocs.running.size,
        limits: () => ({ objects: options.maxObjects, backendBytes: options.maxBackendBytes, clients: options.maxClients }),
      }) : undefined;
  if (metrics) preallocs.onProgress = (e) => metrics.preallocProgress(e);
  const objects = new ObjectManager(tree, {
    added: (o) => {
      metrics?.objectAdded(o.typeName);
      logger.info({ id: o.name, type: o.typeName }, 'object added');
      monitorRef?.emitEvent('OBJECT_ADDED', { id: o.name, 'qom-type': o.typeName, path: o.canonicalPath() });
    },
    deleted: (o) => {
      metrics?.objectDeleted(o.typeName);
      cprRef?.forget(o.name);
      logger.info({ id: o.name, type: o.typeName }, 'object deleted');
      monitorRef?.emitEvent('OBJECT_DELETED', { id: o.name, 'qom-type': o.typeName, path: `/objects/${o.name}` });
    },
  }, { maxObjects: options.maxObjects, maxBytes: options.maxBackendBytes });
  const journal = new Journal(options.stateDir);
  const cpr = new ObjectJournal(journal, logger);
  objects.persistence = cpr;
  cprRef = cpr;
  add(accelHandlers({ kvm: kvm.facts, preallocs: () => preallocs.list() }));
  const handover = new HandoverSender({
    monitor: { freezeAll: (...a) => monitorRef!.freezeAll(...a), thawAll: () => monitorRef!.thawAll(), handoverSessions: () => monitorRef!.handoverSessions() },
    fds,
    servers: () => serversRef,
    stateDir: options.stateDir,
    privateBackends: () => backends().filter((b) => !b.share).map((b) => b.name),
    logger,
    finish: (pid) => finishHandover?.(pid),
  });
  add(cprHandlers({ journalDir: journal.dir, fdStore: notifier.enabled, objects: () => objects.list(), cpr, handover: (ch, ms) => handover.prepare(ch, ms) }));
  add(qomHandlers(tree, objects));
  commandNames.push(...implemented());

  const commands = new Map<string, DispatchCommand>();
  for (const c of table) commands.set(c.name, { name: c.name, allowOob: c.allowOob, handler: handlers.get(c.name) });
  const dispatcher = new Dispatcher(commands, validator, {
    onCommand: (command, ctx, error, startNs) => {
      const ms = Number(process.hrtime.bigint() - startNs) / 1e6;
      metrics?.commandDone(command, error?.class, startNs);
      if (error) logger.warn({ client: ctx.session.clientId, command, outcome: error.class, desc: error.desc, ms }, 'command failed');
      else if (logger.isLevelEnabled('debug')) logger.debug({ client: ctx.session.clientId, command, outcome: 'ok', ms }, 'command');
    },
    onUnexpected: (e, command) => logger.error({ err: e, command }, 'unexpected error in command'),
  });
  const monitor = new Monitor({ dispatcher, version, maxClients: options.maxClients });
  monitorRef = monitor;

  // --object: created before any client can connect; a bad one stops the start.
  const seen = new Set<string>();
  let takeover: IncomingTakeover | undefined;
  try {
    for (const arg of options.objects) {
      const fail = (msg: string): never => {
        throw new Error(`-object ${arg}: ${msg}`);
      };
      let parsed: ReturnType<typeof parseObjectOpt>;
      try {
        parsed = parseObjectOpt(arg, model, CONFIG_SYMBOLS);
      } catch (e) {
        return fail(e instanceof Error ? e.message : String(e));
      }
      for (const w of parsed.warnings) logger.warn({ object: arg }, w);
      const checked = validator.validate('object-add', parsed.args);
      if (!checked.ok) fail(checked.desc);
      const args = (checked as { value: Record<string, JsonValue> }).value;
      if (seen.has(args.id as string)) fail(`Duplicate ID '${String(args.id)}' for object`);
      seen.add(args.id as string);
      try {
        cpr.noteCreated(await objects.add(args, { persist: false }));
      } catch (e) {
        fail(toQmpError(e).desc);
      }
    }
    // Then the journaled objects of earlier runs, reattaching preserved memory.
    const restored = await cpr.restore(objects, fds, validator, seen, { readOnly: incoming !== undefined });
    if (restored > 0 || cpr.problems.length > 0) logger.info({ restored, problems: cpr.problems.length }, 'objects restored from the state journal');
    if (incoming) {
      // Take over only if every object came back with its memory; else the old one goes on.
      const lost = [...cpr.problems.map((p) => (p.id !== undefined ? `object '${p.id}': ${p.problem}` : p.problem)), ...[...objects.list()].filter((o) => cpr.origin(o.name).origin === 'recreated-empty').map((o) => `object '${o.name}': ${cpr.origin(o.name).reason}`)];
      takeover = await receiveHandoverTakeover(incoming, lost.length > 0 ? `the new hostmemd could not take every object: ${lost[0]}` : undefined);
    }
  } catch (e) {
    if (incoming && !takeover) await receiveHandoverTakeover(incoming, e instanceof Error ? e.message : String(e)).catch(() => undefined);
    fds.hooks = {}; // a failed start must not empty the fd store
    objects.releaseAll();
    kvm.close();
    throw e;
  }

  // Socket activation: the passed listening sockets replace the default socket (--qmp adds more).
  const activated = passed.listeners.map((l) => ({ path: native.sockets.localPath(l.fd) || `fd:${l.name}`, fd: l.fd.fd }));
  // Handover: the old daemon's sockets (its --qmp paths are not bound again).
  const handed = (takeover?.listeners ?? []).map((l) => ({ path: l.path, fd: l.fd.fd, unlinkOnClose: true }));
  const listens: { path: string; fd?: number; unlinkOnClose?: boolean }[] = [
    ...activated,
    ...handed,
    // A --qmp path already served by a passed socket is that socket (no second bind).
    ...options.qmp.filter((p) => ![...activated, ...handed].some((h) => path.resolve(h.path) === path.resolve(p))).map((p) => ({ path: p })),
  ];
  if (listens.length === 0) listens.push({ path: defaultQmpPath(options, env) });
  const paths = listens.map((l) => l.path);
  const gid = options.socketGroup !== undefined ? resolveGroup(options.socketGroup) : undefined;
  const servers: UnixQmpServer[] = [];
  serversRef = servers;
  let web: WebServer | undefined;
  try {
    for (const l of listens) {
      if (l.fd === undefined) fs.mkdirSync(path.dirname(l.path), { recursive: true });
      const srv = new UnixQmpServer(
        monitor,
        { path: l.path, fd: l.fd, unlinkOnClose: l.unlinkOnClose, mode: options.socketMode, gid },
        {
          onClientRefused: (where) => logger.warn({ socket: where, limit: options.maxClients }, 'client refused: too many clients'),
          onStuckClient: (client) => logger.warn({ client }, 'client disconnected: not reading its replies'),
          onConnect: (client) => {
            metrics?.clientConnected('unix');
            logger.debug({ client }, 'client connected');
          },
          onDisconnect: (client) => {
            metrics?.clientDisconnected('unix');
            logger.debug({ client }, 'client disconnected');
          },
        },
      );
      await srv.listen();
      servers.push(srv);
    }
    if (takeover && incoming) {
      for (const c of takeover.clients) servers[0].adoptClient(c.fd.fd, c.state);
      await confirmHandover(incoming);
      logger.info({ from: incoming.fromPid, clients: takeover.clients.length, objects: objects.usage.objects }, 'handover: took over');
    }
    if (options.ws && metrics) {
      const w = options.ws;
      const caps = (): CapsView => ({
        objects: { limit: options.maxObjects, used: objects.usage.objects },
        backendBytes: { limit: options.maxBackendBytes === undefined ? undefined : Number(options.maxBackendBytes), used: Number(objects.usage.bytes) },
        clients: { limit: options.maxClients, used: monitor.clientCount },
      });
      const start = (): Promise<WebServer> => webMod!.startWebServer({ host: w.host, port: w.port, allowRemote: options.wsAllowRemote, limits: options.wsLimits, stateDir: options.stateDir, monitor, metrics, logger, backends, caps });
      // After a handover the old daemon frees the port as it exits.
      for (let tries = 0; ; tries++) {
        try {
          web = await start();
          break;
        } catch (e) {
          if (!takeover || (e as { code?: string }).code !== 'EADDRINUSE' || tries >= 100) throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  } catch (e) {
    await Promise.all(servers.map((s) => s.close()));
    fds.hooks = {};
    objects.releaseAll();
    kvm.close();
    throw e;
  }

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | undefined;
  const shutdown = (reason: 'host-qmp-quit' | 'host-signal'): Promise<void> => {
    if (stopping) return stopping;
    stopping = (async () => {
      logger.info({ reason }, 'shutting down');
      for (const s of servers) s.stopAccepting();
      web?.stopAccepting();
      if (!shutdownEventSent) monitor.emitEvent('SHUTDOWN', { guest: false, reason });
      await monitor.whenIdle(); // in-flight commands finish and are answered
      monitor.closeAll();
      await Promise.all([...servers.map((s) => s.close()), web?.close()]);
      try {
        notifier.stopping(`stopping (${reason}); ${objects.usage.objects} objects kept in the journal`);
      } catch (e) {
        notifyError('STOPPING')(e);
      }
      // The memory stays in the fd store and the objects in the journal: only object-del ends them.
      fds.hooks = {};
      objects.releaseAll();
      notifier.close();
      kvm.close();
      logger.info('stopped');
      logger.flush();
      resolveStopped();
    })();
    return stopping;
  };
  finishHandover = (successor: number): void => {
    if (stopping) return;
    stopping = (async () => {
      logger.info({ successor }, 'exiting after handover; memory and objects live on in the successor');
      monitor.closeAll(); // only sessions that could not move (WebSocket) are left
      await web?.close();
      fds.hooks = {};
      objects.releaseAll();
      notifier.close();
      kvm.close();
      logger.flush();
      resolveStopped();
    })();
  };
  daemon = { monitor, socketPaths: paths, web, logger, stopped, shutdown };
  // Validators not yet compiled (all but those --object used) are compiled once, right after
  // the sockets listen, one small step per event-loop turn so that clients connecting now are
  // greeted in between; a command arriving first compiles its own on demand.
  // It stops when shutdown begins, and never keeps the process alive.
  const warmUp = (): void => {
    if (!stopping && validator.warmUpStep()) setImmediate(warmUp).unref();
  };
  setImmediate(warmUp).unref();
  try {
    notifier.ready(`serving QMP on ${paths.join(', ')}; ${objects.usage.objects} objects`);
    const ms = notifier.startWatchdog(notifyError('WATCHDOG'));
    if (ms !== undefined) logger.info({ intervalMs: ms }, 'systemd watchdog pings enabled');
  } catch (e) {
    notifyError('READY')(e);
  }
  logger.info({ sockets: paths, version: PACKAGE_STRING, kvm: kvm.facts.enabled, commands: commandNames.length }, 'hostmemd ready');
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
  const logger = createLogger(cli.options.logLevel);
  let daemon: Daemon;
  try {
    daemon = await startDaemon(cli.options, logger);
  } catch (e) {
    process.stderr.write(`hostmemd: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    logger.info({ signal: sig }, 'signal received');
    void daemon.shutdown('host-signal');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onSignal);
  await daemon.stopped;
  return 0;
}
