// The web endpoint (--ws HOST:PORT): one fastify app assembled from the plugins in plugins/ —
// console assets and /healthz (open), /metrics and /api/* (token), QMP over WebSocket at /qmp
// (token + Origin, upgraded by `ws` on the same server). buildWebApp() assembles it without
// listening (tests use app.inject()); startWebServer() loads the token, builds and listens.
import Fastify, { FastifyBaseLogger, FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import type { Monitor } from '../qmp/monitor';
import { DEFAULT_WS_LIMITS, WebSocketLimits } from '../transport/websocket';
import { isLoopbackHost } from './auth';
import { DaemonMetrics } from './metrics';
import { apiRoutes, CapsView } from './plugins/api';
import { consoleAssets } from './plugins/console';
import { health } from './plugins/health';
import { metricsEndpoint } from './plugins/metrics-endpoint';
import { QMP_PATH, qmpWebSocket } from './plugins/qmp-websocket';
import { tokenAuth } from './plugins/token-auth';
import { BackendView } from './resident';
import { loadOrCreateToken } from './token';

export type { CapUsage, CapsView } from './plugins/api';
export { QMP_PATH };

/** What the web app is built from (buildWebApp). */
export interface WebAppDeps {
  /** The address and port as given to --ws (for the WebSocket Origin rule). */
  host: string;
  port: number;
  token: string;
  monitor: Monitor;
  metrics: DaemonMetrics;
  logger: Logger;
  /** The memory backends now in the tree (for /api/backends). */
  backends(): Iterable<BackendView>;
  /** The operator caps and what is used of them now (for /api/caps and the console). */
  caps?(): CapsView;
  limits?: Partial<WebSocketLimits>;
  assetsDir?: string;
  /** False once shutdown has begun: WebSocket upgrades are refused. Default: always true. */
  accepting?(): boolean;
}

export interface WebServerOptions extends Omit<WebAppDeps, 'token' | 'accepting'> {
  allowRemote: boolean;
  stateDir: string;
}

export interface WebServer {
  /** `http://HOST:PORT` as bound (the real port when 0 was asked for). */
  readonly url: string;
  /** The console URL with the token, for the operator's own tools (never logged: the log
   *  names the token file instead). */
  readonly consoleUrl: string;
  readonly port: number;
  readonly token: string;
  readonly tokenPath: string;
  /** New connections and upgrades are refused from now on (shutdown has begun). */
  stopAccepting(): void;
  /** Closes WebSocket clients (after their close handshake, or a short grace) and the server. */
  close(): Promise<void>;
}

/** Why a non-loopback --ws needs --ws-allow-remote, or undefined when it may bind. */
export function remoteBindRefusal(host: string, port: number, allowRemote: boolean): string | undefined {
  if (isLoopbackHost(host) || allowRemote) return undefined;
  return `--ws ${host}:${port}: ${host} is not a loopback address; the console and QMP would be reachable from the network (protected only by the token). Pass --ws-allow-remote to allow it.`;
}

/** The fastify app with every route and the /qmp upgrade handler, not listening. */
export async function buildWebApp(deps: WebAppDeps): Promise<FastifyInstance> {
  const { monitor, metrics, token } = deps;
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'web' }) as FastifyBaseLogger,
    // Request lines would carry the console URL's ?token=: we log what matters ourselves.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    forceCloseConnections: true,
  });
  try {
    await app.register(health, { monitor });
    await app.register(tokenAuth, {
      token,
      metrics,
      routes: async (secured) => {
        await secured.register(metricsEndpoint, { metrics });
        await secured.register(apiRoutes, { backends: deps.backends, caps: deps.caps });
      },
    });
    await app.register(consoleAssets, { assetsDir: deps.assetsDir });
    await app.register(qmpWebSocket, {
      monitor,
      metrics,
      token,
      host: deps.host,
      port: deps.port,
      limits: { ...DEFAULT_WS_LIMITS, ...deps.limits },
      accepting: deps.accepting ?? (() => true),
    });
    return app;
  } catch (e) {
    await app.close().catch(() => undefined);
    throw e;
  }
}

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const { host, port } = opts;
  const log = opts.logger.child({ component: 'web' });
  const refusal = remoteBindRefusal(host, port, opts.allowRemote);
  if (refusal) throw new Error(refusal);
  if (!isLoopbackHost(host)) log.warn({ host, port }, 'web endpoint bound to a non-loopback address (--ws-allow-remote): anyone who can reach it and has the token controls the daemon');

  const { token, path: tokenPath, created } = loadOrCreateToken(opts.stateDir);
  let accepting = true;
  const app = await buildWebApp({ ...opts, token, accepting: () => accepting });

  try {
    await app.listen({ host, port });
  } catch (e) {
    await app.close().catch(() => undefined);
    // (Not `instanceof Error`: errors from Node's internals may come from another realm.)
    const msg = typeof e === 'object' && e !== null && 'message' in e ? String(e.message) : String(e);
    throw new Error(`--ws ${host}:${port}: ${msg}`);
  }
  const addr = app.server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const url = `http://${urlHost}:${boundPort}`;
  const consoleUrl = `${url}/?token=${token}`;
  // Never the token itself: logs are copied, shipped and read by people who may not drive the
  // daemon. The operator reads the token file (mode 0600) and opens the URL with it.
  log.info(
    { url, tokenFile: tokenPath, tokenCreated: created, qmp: `ws://${urlHost}:${boundPort}${QMP_PATH}` },
    `web console at ${url}/ (open ${url}/?token=TOKEN with TOKEN read from ${tokenPath})`,
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    consoleUrl,
    port: boundPort,
    token,
    tokenPath,
    stopAccepting: () => {
      accepting = false;
    },
    close: () => {
      // The /qmp plugin's preClose hook closes the WebSocket clients before the server.
      closing ??= (async () => {
        accepting = false;
        await app.close();
      })();
      return closing;
    },
  };
}
