// Live handover to a successor process (hostmemd's cpr-transfer): the running daemon freezes
// its clients at message boundaries, passes every backend fd, lets the successor re-create the
// objects from the shared journal, then passes its listening sockets and client connections
// with their session state, and exits. Until the successor says it has everything, any failure
// leaves this daemon serving; the successor takes over only if it could take every object.
import * as path from 'node:path';
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { FdRegistry } from '../fds/registry';
import { HandoverChannel, MAX_HANDOVER_FDS } from './channel';
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
/** The successor must have re-created every object within this time. */
const READY_TIMEOUT_MS = 60000;
const DONE_TIMEOUT_MS = 30000;

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

/** The running daemon's side (the cpr-handover command). */
export class HandoverSender {
  private busy = false;

  constructor(private readonly src: HandoverSource) {}

  /** Steps until the successor holds every object; returns the commit step, to be run once
   *  the command's reply is written. Throws a QMP error (and keeps serving) on failure. */
  async prepare(spec: string, freezeTimeoutMs = FREEZE_TIMEOUT_MS): Promise<() => Promise<void>> {
    if (this.busy) throw genericError('a handover is already in progress');
    const priv = this.src.privateBackends();
    if (priv.length > 0) throw genericError(`backend '${priv[0]}' has private memory (share=off), which a handover cannot keep`);
    let ch: HandoverChannel;
    try {
      ch = HandoverChannel.connect(spec);
    } catch (e) {
      throw genericError(`cannot reach the new hostmemd at '${spec}': ${errorText(e)}`);
    }
    this.busy = true;
    const { monitor, fds, logger } = this.src;
    try {
      await monitor.freezeAll(1, freezeTimeoutMs);
      await ch.send({ t: 'hello', version: PROTOCOL_VERSION, pid: process.pid, stateDir: path.resolve(this.src.stateDir) });
      for (const batch of chunks([...fds.entries()], MAX_HANDOVER_FDS)) {
        await ch.send({ t: 'fds', names: batch.map(([n]) => n) }, batch.map(([, fd]) => fd));
      }
      await ch.send({ t: 'fds-end' });
      await ch.expect('ready', READY_TIMEOUT_MS);
    } catch (e) {
      // The successor may have refused and hung up while we were still sending: its reason
      // is then waiting in the channel, and says more than our broken pipe.
      const why = e instanceof native.SysError ? await ch.expect('ready', 1000).then(() => e, (r: unknown) => r) : e;
      ch.abort();
      ch.close();
      monitor.thawAll();
      this.busy = false;
      logger.warn({ err: why }, 'handover failed; still serving');
      throw genericError(`handover failed, this daemon keeps serving: ${errorText(why)}`);
    }
    return () => this.commit(ch);
  }

  /** Passes the listening sockets and the connections, then ends this daemon. */
  private async commit(ch: HandoverChannel): Promise<void> {
    const { monitor, logger } = this.src;
    const servers = this.src.servers();
    const dups = servers.map((s) => borrowed(s.listenerFd()).dup());
    for (const s of servers) s.closeForHandover();
    const { movable } = monitor.handoverSessions();
    let successor = 0;
    try {
      const exported: { session: QmpSession; fd: number; state: SessionExport }[] = [];
      for (const session of movable) {
        const x = await session.export();
        if (x) exported.push({ session, ...x }); // else it closed meanwhile
      }
      await ch.send({ t: 'listeners', paths: servers.map((s) => s.path) }, dups);
      for (const batch of chunks(exported, MAX_HANDOVER_FDS)) {
        await ch.send({ t: 'clients', sessions: batch.map((x) => toWire(x.state)) }, batch.map((x) => borrowed(x.fd)));
      }
      await ch.send({ t: 'commit' });
      successor = Number((await ch.expect('done', DONE_TIMEOUT_MS)).msg.pid);
    } catch (e) {
      // The successor did not confirm: listen again and carry on; nothing was lost.
      logger.error({ err: e }, 'handover failed after the reply; resuming service');
      ch.abort();
      ch.close();
      monitor.thawAll();
      for (const [i, s] of servers.entries()) {
        try {
          await s.relisten(dups[i].dup().fd);
        } catch (err) {
          logger.error({ err, socket: s.path }, 'cannot listen again after the failed handover');
        }
      }
      for (const d of dups) d.close();
      this.busy = false;
      return;
    }
    for (const session of movable) for (const s of servers) if (s.has(session)) s.dropHandedOver(session);
    for (const d of dups) d.close();
    ch.close();
    logger.info({ successor }, 'handed over to the new hostmemd');
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
  const channel = await HandoverChannel.accept(spec, () => logger.info({ channel: spec }, 'waiting for a handover (--incoming-cpr)'));
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
