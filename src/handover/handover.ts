// Live handover to a successor process (hostmemd's cpr-transfer): the running daemon freezes
// its clients at message boundaries, passes every backend fd, lets the successor re-create the
// objects from the shared journal, then passes its listening sockets and client connections
// with their session state, and exits. Until the successor says it has everything, any failure
// leaves this daemon serving; the successor takes over only if it could take every object.
import * as path from 'node:path';
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { FdRegistry } from '../fds/registry';
import { HandoverChannel, MAX_HANDOVER_FDS, peerRefusal } from './channel';
import { parseJsonText } from '../json/stream';
import { Monitor } from '../qmp/monitor';
import { Queued, QmpSession, SessionExport } from '../qmp/session';
import { encodeJson } from '../json/writer';
import type { Log } from '../log';
import { errorText } from '../errors/text';

const PROTOCOL_VERSION = 1;
/** Default time for clients to finish the message they are sending and for running commands
 *  to end. */
const FREEZE_TIMEOUT_MS = 5000;
/** The largest freeze-timeout a client may ask for: while it runs, every client waits
 *  (qapi/hostmemd.json and README document it). */
export const MAX_FREEZE_TIMEOUT_MS = 10000;
/** Everything after the freeze — passing the fds, the successor re-creating the objects and
 *  saying ready, passing the sockets and its 'done' — must end within this. Clients are thus
 *  frozen at most freeze-timeout + HANDOVER_EXCHANGE_MS; past that the successor is abandoned
 *  and every client thawed. */
export const HANDOVER_EXCHANGE_MS = 10000;

interface WireSession {
  negotiated: boolean;
  oob: boolean;
  queue: ({ v: string } | { e: string })[];
  pending: string;
  negotiateBy?: number;
}

function toWire(s: SessionExport): WireSession {
  return {
    negotiated: s.negotiated,
    oob: s.oob,
    queue: s.queue.map((q) => (q.kind === 'value' ? { v: encodeJson(q.value) } : { e: q.desc })),
    pending: s.pending.toString('base64'),
    ...(s.negotiateBy !== undefined ? { negotiateBy: s.negotiateBy } : {}),
  };
}

function fromWire(w: WireSession): SessionExport {
  return {
    negotiated: w.negotiated,
    oob: w.oob,
    queue: w.queue.map((q): Queued => ('v' in q ? { kind: 'value', value: parseJsonText(q.v) } : { kind: 'error', desc: q.e })),
    pending: Buffer.from(w.pending, 'base64'),
    ...(typeof w.negotiateBy === 'number' ? { negotiateBy: w.negotiateBy } : {}),
  };
}

function chunks<T>(items: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
  return out.length > 0 ? out : [[]];
}

/** A file descriptor number owned by someone else (Node's handles), wrapped only to be sent. */
const borrowed = (fd: number): native.Fd => new native.Fd(fd);

/** What the handover needs of a listening QMP socket (transport/unix-socket.ts has it). */
export interface HandoverListener {
  readonly path: string;
  listenerFd(): number;
  closeForHandover(): void;
  relisten(fd: number): Promise<void>;
  has(session: QmpSession): boolean;
  dropHandedOver(session: QmpSession): void;
}

export interface HandoverSource {
  /** The narrow port of the monitor a handover uses. */
  monitor: Pick<Monitor, 'freezeAll' | 'thawAll' | 'handoverSessions'>;
  fds: FdRegistry;
  servers(): readonly HandoverListener[];
  stateDir: string;
  /** Ids of backends whose memory a handover cannot keep (share=off). */
  privateBackends(): string[];
  logger: Log;
  /** The successor has taken over: stop without releasing the memory or the journal. */
  finish(successorPid: number): void;
}

/** One handover attempt's time limit: from the freeze on, the whole exchange must end within
 *  `boundMs`. When it passes, `onExpire` (set by the current step) abandons the successor and
 *  thaws the clients at once, without waiting for a call that is still pending. */
class Attempt {
  expired = false;
  onExpire: () => void = () => undefined;
  private readonly deadline: number;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly ch: HandoverChannel,
    readonly boundMs: number,
  ) {
    this.deadline = Date.now() + boundMs;
    this.timer = setTimeout(() => {
      this.expired = true;
      this.ch.abort();
      this.onExpire();
    }, boundMs);
  }

  get reason(): string {
    return `the new hostmemd did not finish within ${this.boundMs} ms (freeze-timeout + ${HANDOVER_EXCHANGE_MS} ms); it is abandoned`;
  }

  remaining(): number {
    return Math.max(1, this.deadline - Date.now());
  }

  /** Throws once the time is up: the step that was waiting must not go on. */
  check(): void {
    if (this.expired) throw new Error(this.reason);
  }

  end(): void {
    clearTimeout(this.timer);
  }
}

/** The running daemon's side (the cpr-handover command). */
export class HandoverSender {
  private busy = false;

  constructor(private readonly src: HandoverSource) {}

  /** Steps until the successor holds every object; returns the commit step, to be run once
   *  the command's reply is written. Throws a QMP error (and keeps serving) on failure. */
  async prepare(spec: string, freezeTimeoutMs = FREEZE_TIMEOUT_MS): Promise<() => Promise<void>> {
    if (this.busy) throw genericError('a handover is already in progress');
    if (freezeTimeoutMs > MAX_FREEZE_TIMEOUT_MS) throw genericError(`Parameter 'freeze-timeout' expects at most ${MAX_FREEZE_TIMEOUT_MS} (milliseconds)`);
    const priv = this.src.privateBackends();
    if (priv.length > 0) throw genericError(`backend '${priv[0]}' has private memory (share=off), which a handover cannot keep`);
    const ch = this.reach(spec);
    this.busy = true;
    const { monitor, fds, logger } = this.src;
    const attempt = new Attempt(ch, freezeTimeoutMs + HANDOVER_EXCHANGE_MS);
    let thawed = false;
    const thaw = (): void => {
      if (thawed) return;
      thawed = true;
      monitor.thawAll();
    };
    attempt.onExpire = () => {
      logger.warn({ peerPid: ch.peer.pid, boundMs: attempt.boundMs }, 'handover: the new hostmemd is too slow; abandoned, clients thawed');
      thaw();
    };
    try {
      // No pool thread waits on the successor longer than the whole attempt may take.
      ch.limitWaits(attempt.boundMs);
      await monitor.freezeAll(1, freezeTimeoutMs);
      attempt.check();
      await ch.send({ t: 'hello', version: PROTOCOL_VERSION, pid: process.pid, stateDir: path.resolve(this.src.stateDir) });
      for (const batch of chunks([...fds.entries()], MAX_HANDOVER_FDS)) {
        attempt.check();
        await ch.send({ t: 'fds', names: batch.map(([n]) => n) }, batch.map(([, fd]) => fd));
      }
      attempt.check();
      await ch.send({ t: 'fds-end' });
      await ch.expect('ready'); // the attempt's deadline ends this wait (it shuts the channel)
      attempt.check();
    } catch (e) {
      // The successor may have refused and hung up while we were still sending: its reason
      // is then waiting in the channel, and says more than our broken pipe.
      const brokenPipe = !attempt.expired && e instanceof native.SysError;
      const why = attempt.expired ? attempt.reason : !brokenPipe ? e : await ch.expect('ready', Math.min(1000, attempt.remaining())).then(() => e, (r: unknown) => r);
      attempt.end();
      ch.abort();
      ch.close();
      thaw();
      this.busy = false;
      logger.warn({ err: why, peerPid: ch.peer.pid }, 'handover failed; still serving');
      throw genericError(`handover failed, this daemon keeps serving: ${errorText(why)}`);
    }
    return () => this.commit(attempt);
  }

  /** Connects to the successor and makes sure it already has this process's rights. */
  private reach(spec: string): HandoverChannel {
    let ch: HandoverChannel;
    try {
      ch = HandoverChannel.connect(spec);
    } catch (e) {
      throw genericError(`cannot reach the new hostmemd at '${spec}': ${errorText(e)}`);
    }
    const ownUid = process.geteuid!();
    const refusal = peerRefusal(ch.peer, ownUid);
    const who = { channel: spec, peerPid: ch.peer.pid, peerUid: ch.peer.uid, peerGid: ch.peer.gid };
    if (refusal) {
      this.src.logger.warn(who, 'handover refused: wrong peer');
      ch.close(); // nothing was sent
      throw genericError(`handover refused: the process at '${spec}' ${refusal}`);
    }
    this.src.logger.info(who, 'handover: starting');
    return ch;
  }

  /** Passes the listening sockets and the connections, then ends this daemon. */
  private async commit(attempt: Attempt): Promise<void> {
    const { ch } = attempt;
    const { monitor, logger } = this.src;
    const servers = this.src.servers();
    const dups = servers.map((s) => borrowed(s.listenerFd()).dup());
    // Listen again and carry on; nothing was lost. Runs once, at the deadline or on failure.
    let resumed: Promise<void> | undefined;
    let listenersClosed = false;
    const resume = (): Promise<void> =>
      (resumed ??= (async () => {
        ch.abort();
        monitor.thawAll();
        if (!listenersClosed) return;
        for (const [i, s] of servers.entries()) {
          try {
            await s.relisten(dups[i].dup().fd);
          } catch (err) {
            logger.error({ err, socket: s.path }, 'cannot listen again after the failed handover');
          }
        }
      })());
    attempt.onExpire = () => {
      logger.error({ peerPid: ch.peer.pid, boundMs: attempt.boundMs }, 'handover: the new hostmemd did not confirm in time; resuming service');
      void resume();
    };
    let successor = 0;
    try {
      attempt.check(); // (the time may have run out while the reply was written)
      for (const s of servers) s.closeForHandover();
      listenersClosed = true;
      const { movable } = monitor.handoverSessions();
      const exported: { session: QmpSession; fd: number; state: SessionExport }[] = [];
      for (const session of movable) {
        const x = await session.export();
        attempt.check();
        if (x) exported.push({ session, ...x }); // else it closed meanwhile
      }
      await ch.send({ t: 'listeners', paths: servers.map((s) => s.path) }, dups);
      for (const batch of chunks(exported, MAX_HANDOVER_FDS)) {
        attempt.check();
        await ch.send({ t: 'clients', sessions: batch.map((x) => toWire(x.state)) }, batch.map((x) => borrowed(x.fd)));
      }
      attempt.check();
      await ch.send({ t: 'commit' });
      successor = Number((await ch.expect('done')).msg.pid);
      attempt.check();
      attempt.end();
      for (const session of movable) for (const s of servers) if (s.has(session)) s.dropHandedOver(session);
    } catch (e) {
      attempt.end();
      logger.error({ err: attempt.expired ? attempt.reason : e }, 'handover failed after the reply; resuming service');
      await resume();
      for (const d of dups) d.close();
      ch.close();
      this.busy = false;
      return;
    }
    for (const d of dups) d.close();
    ch.close();
    logger.info({ successor, peerPid: ch.peer.pid, peerUid: ch.peer.uid }, 'handed over to the new hostmemd');
    this.src.finish(successor);
  }
}

/** What the successor received before re-creating the objects. */
export interface IncomingStart {
  channel: HandoverChannel;
  fromPid: number;
  fds: { name: string; fd: native.Fd }[];
}

/** The successor's side, part 1: waits for the running daemon and takes the backend fds. */
export async function receiveHandoverStart(spec: string, stateDir: string, logger: Log): Promise<IncomingStart> {
  const ownUid = process.geteuid!();
  const admit = (peer: native.sockets.PeerCredentials): string | undefined => {
    const refusal = peerRefusal(peer, ownUid);
    if (refusal) logger.warn({ channel: spec, peerPid: peer.pid, peerUid: peer.uid }, `handover: refused a connection: the process ${refusal}; still waiting`);
    return refusal;
  };
  const channel = await HandoverChannel.accept(spec, () => logger.info({ channel: spec }, 'waiting for a handover (--incoming-cpr)'), admit);
  logger.info({ channel: spec, peerPid: channel.peer.pid, peerUid: channel.peer.uid }, 'handover: the running daemon connected');
  const fds: { name: string; fd: native.Fd }[] = [];
  try {
    const hello = (await channel.expect('hello')).msg;
    if (hello.version !== PROTOCOL_VERSION) throw new Error(`handover protocol version ${String(hello.version)} is not ${PROTOCOL_VERSION}`);
    if (hello.stateDir !== path.resolve(stateDir)) {
      throw new Error(`the running daemon's state directory is ${String(hello.stateDir)}, this one's is ${path.resolve(stateDir)}: they must be the same`);
    }
    for (;;) {
      const m = await channel.receive();
      if (m.msg.t === 'fds-end') break;
      if (m.msg.t !== 'fds') throw new Error(`handover: unexpected '${String(m.msg.t)}'`);
      const names = m.msg.names as string[];
      if (names.length !== m.fds.length) throw new Error('handover: fd count does not match the names');
      m.fds.forEach((fd, i) => fds.push({ name: names[i], fd }));
    }
    return { channel, fromPid: Number(hello.pid), fds };
  } catch (e) {
    for (const f of fds) f.fd.close();
    await channel.send({ t: 'error', desc: errorText(e) }).catch(() => undefined);
    channel.close();
    throw e;
  }
}

/** What the successor takes over after saying it is ready. */
export interface IncomingTakeover {
  listeners: { path: string; fd: native.Fd }[];
  clients: { fd: native.Fd; state: SessionExport }[];
}

/** The successor's side, part 2: reports readiness (or why not), then takes the sockets. */
export async function receiveHandoverTakeover(start: IncomingStart, refusal: string | undefined): Promise<IncomingTakeover> {
  const ch = start.channel;
  if (refusal !== undefined) {
    await ch.send({ t: 'error', desc: refusal }).catch(() => undefined);
    ch.close();
    throw new Error(refusal);
  }
  await ch.send({ t: 'ready', pid: process.pid });
  const out: IncomingTakeover = { listeners: [], clients: [] };
  try {
    const l = await ch.expect('listeners');
    const paths = l.msg.paths as string[];
    l.fds.forEach((fd, i) => out.listeners.push({ path: paths[i], fd }));
    for (;;) {
      const m = await ch.receive();
      if (m.msg.t === 'commit') break;
      if (m.msg.t !== 'clients') throw new Error(`handover: unexpected '${String(m.msg.t)}'`);
      const sessions = m.msg.sessions as WireSession[];
      m.fds.forEach((fd, i) => out.clients.push({ fd, state: fromWire(sessions[i]) }));
    }
  } catch (e) {
    for (const x of [...out.listeners, ...out.clients]) x.fd.close();
    ch.close();
    throw e;
  }
  return out;
}

/** The successor's side, part 3: everything is taken over. */
export async function confirmHandover(start: IncomingStart): Promise<void> {
  await start.channel.send({ t: 'done', pid: process.pid });
  start.channel.close();
}
