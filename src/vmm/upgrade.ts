// Upgrades a running VMM (QEMU) whose guest RAM is hostmemd memory, without copying that RAM:
// the successor starts on the same backends with `-incoming defer`, both enable
// `x-ignore-shared` (shared RAM is not sent: both processes map the same pages), the device
// state moves over a private UNIX socket, and the old VMM is stopped only once the successor
// runs. Any failure before that point kills the successor and resumes the old VMM, so the guest
// never stops for good and none of its memory is lost (it stays in hostmemd throughout).
// Everything here is plain QMP to QEMU: no QEMU patches.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { QemuMonitor, MonitorError } from './qemu-monitor';
import { serverSocketPaths, successorCommand } from './argv';
import { sockets, Fd } from '../native';
import { errorText } from '../errors/text';

export interface UpgradeOptions {
  /** The running VMM's QMP socket. */
  vmmQmp: string;
  /** The successor's command line (the old VMM's, perhaps with a new binary), including any
   *  launcher prefix such as `hostmemd-run ... --`; `-incoming defer` is added. */
  command: string[];
  /** Bound on the migration itself (default 60 s); it is cancelled after that. */
  migrateTimeoutMs?: number;
  /** Bound on the successor's start, until its monitor answers (default 30 s). */
  startTimeoutMs?: number;
  /** Where the successor's stdout and stderr go (appended). By default a file of the tool's
   *  own that is removed at the end: the successor outlives the tool, and a pipe it inherited
   *  would keep whoever reads the tool's output waiting until the VMM exits. */
  logFile?: string;
  log?: (line: string) => void;
  /** Fault injection for tests: called right after `migrate` was accepted by the old VMM. */
  afterMigrateStarted?: (successorPid: number) => void | Promise<void>;
}

export interface UpgradeResult {
  oldPid: number;
  newPid: number;
  /** QEMU's figures from query-migrate on the old VMM (ms, bytes). */
  totalTimeMs: number;
  downtimeMs: number;
  setupTimeMs: number;
  transferredBytes: number;
  /** The whole operation, from connecting to the old VMM to its exit. */
  wallMs: number;
  /** Of which: starting the successor until its monitor answered. */
  startMs: number;
  /** Of which: from `migrate` to the successor confirmed running the guest. */
  switchMs: number;
}

export class UpgradeError extends Error {
  constructor(
    message: string,
    /** Whether the old VMM was seen running (or in its previous state) after the failure. */
    readonly oldResumed: boolean,
    readonly oldPid?: number,
    readonly newPid?: number,
  ) {
    super(message);
  }
}

const MIGRATE_BANDWIDTH = 100 * 1024 * 1024 * 1024; // bytes/s: device state only, never RAM
const DOWNTIME_LIMIT_MS = 10;
const POLL_MS = 1;
const CONNECT_TIMEOUT_MS = 5000;
const LOG_TAIL_BYTES = 4096;
const SWITCH_TIMEOUT_MS = 5000;
const EXIT_TIMEOUT_MS = 10_000;
/** States in which a migration is over (query-migrate). */
const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

type Migrate = { status?: string; 'total-time'?: number; downtime?: number; 'setup-time'?: number; ram?: { transferred?: number }; 'error-desc'?: string };

export async function upgradeVmm(opts: UpgradeOptions): Promise<UpgradeResult> {
  const t0 = performance.now();
  const log = opts.log ?? (() => undefined);
  let old: QemuMonitor;
  try {
    old = await QemuMonitor.connect(opts.vmmQmp, CONNECT_TIMEOUT_MS);
  } catch (e) {
    // Nothing was changed yet. QEMU serves one client per QMP monitor: a management stack
    // that stays connected keeps the tool out (the VMM needs a second -qmp for upgrades).
    throw new UpgradeError(`cannot reach the VMM's monitor: ${errorText(e)} (QEMU serves one client per QMP monitor at a time: if another client stays connected, start the VMM with a second -qmp socket for upgrades)`, true);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-upgrade-'));
  let successor: ChildProcess | undefined;
  let succMon: QemuMonitor | undefined;
  let renames: { from: string; to: string }[] = [];
  let oldIgnoreShared = false;
  let migrationStarted = false;
  let logFile: string | undefined;
  const oldPid = sockets.peerCredentials(new Fd((old.socket as unknown as { _handle: { fd: number } })._handle.fd)).pid;
  try {
    const status = (await old.execute<{ status: string }>('query-status')).status;
    if (status !== 'running' && status !== 'paused') throw new UpgradeError(`the VMM (pid ${oldPid}) is '${status}', not running or paused: nothing to upgrade`, true);
    const mig = await old.execute<Migrate>('query-migrate');
    if (mig.status && !FINISHED.has(mig.status)) throw new UpgradeError(`the VMM (pid ${oldPid}) is already migrating (${mig.status})`, true);
    const caps = await old.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
    oldIgnoreShared = caps.some((c) => c.capability === 'x-ignore-shared' && c.state);

    // The successor: same backends through the launcher, its sockets under temporary names.
    const takeOver = serverSocketPaths(opts.command).filter((p) => fs.existsSync(p));
    const cmd = successorCommand(opts.command, path.join(work, 'monitor.sock'), takeOver, `.upgrade-${process.pid}`);
    renames = cmd.renames;
    for (const r of renames) fs.rmSync(r.from, { force: true });
    const tStart = performance.now();
    logFile = opts.logFile ?? path.join(work, 'successor.log');
    const out = fs.openSync(logFile, 'a', 0o600);
    try {
      successor = spawn(cmd.argv[0], cmd.argv.slice(1), { stdio: ['ignore', out, out], detached: true });
    } finally {
      fs.closeSync(out);
    }
    const spawned = successor;
    const spawnError = new Promise<never>((_, reject) => spawned.once('error', (e) => reject(new UpgradeError(`cannot start the successor: ${errorText(e)}`, true))));
    spawnError.catch(() => undefined);
    succMon = await Promise.race([QemuMonitor.connect(path.join(work, 'monitor.sock'), opts.startTimeoutMs ?? 30_000, () => spawned.exitCode === null && spawned.signalCode === null), spawnError]);
    const startMs = performance.now() - tStart;
    const newPid = spawned.pid!;
    log(`successor pid ${newPid} waiting for the migration (${startMs.toFixed(0)} ms to start)`);

    const capArgs = { capabilities: [{ capability: 'x-ignore-shared', state: true }] };
    await old.execute('migrate-set-capabilities', capArgs);
    await succMon.execute('migrate-set-capabilities', capArgs);
    await old.execute('migrate-set-parameters', { 'max-bandwidth': MIGRATE_BANDWIDTH, 'downtime-limit': DOWNTIME_LIMIT_MS });
    const uri = `unix:${path.join(work, 'migrate.sock')}`;
    await succMon.execute('migrate-incoming', { uri });
    const tMigrate = performance.now();
    await old.execute('migrate', { uri });
    migrationStarted = true;
    await opts.afterMigrateStarted?.(newPid);

    const deadline = Date.now() + (opts.migrateTimeoutMs ?? 60_000);
    let m: Migrate;
    for (;;) {
      m = await old.execute<Migrate>('query-migrate');
      if (m.status && FINISHED.has(m.status)) break;
      if (Date.now() > deadline) throw new UpgradeError(`the migration did not finish within ${opts.migrateTimeoutMs ?? 60_000} ms`, false);
      await sleep(POLL_MS);
    }
    if (m.status !== 'completed') throw new UpgradeError(`the migration ${m.status}${m['error-desc'] ? `: ${m['error-desc']}` : ''}`, false);

    // Completed on the old side: the successor must now run the guest (or stay paused as the
    // old one was) before the old VMM may go.
    const want = status === 'running' ? 'running' : 'paused';
    const switchDeadline = Date.now() + SWITCH_TIMEOUT_MS;
    for (;;) {
      const s = (await succMon.execute<{ status: string }>('query-status', undefined, SWITCH_TIMEOUT_MS)).status;
      if (s === want) break;
      if (Date.now() > switchDeadline) throw new UpgradeError(`the successor did not take over (its state is '${s}')`, false);
      await sleep(POLL_MS);
    }
    const switchMs = performance.now() - tMigrate;
    log(`successor pid ${newPid} runs the guest; stopping pid ${oldPid}`);
    try {
      await old.execute('quit');
    } catch {
      // quit closes the connection; whether the answer arrived first does not matter.
    }
    old.close();
    if (!(await waitExit(oldPid, EXIT_TIMEOUT_MS))) process.kill(oldPid, 'SIGKILL');
    // Only now: QEMU removes its socket files by name as it exits, so a successor's socket
    // renamed into place earlier would lose its name. Clients that connect in between (the old
    // VMM's exit, a few ms) find no socket and retry.
    for (const r of renames) fs.renameSync(r.from, r.to);
    succMon.close();
    spawned.unref();
    return {
      oldPid,
      newPid,
      totalTimeMs: m['total-time'] ?? NaN,
      downtimeMs: m.downtime ?? NaN,
      setupTimeMs: m['setup-time'] ?? NaN,
      transferredBytes: m.ram?.transferred ?? NaN,
      wallMs: performance.now() - t0,
      startMs,
      switchMs,
    };
  } catch (e) {
    const resumed = await rollBack(old, successor, succMon, renames, migrationStarted, oldIgnoreShared, log);
    old.close();
    const why = e instanceof MonitorError ? `${e.command}: ${e.desc}` : errorText(e);
    const said = logFile ? lastLines(logFile) : '';
    throw new UpgradeError(`upgrade failed: ${why}; ${resumed ? 'the old VMM runs on' : 'the old VMM could not be confirmed running'}${said ? `\nthe successor said:\n${said}` : ''}`, resumed, oldPid, successor?.pid);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The end of the successor's output, for the failure message (bounded). */
function lastLines(file: string): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.slice(-LOG_TAIL_BYTES).trim().split('\n').slice(-10).join('\n');
  } catch {
    return '';
  }
}

/** Puts things back after a failure: the successor is killed first (never two VMMs running the
 *  same guest), then the old VMM resumes if the migration had stopped it. */
async function rollBack(
  old: QemuMonitor,
  successor: ChildProcess | undefined,
  succMon: QemuMonitor | undefined,
  renames: { from: string; to: string }[],
  migrationStarted: boolean,
  oldIgnoreShared: boolean,
  log: (line: string) => void,
): Promise<boolean> {
  succMon?.close();
  if (successor?.pid !== undefined && successor.exitCode === null && successor.signalCode === null) {
    const gone = new Promise((r) => successor.once('exit', r));
    try {
      process.kill(-successor.pid, 'SIGKILL');
    } catch {
      successor.kill('SIGKILL');
    }
    await Promise.race([gone, sleep(EXIT_TIMEOUT_MS)]);
  }
  for (const r of renames) fs.rmSync(r.from, { force: true });
  try {
    if (migrationStarted) {
      const m = await old.execute<Migrate>('query-migrate');
      if (m.status && !FINISHED.has(m.status)) {
        await old.execute('migrate_cancel');
        const deadline = Date.now() + SWITCH_TIMEOUT_MS;
        while (!FINISHED.has((await old.execute<Migrate>('query-migrate')).status ?? 'none') && Date.now() < deadline) await sleep(POLL_MS);
      }
    }
    let s = (await old.execute<{ status: string }>('query-status')).status;
    // A completed migration leaves the old VMM in 'postmigrate'; `cont` re-activates its
    // block devices and runs the guest again (the successor is gone by now).
    if (s === 'postmigrate' || s === 'finish-migrate') {
      await old.execute('cont');
      s = (await old.execute<{ status: string }>('query-status')).status;
    }
    if (!oldIgnoreShared) await old.execute('migrate-set-capabilities', { capabilities: [{ capability: 'x-ignore-shared', state: false }] }).catch(() => undefined);
    log(`old VMM is '${s}'`);
    return s === 'running' || s === 'paused';
  } catch (e) {
    log(`cannot check the old VMM: ${errorText(e)}`);
    return false;
  }
}
