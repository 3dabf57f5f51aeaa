// The QMP monitors of QEMU's command-line forms (daemon/qemu-monitors.ts parses them): sockets
// listened on with wait=on, TCP or pretty=on, inherited fds (listening: served; connected: one
// session), and sockets hostmemd connects to (QEMU's client mode, with `reconnect`). Every
// connection goes through transport/unix-socket.ts like an accepted one.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as native from '../native';
import { errorText } from '../errors/text';
import { UnixQmpServer, UnixServerEvents } from '../transport/unix-socket';
import type { MonitorSpec } from './qemu-monitors';
import type { Monitor } from '../qmp/monitor';
import type { Logger } from './logger';
import type { Teardown } from './teardown';

export interface MonitorContext {
  monitor: Monitor;
  teardown: Teardown;
  logger: Logger;
  events: UnixServerEvents;
  socketMode: number;
  gid?: number;
  /** Where QEMU's informational lines go ("waiting for connection", "Unable to connect"). */
  stderr: (line: string) => void;
}

/** A start-up error printed as QEMU prints it: `<option>: <text>`. */
class MonitorError extends Error {}

/** Opens the monitors in command-line order; resolves once each is listening, connected or
 *  (with wait=on) has its first client. Returns the names to log. */
export async function openMonitors(specs: readonly MonitorSpec[], ctx: MonitorContext): Promise<string[]> {
  const names: string[] = [];
  for (const spec of specs) names.push(await openMonitor(spec, ctx));
  return names;
}

function server(spec: MonitorSpec, ctx: MonitorContext, opts: { path: string; fd?: number; tcp?: { host: string; port: number } }, firstClient?: () => void): UnixQmpServer {
  const events: UnixServerEvents = {
    ...ctx.events,
    onConnect: (client) => {
      ctx.events.onConnect?.(client);
      firstClient?.();
    },
  };
  const srv = new UnixQmpServer(ctx.monitor, { ...opts, mode: ctx.socketMode, gid: ctx.gid, pretty: spec.pretty }, events);
  ctx.teardown.add(`monitor ${spec.label}`, () => srv.close());
  return srv;
}

/** Listens, and with wait=on waits for the first client as QEMU does before it goes on. */
async function listenOn(spec: MonitorSpec, ctx: MonitorContext, opts: { path: string; fd?: number; tcp?: { host: string; port: number } }, wait: boolean, shown: string): Promise<UnixQmpServer> {
  let connected!: () => void;
  const first = new Promise<void>((r) => (connected = r));
  const srv = server(spec, ctx, opts, () => connected());
  await srv.listen();
  if (wait) {
    ctx.stderr(`${spec.where}: info: hostmemd waiting for connection on: disconnected:${shown},server=on`);
    await first;
  }
  return srv;
}

async function openMonitor(spec: MonitorSpec, ctx: MonitorContext): Promise<string> {
  const e = spec.endpoint;
  try {
    switch (e.kind) {
      case 'unix-listen':
        fs.mkdirSync(path.dirname(e.path), { recursive: true });
        await listenOn(spec, ctx, { path: e.path }, e.wait, `unix:${e.path}`);
        return e.path;
      case 'tcp-listen': {
        const port = tcpPort(e.port);
        const srv = await listenOn(spec, ctx, { path: `tcp:${e.host}:${e.port}`, tcp: { host: e.host, port } }, e.wait, `tcp:${e.host}:${e.port}`);
        return `tcp:${e.host}:${srv.tcpPort()}`;
      }
      case 'fd':
        return await openFd(spec, e.fd, e.server, e.wait, ctx);
      case 'unix-connect':
      case 'tcp-connect':
        return await connectOut(spec, ctx);
    }
  } catch (err) {
    if (err instanceof MonitorError) throw new Error(`${spec.where}: ${err.message}`);
    throw err;
  }
}

function tcpPort(text: string): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n <= 65535)) throw new MonitorError(`port '${text}' is not a number from 0 to 65535 (hostmemd does not look up service names)`);
  return n;
}

/** An inherited socket: a listening one is served, a connected one is one session. */
async function openFd(spec: MonitorSpec, n: number, serverMode: boolean, wait: boolean, ctx: MonitorContext): Promise<string> {
  const notSocket = new MonitorError(`File descriptor '${n}' is not a socket`);
  if (n < 0) throw notSocket;
  const fd = new native.Fd(n);
  let kind: string;
  try {
    kind = native.sockets.classifyFd(fd).kind;
  } catch {
    throw notSocket; // EBADF: nothing open at that number
  }
  if (kind === 'file') throw notSocket;
  // Inherited without close-on-exec; it is the monitor's, not for anything this process runs.
  fd.setCloexec(true);
  if (kind === 'listening-socket') {
    // QEMU without server=on would take a listening fd for a connection and never greet;
    // it can only mean "serve this", so hostmemd does.
    const local = localName(fd);
    await listenOn(spec, ctx, { path: local, fd: n }, serverMode && wait, local);
    return `fd:${n} (${local})`;
  }
  if (serverMode) throw new MonitorError('Failed to listen on fd socket: Invalid argument');
  const srv = server(spec, ctx, { path: `fd:${n}` });
  // pauseOnCreate: Node must not read it (the transport reads with recvmsg, keeping fds).
  const sock = new net.Socket({ fd: n, readable: true, writable: true, allowHalfOpen: true, pauseOnCreate: true } as net.SocketConstructorOpts);
  sock.once('close', () => ctx.logger.warn({ monitor: spec.label }, 'QMP monitor: the peer closed the connection; this monitor is gone (hostmemd keeps running, as QEMU does)'));
  srv.serveConnection(sock);
  return `fd:${n}`;
}

function localName(fd: native.Fd): string {
  try {
    const p = native.sockets.localPath(fd);
    if (p) return `unix:${p}`;
  } catch {
    /* not a UNIX socket */
  }
  return `fd:${fd.fd}`;
}

/** QEMU's client mode: connect to the peer, which listens. Without reconnect a failure stops
 *  the start and a closed connection ends the monitor; with reconnect=N both are retried
 *  every N seconds, the first failure reported as QEMU reports it. */
async function connectOut(spec: MonitorSpec, ctx: MonitorContext): Promise<string> {
  const e = spec.endpoint as Extract<MonitorSpec['endpoint'], { kind: 'unix-connect' | 'tcp-connect' }>;
  const target = e.kind === 'unix-connect' ? e.path : `${e.host}:${e.port}`;
  const port = e.kind === 'tcp-connect' ? tcpPort(e.port) : 0;
  const srv = server(spec, ctx, { path: target });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let reported = false;
  ctx.teardown.add(`monitor ${spec.label} reconnect`, () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  });
  const connect = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      // Paused before it connects, so Node never starts reading it: the transport reads with
      // recvmsg (bytes Node read would be lost to it, and fds with them).
      const sock = new net.Socket({ allowHalfOpen: true });
      sock.pause();
      if (e.kind === 'unix-connect') sock.connect({ path: e.path });
      else sock.connect({ host: e.host, port });
      sock.once('connect', () => {
        sock.removeAllListeners('error');
        resolve(sock);
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        sock.destroy();
        reject(new MonitorError(`Failed to connect to '${target}': ${typeof err.errno === 'number' ? native.strerror(Math.abs(err.errno)) : err.message}`));
      });
    });
  const serve = (sock: net.Socket): void => {
    sock.once('close', () => {
      if (stopped) return;
      if (e.reconnectS > 0) {
        ctx.logger.info({ monitor: spec.label, peer: target }, 'QMP monitor: the peer closed the connection; reconnecting');
        schedule();
      } else {
        ctx.logger.warn({ monitor: spec.label, peer: target }, 'QMP monitor: the peer closed the connection; this monitor is gone (hostmemd keeps running, as QEMU does)');
      }
    });
    srv.serveConnection(sock);
  };
  const attempt = (): void => {
    timer = undefined;
    if (stopped) return;
    connect().then(
      (sock) => {
        if (stopped) sock.destroy();
        else serve(sock);
      },
      (err: unknown) => {
        if (!reported) ctx.stderr(`Unable to connect character device ${spec.label}: ${errorText(err)}`);
        else ctx.logger.debug({ monitor: spec.label, err: errorText(err) }, 'QMP monitor: reconnect failed');
        reported = true;
        schedule();
      },
    );
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(attempt, e.reconnectS * 1000);
  };
  if (e.reconnectS === 0) {
    serve(await connect());
  } else {
    // QEMU starts anyway and keeps trying; the first try is made now.
    try {
      serve(await connect());
    } catch (err) {
      ctx.stderr(`Unable to connect character device ${spec.label}: ${errorText(err)}`);
      reported = true;
      schedule();
    }
  }
  return `${e.kind === 'unix-connect' ? 'unix' : 'tcp'}:${target} (connecting out)`;
}
