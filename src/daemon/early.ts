// The start's first step when nothing has to exist before a client connects (issue 16): the
// QMP sockets listen and greet while the rest of the daemon loads, restores and gets ready;
// the commands of a client greeted meanwhile wait until they can be answered (Monitor.serve).
// Light on purpose: only what a greeting needs is loaded before it (no pino, ajv, schema).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../native';
import { Monitor } from '../qmp/monitor';
import { UnixQmpServer, UnixServerEvents } from '../transport/unix-socket';
import { ListenFds, PassedFd, takeListenFds } from '../service/sd-notify';
import { PACKAGE_STRING, QEMU_LEVEL } from '../version';
import { defaultQmpPath, resolveGroup } from './socket-paths';
import { EventBus } from './event-bus';
import { Teardown } from './teardown';
import type { IncomingTakeover } from '../handover/handover';
import type { DaemonOptions } from './cli';
import type { Log } from '../log';

export interface ListenSpec {
  path: string;
  fd?: number;
  unlinkOnClose?: boolean;
}

/** Socket activation's sockets replace the default socket (--qmp adds more); a handover's
 *  are the old daemon's (its --qmp paths are not bound again). */
export function listenSpecs(options: DaemonOptions, env: NodeJS.ProcessEnv, activated: readonly PassedFd[], takeover?: IncomingTakeover): ListenSpec[] {
  const passed = activated.map((l) => ({ path: native.sockets.localPath(l.fd) || `fd:${l.name}`, fd: l.fd.fd }));
  const handed = (takeover?.listeners ?? []).map((l) => ({ path: l.path, fd: l.fd.fd, unlinkOnClose: true }));
  const given = [...passed, ...handed];
  // A --qmp path already served by a passed socket is that socket (no second bind).
  const specs: ListenSpec[] = [...given, ...options.qmp.filter((p) => !given.some((h) => path.resolve(h.path) === path.resolve(p))).map((p) => ({ path: p }))];
  // The default socket only when no monitor at all is given (QEMU has none by default either).
  if (specs.length === 0 && options.monitors.length === 0) specs.push({ path: defaultQmpPath(options, env) });
  return specs;
}

/** Binds (or takes) and listens on each socket; each server registers its close. */
export async function listenSockets(
  specs: readonly ListenSpec[],
  monitor: Monitor,
  options: Pick<DaemonOptions, 'socketGroup' | 'socketMode'>,
  events: UnixServerEvents,
  teardown: Teardown,
  servers: UnixQmpServer[],
): Promise<void> {
  const gid = options.socketGroup !== undefined ? resolveGroup(options.socketGroup) : undefined;
  for (const l of specs) {
    if (l.fd === undefined) fs.mkdirSync(path.dirname(l.path), { recursive: true });
    const srv = new UnixQmpServer(monitor, { path: l.path, fd: l.fd, unlinkOnClose: l.unlinkOnClose, mode: options.socketMode, gid }, events);
    await srv.listen();
    servers.push(srv);
    teardown.add(`socket ${l.path}`, () => srv.close());
  }
}

/** What the early step made; the rest of the start carries on with it. */
export interface EarlyStart {
  bus: EventBus;
  teardown: Teardown;
  /** Greets; serves commands once serve() is called. */
  monitor: Monitor;
  servers: UnixQmpServer[];
  paths: string[];
  passed: ListenFds;
  /** Where the early parts log to, once there is a logger. */
  setLog(log: Log): void;
}

/** Greeting first is possible unless something must exist before any client connects: the
 *  --object objects (a bad one stops the start before anyone is greeted), a handover's
 *  sockets (they come from the predecessor), or --ws's stack (loaded first to refuse a bind
 *  it may not make). */
export function greetsEarly(options: DaemonOptions): boolean {
  return options.objects.length === 0 && options.incomingCpr === undefined && options.ws === undefined;
}

/** Listens on the QMP sockets; the caller loads everything else, then calls monitor.serve(). */
export async function listenEarly(options: DaemonOptions, env: NodeJS.ProcessEnv): Promise<EarlyStart> {
  let log: Log | undefined;
  const late: Log = {
    debug: (o, m) => log?.debug(o, m),
    info: (o, m) => log?.info(o, m),
    warn: (o, m) => log?.warn(o, m),
    error: (o, m) => (log ? log.error(o, m) : process.stderr.write(`hostmemd: ${m}\n`)),
  };
  const bus = new EventBus();
  const teardown = new Teardown(late);
  const passed = takeListenFds(env);
  const monitor = new Monitor({ version: { qemu: { ...QEMU_LEVEL }, package: PACKAGE_STRING }, maxClients: options.maxClients, negotiationTimeoutMs: options.negotiationTimeoutMs });
  const specs = listenSpecs(options, env, passed.listeners);
  const servers: UnixQmpServer[] = [];
  try {
    // The state directory first, with its mode: the default socket lies in it.
    fs.mkdirSync(options.stateDir, { recursive: true, mode: 0o750 });
  } catch {
    /* reported by the rest of the start, which tries again */
  }
  try {
    await listenSockets(specs, monitor, options, unixEvents(options, bus, late), teardown, servers);
  } catch (e) {
    await teardown.run('failed-start');
    throw e;
  }
  return { bus, teardown, monitor, servers, paths: specs.map((s) => s.path), passed, setLog: (l) => (log = l) };
}

/** What the UNIX servers report: log lines and bus events. */
export function unixEvents(options: Pick<DaemonOptions, 'maxClients'>, bus: EventBus, logger: Log): UnixServerEvents {
  return {
    onClientRefused: (where: string) => logger.warn({ socket: where, limit: options.maxClients }, 'client refused: too many clients'),
    onStuckClient: (client: string) => logger.warn({ client }, 'client disconnected: not reading its replies'),
    onConnect: (client: string) => bus.emit('client-connected', { transport: 'unix', client }),
    onDisconnect: (client: string) => bus.emit('client-disconnected', { transport: 'unix', client }),
  };
}
