// Test helper: a minimal QMP server that answers memdev-export as hostmemd does (the reply body
// and the backend's fds as SCM_RIGHTS on the same message), with memfds the test controls. It
// lets the launcher's tests check fd placement and refusals without a daemon, and play a
// daemon that misbehaves (wrong fd count, silence).
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as native from '../../src/native';
import { tmpDir } from './daemon';

const S = native.sockets;

export interface FakeMemdev {
  /** The reply's `return` body (fds names included). */
  body: Record<string, unknown>;
  /** The fds sent with the reply. */
  fds: native.Fd[];
}

export interface FakeServerOptions {
  /** Never answer memdev-export (a stuck daemon). */
  silent?: boolean;
}

export class FakeExportServer {
  readonly dir = tmpDir('hostmemd-fake-');
  readonly sock = path.join(this.dir, 'qmp.sock');
  readonly memdevs = new Map<string, FakeMemdev | { error: { class: string; desc: string } }>();
  /** Every command received, in order. */
  readonly commands: string[] = [];
  private readonly listener: native.Fd;
  private readonly conns = new Set<native.Fd>();
  private readonly serving = new Set<Promise<void>>();
  private closed = false;
  private readonly loop: Promise<void>;

  constructor(private readonly opts: FakeServerOptions = {}) {
    this.listener = S.socket(S.SOCK_STREAM);
    S.bind(this.listener, this.sock);
    S.listen(this.listener);
    this.loop = this.acceptLoop();
  }

  /** A memfd of `size` bytes exported as `id` (its fd is owned by the server). */
  addMemfd(id: string, size = 1 << 20, extra: string[] = []): native.Fd {
    const fd = native.memfdCreate(`fake-${id}`, native.MFD_CLOEXEC);
    native.ftruncate(fd, BigInt(size));
    const fds = [fd, ...extra.map(() => native.memfdCreate(`fake-${id}-extra`, native.MFD_CLOEXEC))];
    this.memdevs.set(id, {
      body: { id, type: 'memory-backend-memfd', size, offset: 0, 'page-size': 4096, share: true, readonly: false, fds: ['memory', ...extra] },
      fds,
    });
    return fd;
  }

  private async acceptLoop(): Promise<void> {
    while (!this.closed) {
      let c: native.Fd;
      try {
        c = await S.accept(this.listener);
      } catch {
        return;
      }
      this.conns.add(c);
      const p: Promise<void> = this.serve(c)
        .catch(() => undefined)
        .finally(() => {
          this.conns.delete(c);
          this.serving.delete(p);
          c.close();
        });
      this.serving.add(p);
    }
  }

  private async serve(c: native.Fd): Promise<void> {
    const send = (v: unknown, fds: native.Fd[] = []): Promise<number> => S.sendWithFdsAsync(c, Buffer.from(JSON.stringify(v) + '\r\n'), fds);
    await send({ QMP: { version: { qemu: { micro: 0, minor: 1, major: 11 }, package: 'fake' }, capabilities: [] } });
    let buf = '';
    for (;;) {
      let got: native.Received;
      try {
        got = await S.receiveWithFds(c, 65536);
      } catch {
        return;
      }
      for (const fd of got.fds) fd.close();
      if (got.data.length === 0) return;
      buf += got.data.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { execute: string; arguments?: { id?: string }; id?: unknown };
        buf = buf.slice(nl + 1);
        this.commands.push(msg.execute);
        const id = msg.id;
        if (msg.execute === 'qmp_capabilities') await send({ return: {}, id });
        else if (msg.execute === 'memdev-export') {
          if (this.opts.silent) continue;
          // An event just before the reply: the client must still give the fds to the reply.
          await send({ timestamp: { seconds: 0, microseconds: 0 }, event: 'FAKE_EVENT' });
          const m = this.memdevs.get(msg.arguments?.id ?? '');
          if (!m) await send({ error: { class: 'GenericError', desc: `Memory backend '${msg.arguments?.id}' not found` }, id });
          else if ('error' in m) await send({ error: m.error, id });
          else await send({ return: m.body, id }, m.fds);
        } else await send({ error: { class: 'CommandNotFound', desc: `The command ${msg.execute} has not been found` }, id });
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    S.shutdown(this.listener);
    this.listener.close();
    for (const c of this.conns) {
      try {
        S.shutdown(c);
      } catch {
        /* already gone */
      }
    }
    await this.loop;
    await Promise.all([...this.serving]);
    for (const m of this.memdevs.values()) if ('fds' in m) for (const fd of m.fds) fd.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
