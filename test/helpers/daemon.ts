// Test helper: starts hostmemd in-process (fast, for protocol tests) or as a real child
// process of bin/hostmemd (for integration tests), each on a fresh temporary state dir.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import pino from 'pino';
import { RawQmpClient } from './qmp-client';
import { startDaemon, Daemon } from '../../src/daemon/main';
import { parseCli } from '../../src/daemon/cli';

export const ROOT = path.resolve(__dirname, '..', '..');

export function tmpDir(prefix = 'hostmemd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Sends `signal` to a child process unless it has exited already, and resolves once it has
 *  (a test must not end with a child still running: jest would wait for it, or warn). */
export async function killAndWait(proc: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill(signal);
  await gone;
}

export interface InProcess {
  daemon: Daemon;
  dir: string;
  sock: string;
  stop(): Promise<void>;
}

export async function startInProcess(extraArgs: string[] = []): Promise<InProcess> {
  const dir = tmpDir();
  let daemon: Daemon;
  try {
    const cli = parseCli(['--state-dir', dir, ...extraArgs], {});
    if (cli.kind !== 'run') throw new Error(cli.output);
    daemon = await startDaemon(cli.options, pino({ level: 'silent' }));
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true }); // a refused start leaves no directory behind
    throw e;
  }
  return {
    daemon,
    dir,
    sock: daemon.socketPaths[0],
    stop: async () => {
      await daemon.shutdown('host-signal');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Child {
  proc: ChildProcess;
  dir: string;
  sock: string;
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** SIGKILLs the daemon if it still runs, waits for its exit and removes its state dir. */
  stop(): Promise<void>;
}

/** Spawns the built daemon (dist/ must exist: `npm run build`) and waits for its socket. */
export async function spawnDaemon(args: string[] = [], env: NodeJS.ProcessEnv = {}, sockPath?: string): Promise<Child> {
  const dir = tmpDir();
  const sock = sockPath ?? path.join(dir, 'qmp.sock');
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  await waitForFile(sock, proc, () => err, { tolerateExit: true });
  // The file appears at bind(), a moment before listen(): wait until it accepts connections.
  if (proc.exitCode === null) await waitConnectable(sock);
  const stop = async (): Promise<void> => {
    await killAndWait(proc);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { proc, dir, sock, stderr: () => err, exited, stop };
}

/** Waits (10 s at most) until `file` exists. If `proc` exits first, that is an error carrying
 *  its stderr, unless `tolerateExit` (the caller then looks at the exit itself). */
export async function waitForFile(file: string, proc?: ChildProcess, stderr: () => string = () => '', how: { tolerateExit?: boolean } = {}): Promise<void> {
  const deadline = Date.now() + 10000;
  while (!fs.existsSync(file)) {
    if (proc && proc.exitCode !== null) {
      if (how.tolerateExit) return;
      throw new Error(`process exited (${proc.exitCode}) before creating ${file}: ${stderr()}`);
    }
    if (Date.now() > deadline) throw new Error(`${file} did not appear: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once a server accepts connections on `sock` (a socket file may exist before). */
export async function waitConnectable(sock: string, timeoutMs = 10000): Promise<void> {
  const net = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(sock);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepts connections on ${sock}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An in-process daemon with one negotiated UNIX-socket client (the common test fixture). */
export async function startWithClient(args: string[] = []): Promise<{ d: InProcess; c: RawQmpClient }> {
  const d = await startInProcess(args);
  return { d, c: await RawQmpClient.negotiated(d.sock) };
}

export async function stopWithClient(f: { d?: InProcess; c?: RawQmpClient }): Promise<void> {
  f.c?.close();
  await f.d?.stop();
}
