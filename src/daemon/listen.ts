// Listen, the daemon's third phase: the QMP sockets (passed by socket activation, handed over
// by a predecessor, or bound at the --qmp paths), the connections a predecessor handed over,
// QEMU's other monitor forms (-chardev/-mon/-qmp: monitors.ts), and the web endpoint with
// --ws. Each server registers its close on the teardown stack.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../native';
import { UnixQmpServer } from '../transport/unix-socket';
import { IncomingStart, IncomingTakeover, confirmHandover } from '../handover/handover';
import type { PassedFd } from '../service/sd-notify';
import { DaemonOptions } from './cli';
import { defaultQmpPath, resolveGroup } from './socket-paths';
import { EventBus } from './event-bus';
import { Teardown } from './teardown';
import { openMonitors } from './monitors';
import type { Parts } from './assemble';
import type { Logger } from './logger';
import type { CapsView, WebServer } from '../web/server';
import type { DaemonMetrics } from '../web/metrics';

export interface Listening {
  servers: UnixQmpServer[];
  paths: string[];
  web?: WebServer;
}

interface ListenSpec {
  path: string;
  fd?: number;
  unlinkOnClose?: boolean;
}

/** Socket activation's sockets replace the default socket (--qmp adds more); a handover's
 *  are the old daemon's (its --qmp paths are not bound again). */
function listenSpecs(options: DaemonOptions, env: NodeJS.ProcessEnv, activated: readonly PassedFd[], takeover?: IncomingTakeover): ListenSpec[] {
  const passed = activated.map((l) => ({ path: native.sockets.localPath(l.fd) || `fd:${l.name}`, fd: l.fd.fd }));
  const handed = (takeover?.listeners ?? []).map((l) => ({ path: l.path, fd: l.fd.fd, unlinkOnClose: true }));
  const given = [...passed, ...handed];
  // A --qmp path already served by a passed socket is that socket (no second bind).
  const specs: ListenSpec[] = [...given, ...options.qmp.filter((p) => !given.some((h) => path.resolve(h.path) === path.resolve(p))).map((p) => ({ path: p }))];
  // The default socket only when no monitor at all is given (QEMU has none by default either).
  if (specs.length === 0 && options.monitors.length === 0) specs.push({ path: defaultQmpPath(options, env) });
  return specs;
}

export interface ListenContext {
  options: DaemonOptions;
  env: NodeJS.ProcessEnv;
  parts: Parts;
  bus: EventBus;
  teardown: Teardown;
  logger: Logger;
  activated: readonly PassedFd[];
  incoming?: IncomingStart;
  takeover?: IncomingTakeover;
  web?: { mod: typeof import('../web/server'); metrics: DaemonMetrics };
  /** Filled as servers listen: the daemon's handover reads it. */
  servers: UnixQmpServer[];
}

export async function listen(ctx: ListenContext): Promise<Listening> {
  const { options, parts, bus, teardown, logger, takeover, incoming, servers } = ctx;
  const specs = listenSpecs(options, ctx.env, ctx.activated, takeover);
  const gid = options.socketGroup !== undefined ? resolveGroup(options.socketGroup) : undefined;
  const events = {
    onClientRefused: (where: string) => logger.warn({ socket: where, limit: options.maxClients }, 'client refused: too many clients'),
    onStuckClient: (client: string) => logger.warn({ client }, 'client disconnected: not reading its replies'),
    onConnect: (client: string) => bus.emit('client-connected', { transport: 'unix', client }),
    onDisconnect: (client: string) => bus.emit('client-disconnected', { transport: 'unix', client }),
  };
  for (const l of specs) {
    if (l.fd === undefined) fs.mkdirSync(path.dirname(l.path), { recursive: true });
    const srv = new UnixQmpServer(parts.monitor, { path: l.path, fd: l.fd, unlinkOnClose: l.unlinkOnClose, mode: options.socketMode, gid }, events);
    await srv.listen();
    servers.push(srv);
    teardown.add(`socket ${l.path}`, () => srv.close());
  }
  if (takeover && incoming) {
    for (const c of takeover.clients) servers[0].adoptClient(c.fd.fd, c.state);
    await confirmHandover(incoming);
    logger.info({ from: incoming.fromPid, clients: takeover.clients.length, objects: parts.objects.usage.objects }, 'handover: took over');
  }
  const monitors = await openMonitors(options.monitors, { monitor: parts.monitor, teardown, logger, events, socketMode: options.socketMode, gid, stderr: (line) => process.stderr.write(`hostmemd: ${line}\n`) });
  const web = ctx.web ? await startWeb(ctx, ctx.web.mod, ctx.web.metrics) : undefined;
  return { servers, paths: [...specs.map((l) => l.path), ...monitors], web };
}

async function startWeb(ctx: ListenContext, mod: typeof import('../web/server'), metrics: DaemonMetrics): Promise<WebServer> {
  const { options, parts, logger } = ctx;
  const w = options.ws!;
  const caps = (): CapsView => ({
    objects: { limit: options.maxObjects, used: parts.objects.usage.objects },
    backendBytes: { limit: options.maxBackendBytes === undefined ? undefined : Number(options.maxBackendBytes), used: Number(parts.objects.usage.bytes) },
    clients: { limit: options.maxClients, used: parts.monitor.clientCount },
  });
  const start = (): Promise<WebServer> =>
    mod.startWebServer({ host: w.host, port: w.port, allowRemote: options.wsAllowRemote, limits: options.wsLimits, stateDir: options.stateDir, monitor: parts.monitor, metrics, logger, backends: parts.backends, caps });
  // After a handover the old daemon frees the port as it exits.
  for (let tries = 0; ; tries++) {
    try {
      const web = await start();
      ctx.teardown.add('web', () => web.close());
      return web;
    } catch (e) {
      if (!ctx.takeover || (e as { code?: string }).code !== 'EADDRINUSE' || tries >= 100) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
