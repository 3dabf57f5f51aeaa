// Test helper: a small service manager that follows sd_notify(3) and sd_listen_fds(3) the way
// systemd 252 does for a Type=notify unit with a fd store: it owns $NOTIFY_SOCKET (datagrams
// with SCM_RIGHTS), keeps FDSTORE=1 fds by FDNAME (the same file twice is kept once;
// FDSTOREREMOVE=1 drops every fd of the name), and starts the daemon with
// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES: listening sockets first, then the store.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import * as native from '../../src/native';
import { ROOT, tmpDir } from './daemon';
import { NotifyServer, StoredFd } from '../../src/service/notify-server';

const S = native.sockets;

export type { StoredFd } from '../../src/service/notify-server';

export class ServiceManager {
  readonly dir = tmpDir('hostmemd-sm-');
  readonly stateDir = path.join(this.dir, 'state');
  readonly notifyPath = path.join(this.dir, 'notify');
  /** Every notification received, in order ("READY=1\nSTATUS=..."). */
  readonly messages: string[] = [];
  /** Listening sockets passed at every start (socket activation), by name. */
  readonly listeners: { name: string; fd: native.Fd; path: string }[] = [];
  proc?: ChildProcess;
  stderr = '';
  private readonly notify: NotifyServer;
  private waiters: (() => void)[] = [];

  constructor() {
    fs.mkdirSync(this.stateDir);
    this.notify = new NotifyServer(this.notifyPath, (text) => {
      this.messages.push(text);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** The fd store, newest first. */
  get store(): StoredFd[] {
    return this.notify.store;
  }

  /** A listening stream socket at `file`, owned by the manager (like a .socket unit). */
  listen(name: string, file = path.join(this.dir, `${name}.sock`)): string {
    const fd = S.socket(S.SOCK_STREAM);
    S.bind(fd, file);
    S.listen(fd, 64);
    this.listeners.push({ name, fd, path: file });
    return file;
  }

  /** Resolves when a notification matching `re` has arrived (at or after index `from`). */
  async waitFor(re: RegExp, from = 0, timeoutMs = 15000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.messages.slice(from).find((m) => re.test(m));
      if (hit) return hit;
      if (this.proc && this.proc.exitCode !== null && this.proc.signalCode === null && !re.test('')) {
        throw new Error(`daemon exited (${this.proc.exitCode}) before ${re}: ${this.stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`no notification matching ${re}; got ${JSON.stringify(this.messages.slice(from))}; stderr: ${this.stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Empties the store, as `systemctl stop` does. */
  dropStore(): void {
    this.notify.dropStore();
  }

  storeNames(): string[] {
    return this.notify.names();
  }

  /** The store's names once they equal `expected` (notifications are datagrams the manager
   *  reads on its own schedule, so a test waits for them instead of racing them); after the
   *  timeout, whatever they are, for the test's assertion to show. */
  async storeSettles(expected: string[], timeoutMs = 5000): Promise<string[]> {
    const want = JSON.stringify([...expected].sort());
    const deadline = Date.now() + timeoutMs;
    while (JSON.stringify(this.storeNames()) !== want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.storeNames();
  }

  /** Starts the daemon as systemd would: fds at 3.., LISTEN_PID set to the daemon's own pid
   *  (through `exec`, which keeps the pid), NOTIFY_SOCKET, WATCHDOG_USEC if given. Resolves on
   *  READY=1. */
  async start(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
    const passed = [...this.listeners.map((l) => ({ name: l.name, fd: l.fd })), ...this.store];
    const names = passed.map((p) => p.name).join(':');
    const from = this.messages.length;
    this.stderr = '';
    const script = 'LISTEN_PID=$$ exec "$@"';
    const proc = spawn('/bin/sh', ['-c', script, 'sh', process.execPath, path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', this.stateDir, ...args], {
      env: {
        ...process.env,
        NOTIFY_SOCKET: this.notifyPath,
        ...(passed.length > 0 ? { LISTEN_FDS: String(passed.length), LISTEN_FDNAMES: names } : {}),
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe', ...passed.map((p) => p.fd.fd)],
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.proc = proc;
    await this.waitFor(/^READY=1/m, from);
    return proc;
  }

  /** SIGKILL, as `systemctl kill -s KILL --kill-who=main`; resolves once it is gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
    const gone = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    return gone;
  }

  async close(): Promise<void> {
    await this.kill();
    await this.notify.close();
    for (const l of this.listeners.splice(0)) l.fd.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
