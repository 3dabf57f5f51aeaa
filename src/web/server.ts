// The web endpoint (--ws HOST:PORT): one fastify HTTP server carrying the console's static
// assets, /healthz (open), /metrics and /api/* (token), and QMP over WebSocket at /qmp
// (token + Origin), upgraded by `ws` on the same server. QMP itself is the monitor's: this
// module only decides who gets in and hands the socket to transport/websocket.
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { FastifyBaseLogger, FastifyReply, FastifyRequest, LogController } from 'fastify';
import { WebSocketServer, WebSocket } from 'ws';
import type { Logger } from 'pino';
import type { Monitor } from '../qmp/monitor';
import { DEFAULT_WS_LIMITS, WebSocketLimits, serveQmpWebSocket } from '../transport/websocket';
import { HOSTMEMD_VERSION, PACKAGE_STRING, QEMU_LEVEL } from '../version';
import { QMP_SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, isAuthorized, isLoopbackHost, offeredSubprotocols, originAllowed } from './auth';
import { DaemonMetrics } from './metrics';
import { BackendView, residentOf } from './resident';
import { SECURITY_HEADERS, loadAssets } from './static';
import { loadOrCreateToken } from './token';

export const QMP_PATH = '/qmp';

export interface WebServerOptions {
  host: string;
  port: number;
  allowRemote: boolean;
  stateDir: string;
  monitor: Monitor;
  metrics: DaemonMetrics;
  logger: Logger;
  /** The memory backends now in the tree (for /api/backends). */
  backends(): Iterable<BackendView>;
  /** The operator caps and what is used of them now (for /api/caps and the console). */
  caps?(): CapsView;
  limits?: Partial<WebSocketLimits>;
  assetsDir?: string;
}

/** One cap: its configured limit (absent: no cap) and the current use. */
export interface CapUsage {
  limit?: number;
  used: number;
}

/** --max-objects (objects, pending creations included), --max-backend-bytes (bytes charged by
 *  backends, pending creations included) and --max-clients (connected QMP clients). */
export interface CapsView {
  objects: CapUsage;
  backendBytes: CapUsage;
  clients: CapUsage;
}

export interface WebServer {
  /** `http://HOST:PORT` as bound (the real port when 0 was asked for). */
  readonly url: string;
  /** The console URL with the token, as logged. */
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

/** How long closing WebSocket clients may take to answer the close frame at shutdown. */
const CLOSE_GRACE_MS = 1000;

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const { host, port, monitor, metrics } = opts;
  const log = opts.logger.child({ component: 'web' });
  const refusal = remoteBindRefusal(host, port, opts.allowRemote);
  if (refusal) throw new Error(refusal);
  if (!isLoopbackHost(host)) log.warn({ host, port }, 'web endpoint bound to a non-loopback address (--ws-allow-remote): anyone who can reach it and has the token controls the daemon');

  const limits: WebSocketLimits = { ...DEFAULT_WS_LIMITS, ...opts.limits };
  const { token, path: tokenPath, created } = loadOrCreateToken(opts.stateDir);
  const { assets, built } = loadAssets(opts.assetsDir);
  if (!built) log.warn('web console assets not found (web/dist): run `npm run build`; / serves a notice');

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Request lines would carry the console URL's ?token=: we log what matters ourselves.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    forceCloseConnections: true,
  });
  let accepting = true;

  const requireToken = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!isAuthorized(req.headers, token)) {
      metrics.clientRefused('http');
      log.warn({ url: req.routeOptions.url, remote: req.ip }, 'HTTP request refused: missing or wrong token');
      await reply.code(401).header('www-authenticate', 'Bearer realm="hostmemd"').send({ error: 'missing or wrong token' });
    }
  };

  app.get('/healthz', async () => ({ status: 'ok', clients: monitor.clientCount }));
  app.get('/metrics', { onRequest: requireToken }, async (_req, reply) => {
    const text = await metrics.render();
    return reply.header('content-type', metrics.contentType).send(text);
  });
  app.get('/api/info', { onRequest: requireToken }, async () => ({
    name: 'hostmemd',
    version: HOSTMEMD_VERSION,
    package: PACKAGE_STRING,
    qemu: { ...QEMU_LEVEL },
    qmp: QMP_PATH,
  }));
  // What QMP has no command for: each backend's resident memory (the console polls this).
  app.get('/api/backends', { onRequest: requireToken }, async () => {
    const list = [...opts.backends()];
    const resident = residentOf(list);
    return list.map((b, i) => ({ id: b.name, type: b.typeName, size: Number(b.size), resident: Number(resident[i]) }));
  });
  // The caps next to their use (the console shows them; /metrics has them as hostmemd_limit).
  app.get('/api/caps', { onRequest: requireToken }, async () => opts.caps?.() ?? {});
  for (const [url, asset] of assets) {
    app.get(url, async (_req, reply) => reply.headers(SECURITY_HEADERS).type(asset.type).send(asset.body));
  }

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxPayload,
    perMessageDeflate: false,
    // A browser that offered subprotocols fails the handshake unless one is selected; select the
    // plain one so that the token protocol is never echoed back.
    handleProtocols: (protocols) => {
      if (protocols.has(QMP_SUBPROTOCOL)) return QMP_SUBPROTOCOL;
      for (const p of protocols) if (p.startsWith(TOKEN_SUBPROTOCOL_PREFIX)) return p;
      return false;
    },
  });

  const server = app.server as http.Server;
  let boundPort = port; // the real one once listening (port 0 in tests)
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = req.socket.remoteAddress;
    const where = new URL(req.url ?? '/', 'http://x').pathname;
    if (!accepting) return refuseUpgrade(socket, 503, 'hostmemd is shutting down');
    if (where !== QMP_PATH) return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${where}; QMP is at ${QMP_PATH}`);
    const origin = req.headers.origin;
    if (!originAllowed(origin, req.headers.host, { bindHost: host, port: boundPort })) {
      metrics.clientRefused('websocket');
      log.warn({ origin, remote }, 'WebSocket refused: Origin is not the console');
      return refuseUpgrade(socket, 403, `origin ${origin ?? ''} may not use this endpoint`);
    }
    if (!isAuthorized(req.headers, token)) {
      metrics.clientRefused('websocket');
      const how = req.headers.authorization ? 'bearer' : offeredSubprotocols(req.headers).some((p) => p.startsWith(TOKEN_SUBPROTOCOL_PREFIX)) ? 'subprotocol' : 'none';
      log.warn({ remote, presented: how }, 'WebSocket refused: missing or wrong token');
      return refuseUpgrade(socket, 401, 'missing or wrong token');
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      serveQmpWebSocket(monitor, ws, limits, {
        onConnect: (client) => {
          metrics.clientConnected('websocket');
          log.debug({ client, remote, origin }, 'client connected');
        },
        onDisconnect: (client) => {
          metrics.clientDisconnected('websocket');
          log.debug({ client }, 'client disconnected');
        },
        onRefused: () => {
          metrics.clientRefused('websocket');
          log.warn({ remote, limit: 'max-clients' }, 'client refused: too many clients');
        },
        onCutOff: (client, reason, detail) => {
          metrics.clientCutOff('websocket', reason);
          const what = reason === 'slow-reader' ? 'not reading its replies' : reason === 'rate-limit' ? 'message rate limit exceeded' : 'message too large';
          log.warn({ client, remote, reason, detail }, `client disconnected: ${what}`);
        },
      });
    });
  });

  try {
    await app.listen({ host, port });
  } catch (e) {
    await app.close().catch(() => undefined);
    // (Not `instanceof Error`: errors from Node's internals may come from another realm.)
    const msg = typeof e === 'object' && e !== null && 'message' in e ? String(e.message) : String(e);
    throw new Error(`--ws ${host}:${port}: ${msg}`);
  }
  const addr = server.address();
  if (typeof addr === 'object' && addr) boundPort = addr.port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const url = `http://${urlHost}:${boundPort}`;
  const consoleUrl = `${url}/?token=${token}`;
  log.info({ url, console: consoleUrl, tokenFile: tokenPath, tokenCreated: created, qmp: `ws://${urlHost}:${boundPort}${QMP_PATH}` }, `web console at ${consoleUrl}`);

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
      closing ??= (async () => {
        accepting = false;
        const open = [...wss.clients];
        for (const ws of open) if (ws.readyState === ws.OPEN) ws.close(1001, 'hostmemd is shutting down');
        await Promise.race([
          Promise.all(open.map((ws) => (ws.readyState === ws.CLOSED ? undefined : new Promise((r) => ws.once('close', r))))),
          new Promise((r) => setTimeout(r, CLOSE_GRACE_MS).unref()),
        ]);
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        await app.close();
      })();
      return closing;
    },
  };
}

/** Answers a refused upgrade with a plain HTTP status and closes the connection. */
function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  const body = text + '\n';
  const extra = status === 401 ? 'WWW-Authenticate: Bearer realm="hostmemd"\r\n' : '';
  socket.once('finish', () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`,
  );
}
