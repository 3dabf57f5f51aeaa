// The handover wire: a SOCK_SEQPACKET UNIX socket between the running daemon and its
// successor (`--incoming-cpr unix:PATH`). Each message is one JSON object, split into
// fragments of at most FRAGMENT_BYTES (a datagram must fit the socket buffer); fds ride as
// SCM_RIGHTS on the last fragment, at most MAX_FDS_PER_MESSAGE per message. Both ends know who
// the other is (SO_PEERCRED) before anything is sent: only the same uid or root may take part.
import * as fs from 'node:fs';
import * as native from '../native';

const S = native.sockets;
const FRAGMENT_BYTES = 48 * 1024;
const MORE = 0x4d; // 'M': more fragments follow
const END = 0x45; // 'E': last fragment
export const MAX_HANDOVER_FDS = S.MAX_FDS_PER_MESSAGE;

export interface ChannelMessage {
  msg: Record<string, unknown>;
  fds: native.Fd[];
}

/** Why a peer may not take part in a handover, or undefined if it may: the fds, sockets and
 *  connections that cross the channel carry this process's rights, so the other end must
 *  already have them — the same effective uid, or root. */
export function peerRefusal(peer: native.sockets.PeerCredentials, ownUid: number): string | undefined {
  if (peer.uid === ownUid || peer.uid === 0) return undefined;
  return `runs as uid ${peer.uid}, not as this daemon's uid ${ownUid} (nor as root)`;
}

export class HandoverChannel {
  private constructor(
    private readonly sock: native.Fd,
    /** Who is at the other end (SO_PEERCRED), read before anything was sent. */
    readonly peer: native.sockets.PeerCredentials,
  ) {}

  /** The running daemon's side: connects to the successor's socket (never blocking: a full
   *  backlog is an error) and learns who listens there. Sends nothing. */
  static connect(spec: string): HandoverChannel {
    const path = parseChannel(spec);
    const sock = S.socket(S.SOCK_SEQPACKET);
    try {
      S.connectNow(sock, path);
      return new HandoverChannel(sock, S.peerCredentials(sock));
    } catch (e) {
      sock.close();
      throw e;
    }
  }

  /** The successor's side: listens at `spec` and waits (off the event loop) for the daemon.
   *  A connection from a process `admit` refuses (it returns the reason) is closed unread and
   *  the wait goes on, so that nobody else can stand in for the real daemon. */
  static async accept(spec: string, onListening?: () => void, admit: (peer: native.sockets.PeerCredentials) => string | undefined = () => undefined): Promise<HandoverChannel> {
    const path = parseChannel(spec);
    const l = S.socket(S.SOCK_SEQPACKET);
    try {
      try {
        if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
      } catch {
        /* not there */
      }
      // Bound under a temporary name and renamed once listening: the path never names a
      // socket that would refuse a connection (a daemon connecting between bind and listen).
      const tmp = `${path}.${process.pid}.tmp`;
      fs.rmSync(tmp, { force: true });
      S.bind(l, tmp);
      try {
        fs.chmodSync(tmp, 0o600);
        S.listen(l, 1);
        fs.renameSync(tmp, path);
      } catch (e) {
        fs.rmSync(tmp, { force: true });
        throw e;
      }
      onListening?.();
      for (;;) {
        const sock = await S.accept(l);
        let peer: native.sockets.PeerCredentials;
        try {
          peer = S.peerCredentials(sock);
        } catch {
          sock.close(); // gone already
          continue;
        }
        if (admit(peer) === undefined) return new HandoverChannel(sock, peer);
        sock.close();
      }
    } finally {
      l.close();
      fs.rmSync(path, { force: true });
    }
  }

  async send(msg: Record<string, unknown>, fds: readonly native.Fd[] = []): Promise<void> {
    const data = Buffer.from(JSON.stringify(msg));
    for (let off = 0; ; off += FRAGMENT_BYTES) {
      const last = off + FRAGMENT_BYTES >= data.length;
      const frag = Buffer.concat([Buffer.from([last ? END : MORE]), data.subarray(off, off + FRAGMENT_BYTES)]);
      await S.sendWithFdsAsync(this.sock, frag, last ? fds : []);
      if (last) return;
    }
  }

  /** The next message; rejects when the peer has gone. */
  async receive(): Promise<ChannelMessage> {
    const parts: Buffer[] = [];
    for (;;) {
      const r = await S.receiveWithFds(this.sock, FRAGMENT_BYTES + 1, MAX_HANDOVER_FDS);
      if (r.data.length === 0) {
        for (const fd of r.fds) fd.close();
        throw new Error('the other hostmemd closed the handover channel');
      }
      parts.push(r.data.subarray(1));
      if (r.data[0] === END) {
        const msg = JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown>;
        return { msg, fds: r.fds };
      }
      for (const fd of r.fds) fd.close();
    }
  }

  /** The next message, which must be of type `t` (an 'error' message from the peer throws).
   *  With a timeout, the channel is shut down when it passes (the wait is on a pool thread). */
  async expect(t: string, timeoutMs?: number): Promise<ChannelMessage> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        this.abort();
      }, timeoutMs);
    }
    let m: ChannelMessage;
    try {
      m = await this.receive();
    } catch (e) {
      if (timedOut) throw new Error(`no '${t}' from the other hostmemd within ${timeoutMs} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    if (m.msg.t === t) return m;
    for (const fd of m.fds) fd.close();
    if (m.msg.t === 'error') throw new Error(String(m.msg.desc));
    throw new Error(`handover: expected '${t}', got '${String(m.msg.t)}'`);
  }

  /** Every later send or receive on the channel fails (EAGAIN) instead of waiting longer than
   *  `ms` for the peer. */
  limitWaits(ms: number): void {
    S.setWaitLimit(this.sock, ms);
  }

  /** Ends the conversation now: a pending receive on either side returns. */
  abort(): void {
    try {
      S.shutdown(this.sock);
    } catch {
      /* already closed */
    }
  }

  close(): void {
    this.sock.close();
  }
}

/** "unix:PATH" (QEMU's spelling of a UNIX socket address). */
export function parseChannel(spec: string): string {
  if (!spec.startsWith('unix:') || spec.length === 5) throw new Error(`bad handover channel '${spec}': must be unix:PATH`);
  return spec.slice(5);
}
