// Test helper: QEMU 7.2 as the live reference. Starts `qemu-system-x86_64 -machine none` with
// a QMP UNIX socket when the binary exists; tests that need it say loudly when it does not.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { tmpDir, startInProcess, InProcess } from './daemon';

export const QEMU_BIN = 'qemu-system-x86_64';

export function qemuAvailable(): boolean {
  return spawnSync(QEMU_BIN, ['--version'], { stdio: 'ignore' }).status === 0;
}

export interface QemuRef {
  sock: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startQemu(extra: string[] = []): Promise<QemuRef> {
  const dir = tmpDir('hostmemd-qemu-');
  const sock = path.join(dir, 'qmp.sock');
  const proc = spawn(QEMU_BIN, ['-machine', 'none', '-nodefaults', '-display', 'none', '-qmp', `unix:${sock},server=on,wait=off`, ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const deadline = Date.now() + 10000;
  while (!fs.existsSync(sock)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error('QEMU did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    sock,
    proc,
    stop: async () => {
      if (proc.exitCode === null) {
        const gone = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await gone;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Prints a loud skip notice once per test file. */
export function announceSkip(what: string, why: string): void {
  console.warn(`\n*** SKIPPED: ${what}: ${why} ***\n`);
}

/** Inside a describe block: QEMU 7.2 and an in-process hostmemd, started before the block's
 *  tests and stopped after them (the differential tests' fixture). */
/** `hostmemdArgs`: extra command-line options of the hostmemd side. */
export function qemuAndHostmemd(hostmemdArgs: string[] = []): { readonly qemu: QemuRef; readonly hostmemd: InProcess } {
  const refs: { qemu?: QemuRef; hostmemd?: InProcess } = {};
  beforeAll(async () => {
    refs.qemu = await startQemu();
    refs.hostmemd = await startInProcess(hostmemdArgs);
  });
  afterAll(async () => {
    await refs.qemu?.stop();
    await refs.hostmemd?.stop();
  });
  return {
    get qemu() {
      return refs.qemu!;
    },
    get hostmemd() {
      return refs.hostmemd!;
    },
  };
}
