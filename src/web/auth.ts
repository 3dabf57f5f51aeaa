// Who may use the web endpoint: the token (an `Authorization: Bearer` header, or for browsers,
// which cannot set headers on a WebSocket, the subprotocol `hostmemd.token.<token>`), and for
// WebSocket upgrades the Origin rule that stops other web pages from driving the daemon
// with the user's browser (cross-site WebSocket hijacking). Pure functions over headers.
import type { IncomingHttpHeaders } from 'node:http';
import { tokenMatches } from './token';

/** The subprotocol a browser offers next to the token one; the server selects it so that the
 *  token is never echoed back in the handshake response. */
export const QMP_SUBPROTOCOL = 'hostmemd.qmp';
export const TOKEN_SUBPROTOCOL_PREFIX = 'hostmemd.token.';

/** Subprotocols offered in Sec-WebSocket-Protocol (comma-separated list). */
export function offeredSubprotocols(headers: IncomingHttpHeaders): string[] {
  const raw = headers['sec-websocket-protocol'];
  if (!raw) return [];
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** The token a request presents, from the Bearer header or a token subprotocol. */
export function presentedToken(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1] : undefined;
  }
  const p = offeredSubprotocols(headers).find((s) => s.startsWith(TOKEN_SUBPROTOCOL_PREFIX));
  return p?.slice(TOKEN_SUBPROTOCOL_PREFIX.length);
}

/** The one subprotocol the server ever answers: the fixed `hostmemd.qmp` when offered, else
 *  none. Never a token subprotocol, whose name carries the secret (a handshake response is seen
 *  by proxies, browser devtools and their logs). */
export function selectedSubprotocol(offered: ReadonlySet<string>): string | false {
  return offered.has(QMP_SUBPROTOCOL) ? QMP_SUBPROTOCOL : false;
}

export const TOKEN_ONLY_SUBPROTOCOL_REFUSAL = `offer the subprotocol ${QMP_SUBPROTOCOL} next to ${TOKEN_SUBPROTOCOL_PREFIX}<token>: the server answers only ${QMP_SUBPROTOCOL}, never the token`;

/** Why an upgrade that offers the token subprotocol without `hostmemd.qmp` is refused: the
 *  server could only answer no subprotocol, which browsers (and `ws`) treat as a failed
 *  handshake after the session has started; a clear 400 up front is kinder. */
export function subprotocolRefusal(headers: IncomingHttpHeaders): string | undefined {
  const offered = offeredSubprotocols(headers);
  if (!offered.some((p) => p.startsWith(TOKEN_SUBPROTOCOL_PREFIX))) return undefined;
  return offered.includes(QMP_SUBPROTOCOL) ? undefined : TOKEN_ONLY_SUBPROTOCOL_REFUSAL;
}

export function isAuthorized(headers: IncomingHttpHeaders, token: string): boolean {
  return tokenMatches(presentedToken(headers), token);
}

/** Hosts that always name this machine, whatever address the server is bound to. */
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export interface OriginPolicy {
  /** The address the server listens on (as given to --ws). */
  bindHost: string;
  port: number;
}

/** A browser's upgrade is allowed only from the console's own origin: `http://HOST:PORT` where
 *  HOST is the bound address, a loopback name (when bound to loopback), or — when bound to a
 *  wildcard address — the Host the browser itself used, as long as Origin and Host agree.
 *  No Origin header means a non-browser client: the token alone decides. */
export function originAllowed(origin: string | undefined, hostHeader: string | undefined, policy: OriginPolicy): boolean {
  if (origin === undefined) return true;
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false;
  }
  if (u.protocol !== 'http:' || u.pathname !== '/' || u.username || u.password) return false;
  const originPort = u.port === '' ? 80 : Number(u.port);
  if (originPort !== policy.port) return false;
  const originHost = u.hostname.toLowerCase();
  const bind = policy.bindHost.toLowerCase();
  const bracketed = bind.includes(':') ? `[${bind}]` : bind;
  if (originHost === bind || originHost === bracketed) return true;
  if (isLoopbackHost(bind) && LOOPBACK_NAMES.has(originHost)) return true;
  if (bind === '0.0.0.0' || bind === '::' || bind === '[::]') {
    // Wildcard: the console is reachable under any of the host's names; the page's origin must
    // then be the very host this request is addressed to (same origin), never a third site.
    return hostHeader !== undefined && hostHeader.toLowerCase() === u.host.toLowerCase();
  }
  return false;
}
