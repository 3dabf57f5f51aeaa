// Listen, the daemon's third phase: the QMP sockets (passed by socket activation, handed over
// by a predecessor, or bound at the --qmp paths; or already listening since early.ts), the connections a predecessor handed over,
// QEMU's other monitor forms (-chardev/-mon/-qmp: monitors.ts), and the web endpoint with
// --ws. Each server registers its close on the teardown stack.
import { UnixQmpServer } from '../transport/unix-socket';
import { IncomingStart, IncomingTakeover, confirmHandover } from '../handover/handover';
import type { PassedFd } from '../service/sd-notify';
import { DaemonOptions } from './cli';
import { resolveGroup } from './socket-paths';
import { listenSockets, listenSpecs, unixEvents } from './early';
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
  /** The sockets early.ts listens on already (their servers are in `servers`). */
  early?: { paths: string[] };
}

export async function listen(ctx: ListenContext): Promise<Listening> {
  const { options, parts, bus, teardown, logger, takeover, incoming, servers } = ctx;
  const events = unixEvents(options, bus, logger);
  // Sockets that listen already (early.ts) are the start's; else they are bound now.
  let paths = ctx.early?.paths;
  if (!paths) {
    const specs = listenSpecs(options, ctx.env, ctx.activated, takeover);
    await listenSockets(specs, parts.monitor, options, events, teardown, servers);
    paths = specs.map((l) => l.path);
  }
  const gid = options.socketGroup !== undefined ? resolveGroup(options.socketGroup) : undefined;
  if (takeover && incoming) {
    for (const c of takeover.clients) servers[0].adoptClient(c.fd.fd, c.state);
    await confirmHandover(incoming);
    logger.info({ from: incoming.fromPid, clients: takeover.clients.length, objects: parts.objects.usage.objects }, 'handover: took over');
  }
  const monitors = await openMonitors(options.monitors, { monitor: parts.monitor, teardown, logger, events, socketMode: options.socketMode, gid, stderr: (line) => process.stderr.write(`hostmemd: ${line}\n`) });
  const web = ctx.web ? await startWeb(ctx, ctx.web.mod, ctx.web.metrics) : undefined;
  return { servers, paths: [...paths, ...monitors], web };
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
