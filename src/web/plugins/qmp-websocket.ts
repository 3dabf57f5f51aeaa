// QMP over WebSocket at /qmp: `ws` takes the HTTP server's upgrades (fastify routes never see
// them), checks Origin then the token, and hands the socket to transport/websocket, which
// speaks QMP for the monitor. On app.close() (preClose) the clients get a 1001 close first.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import { WebSocketServer, WebSocket } from 'ws';
import type { Monitor } from '../../qmp/monitor';
import { WebSocketLimits, serveQmpWebSocket } from '../../transport/websocket';
import { TOKEN_SUBPROTOCOL_PREFIX, isAuthorized, offeredSubprotocols, originAllowed, selectedSubprotocol, subprotocolRefusal } from '../auth';
import type { DaemonMetrics } from '../metrics';

export const QMP_PATH = '/qmp';

/** How long closing WebSocket clients may take to answer the close frame at shutdown. */
const CLOSE_GRACE_MS = 1000;

export interface QmpWebSocketOptions {
  monitor: Monitor;
  metrics: DaemonMetrics;
  token: string;
  /** The address and port as given to --ws (for the Origin rule; the bound port is read from
   *  the server, since upgrades only come once it listens). */
  host: string;
  port: number;
  limits: WebSocketLimits;
  /** False once shutdown has begun: upgrades are refused with 503. */
  accepting(): boolean;
}

export const qmpWebSocket: FastifyPluginAsync<QmpWebSocketOptions> = async (app, opts) => {
  const { monitor, metrics, token, host, limits } = opts;
  const log = app.log;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: limits.maxPayload,
    perMessageDeflate: false,
    // A browser that offered subprotocols fails the handshake unless one is selected; only the
    // fixed `hostmemd.qmp` is ever selected, so the token protocol is never echoed back.
    handleProtocols: (protocols) => selectedSubprotocol(protocols),
  });

  const server = app.server as http.Server;
  const boundPort = (): number => (server.address() as AddressInfo | null)?.port ?? opts.port;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = req.socket.remoteAddress;
    const where = new URL(req.url ?? '/', 'http://x').pathname;
    if (!opts.accepting()) return refuseUpgrade(socket, 503, 'hostmemd is shutting down');
    if (where !== QMP_PATH) return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${where}; QMP is at ${QMP_PATH}`);
    const origin = req.headers.origin;
    if (!originAllowed(origin, req.headers.host, { bindHost: host, port: boundPort() })) {
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
    const badProtocols = subprotocolRefusal(req.headers);
    if (badProtocols) {
      metrics.clientRefused('websocket');
      log.warn({ remote }, 'WebSocket refused: token subprotocol offered without hostmemd.qmp');
      return refuseUpgrade(socket, 400, badProtocols);
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

  // Before the HTTP server closes: the close handshake with every client (or a short grace),
  // then whatever is left is cut.
  app.addHook('preClose', async () => {
    const open = [...wss.clients];
    for (const ws of open) if (ws.readyState === ws.OPEN) ws.close(1001, 'hostmemd is shutting down');
    await Promise.race([
      Promise.all(open.map((ws) => (ws.readyState === ws.CLOSED ? undefined : new Promise((r) => ws.once('close', r))))),
      new Promise((r) => setTimeout(r, CLOSE_GRACE_MS).unref()),
    ]);
    for (const ws of wss.clients) ws.terminate();
    wss.close();
  });
};

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
