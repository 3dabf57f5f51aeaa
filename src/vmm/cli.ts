// hostmemd-upgrade's command line: upgrade a running VMM onto a successor process without
// copying guest RAM (see upgrade.ts). With --qmp/--memdev the successor gets its memory from
// hostmemd through hostmemd-run, exactly as the old VMM did.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { upgradeVmm, UpgradeError, UpgradeResult } from './upgrade';
import { QemuMonitor } from './qemu-monitor';
import { counterBootSector } from './counter-guest';
import { errorText } from '../errors/text';

export const UPGRADE_USAGE = `Usage: hostmemd-upgrade --vmm-qmp unix:PATH [--qmp unix:PATH --memdev ID[:FD]...] [options] -- COMMAND [ARGS...]

Moves a running QEMU guest whose RAM is shared memory (hostmemd backends, or any share=on
file) to a new QEMU process without copying the RAM: COMMAND (the successor's command line,
normally the old one, perhaps with a new binary) is started with -incoming defer, both sides
enable x-ignore-shared, the device state moves over a private UNIX socket, and the old VMM is
stopped once the successor runs. On any failure the successor is killed and the old VMM goes on.

  --vmm-qmp unix:PATH   the running VMM's QMP socket (a server=on socket the successor takes
                        over: it binds a temporary name, renamed into place on success)
  --qmp unix:PATH       hostmemd's QMP socket: start COMMAND through hostmemd-run with the
  --memdev ID[:FD]      given backends at the given fd numbers (as the old VMM was started)
  --timeout MS          bound on the migration (default 60000); cancelled after that
  --successor-log FILE  append the successor's stdout and stderr to FILE (default: kept
                        only while upgrading, its last lines shown if the upgrade fails)
  --json                print the timings as one JSON object
  --write-counter-guest FILE   write a 512-byte test guest (a counter at 0x7e00) and exit
  -h, --help            this text

Exit status: 0 upgraded; 1 failed, the old VMM runs on; 2 bad usage; 3 failed and the old VMM
could not be confirmed running.
`;

export interface UpgradeCli {
  vmmQmp: string;
  hostmemd?: string;
  memdevs: string[];
  timeoutMs?: number;
  logFile?: string;
  json: boolean;
  command: string[];
}

function unixPath(v: string, opt: string): string {
  const p = v.startsWith('unix:') ? v.slice(5) : v;
  if (!p) throw new Error(`${opt}: expected unix:PATH`);
  return p;
}

export function parseUpgradeCli(args: readonly string[]): UpgradeCli | { help: true } | { counterGuest: string } {
  const out: UpgradeCli = { vmmQmp: '', memdevs: [], json: false, command: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (): string => {
      if (i + 1 >= args.length) throw new Error(`${a} needs a value`);
      return args[++i];
    };
    if (a === '--') {
      out.command = args.slice(i + 1);
      break;
    } else if (a === '-h' || a === '--help') return { help: true };
    else if (a === '--vmm-qmp') out.vmmQmp = unixPath(value(), a);
    else if (a === '--qmp') out.hostmemd = unixPath(value(), a);
    else if (a === '--memdev') out.memdevs.push(value());
    else if (a === '--timeout') {
      const v = Number(value());
      if (!Number.isInteger(v) || v <= 0) throw new Error('--timeout: expected a positive number of milliseconds');
      out.timeoutMs = v;
    } else if (a === '--successor-log') out.logFile = value();
    else if (a === '--json') out.json = true;
    else if (a === '--write-counter-guest') return { counterGuest: value() };
    else throw new Error(`unknown option '${a}'`);
  }
  if (!out.vmmQmp) throw new Error('--vmm-qmp unix:PATH is required');
  if (out.command.length === 0) throw new Error('no successor command: give it after --');
  if (out.memdevs.length > 0 && !out.hostmemd) throw new Error('--memdev needs --qmp (hostmemd\'s socket)');
  return out;
}

/** The successor's full command: through hostmemd-run when hostmemd provides the memory. */
export function successorArgv(cli: UpgradeCli, launcher: string): string[] {
  if (!cli.hostmemd) return cli.command;
  return [process.execPath, launcher, '--qmp', `unix:${cli.hostmemd}`, ...cli.memdevs.flatMap((m) => ['--memdev', m]), '--', ...cli.command];
}

export async function runUpgradeCli(args: readonly string[]): Promise<number> {
  let cli: ReturnType<typeof parseUpgradeCli>;
  try {
    cli = parseUpgradeCli(args);
  } catch (e) {
    process.stderr.write(`hostmemd-upgrade: ${errorText(e)}\n${UPGRADE_USAGE}`);
    return 2;
  }
  if ('help' in cli) {
    process.stdout.write(UPGRADE_USAGE);
    return 0;
  }
  if ('counterGuest' in cli) {
    fs.writeFileSync(cli.counterGuest, counterBootSector());
    return 0;
  }
  const launcher = path.join(__dirname, '..', '..', 'bin', 'hostmemd-run');
  try {
    const r = await upgradeVmm({
      vmmQmp: cli.vmmQmp,
      command: successorArgv(cli, launcher),
      migrateTimeoutMs: cli.timeoutMs,
      logFile: cli.logFile,
      log: (l) => process.stderr.write(`hostmemd-upgrade: ${l}\n`),
    });
    await report(cli, { 'old-pid': r.oldPid, 'new-pid': r.newPid, status: 'completed', ...whole('total-time-ms', r.totalTimeMs), ...whole('downtime-ms', r.downtimeMs), ...whole('wall-time-ms', r.wallMs) });
    if (cli.json) process.stdout.write(JSON.stringify(r) + '\n');
    else process.stdout.write(`upgraded: pid ${r.oldPid} -> ${r.newPid}; migration ${r.totalTimeMs} ms (downtime ${r.downtimeMs} ms, ${r.transferredBytes} bytes sent); whole upgrade ${r.wallMs.toFixed(0)} ms\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`hostmemd-upgrade: ${errorText(e)}\n`);
    if (e instanceof UpgradeError && e.oldPid !== undefined) await report(cli, { 'old-pid': e.oldPid, 'new-pid': e.newPid ?? 0, status: 'failed', error: e.message });
    return e instanceof UpgradeError && e.oldResumed ? 1 : 3;
  }
}

/** A figure as the whole milliseconds record-vmm-upgrade takes (absent when QEMU gave none). */
const whole = (name: string, ms: number): Record<string, number> => (Number.isFinite(ms) ? { [name]: Math.round(ms) } : {});

/** Tells hostmemd about the upgrade (query-vmms lists it); a daemon that cannot be reached
 *  does not change the outcome. */
async function report(cli: UpgradeCli, args: Record<string, unknown>): Promise<void> {
  if (!cli.hostmemd) return;
  try {
    const mon = await QemuMonitor.connect(cli.hostmemd, 5000);
    try {
      await mon.execute('record-vmm-upgrade', args, 5000);
    } finally {
      mon.close();
    }
  } catch (e) {
    process.stderr.write(`hostmemd-upgrade: could not record the upgrade in hostmemd: ${errorText(e)}\n`);
  }
}

export type { UpgradeResult };
