// Test helper: a raw QMP client over the /qmp WebSocket with the same surface as
// RawQmpClient (line/json/execute/silentFor), plus what only WebSockets have: frames, the
// close code and reason, and handshake refusals (HTTP status).
import * as http from 'node:http';
import WebSocket from 'ws';
import { startInProcess, InProcess } from '../helpers/daemon';
import { QmpLineClient } from '../helpers/qmp-line-client';

export interface ConnectOptions {
  token?: string;
  /** How the token is presented: the Authorization header (default), the browser's pair of
   *  subprotocols (`hostmemd.qmp` and the token one), or the token subprotocol alone. */
  via?: 'bearer' | 'subprotocol' | 'token-subprotocol-only';
  origin?: string;
  path?: string;
}

export class WsQmpClient extends QmpLineClient {
  closeCode?: number;
  closeReason?: string;

  private constructor(readonly ws: WebSocket) {
    super();
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) throw new Error('server sent a binary frame');
      this.deliver(data.toString('latin1'));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.markClosed();
    });
    ws.on('error', () => undefined);
  }

  protected override closedDetail(): string {
    return `${this.closeCode} ${this.closeReason}`;
  }

  /** Opens the WebSocket; rejects with `HTTP <status>` when the upgrade is refused. */
  static connect(url: string, opts: ConnectOptions = {}): Promise<WsQmpClient> {
    const headers: Record<string, string> = {};
    const protocols: string[] = [];
    if (opts.token !== undefined && (opts.via ?? 'bearer') === 'bearer') headers.authorization = `Bearer ${opts.token}`;
    if (opts.token !== undefined && opts.via === 'subprotocol') protocols.push('hostmemd.qmp', `hostmemd.token.${opts.token}`);
    if (opts.token !== undefined && opts.via === 'token-subprotocol-only') protocols.push(`hostmemd.token.${opts.token}`);
    if (opts.origin !== undefined) headers.origin = opts.origin;
    const ws = new WebSocket(url.replace(/^http/, 'ws') + (opts.path ?? '/qmp'), protocols, { headers });
    const c = new WsQmpClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`HTTP ${res.statusCode}`));
        res.resume();
        ws.terminate();
      });
      ws.once('error', reject);
    });
  }

  static async negotiated(url: string, token: string, enable?: string[]): Promise<WsQmpClient> {
    return (await WsQmpClient.connect(url, { token })).negotiate(enable);
  }

  /** One frame: a string as a text frame, bytes as a binary frame. */
  send(data: string | Buffer): void {
    this.ws.send(data, { binary: Buffer.isBuffer(data) });
  }

  async waitClosed(timeoutMs = 5000): Promise<{ code?: number; reason?: string }> {
    await this.untilClosed(timeoutMs);
    return { code: this.closeCode, reason: this.closeReason };
  }

  close(): void {
    this.ws.terminate();
  }
}

export interface WebDaemon extends InProcess {
  url: string;
  token: string;
}

/** An in-process daemon with the web endpoint on a free loopback port. */
export async function startWebDaemon(extraArgs: string[] = []): Promise<WebDaemon> {
  const d = await startInProcess(['--accel', 'none', '--ws', '127.0.0.1:0', ...extraArgs]);
  const web = d.daemon.web;
  if (!web) throw new Error('daemon started without its web endpoint');
  return { ...d, url: web.url, token: web.token };
}

/** GET with an optional bearer token; the body as text. */
export async function httpGet(url: string, token?: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { headers: { ...headers, ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) } });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** A bare WebSocket upgrade request to /qmp: the status and headers of the answer exactly as
 *  sent (101 or a refusal), then the connection is dropped. */
export function rawUpgrade(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url + '/qmp', {
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
    });
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end();
  });
}
