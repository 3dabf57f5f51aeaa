// The crash-point test hook (src/crash-point.ts) for the crash-consistency test: when the
// operator sets HOSTMEMD_TEST_CRASH_FILE, every crash point reads that file; if it names the
// point ("object-add:synced", optionally followed by " abort"), the file is removed and the
// daemon dies on the spot (SIGKILL, or abort()). A test hook only: never set it in production.
import * as fs from 'node:fs';
import { setCrashHook } from '../crash-point';

export const CRASH_FILE_ENV = 'HOSTMEMD_TEST_CRASH_FILE';

/** Installs the hook if the environment asks for it; returns whether it did. */
export function installCrashHook(env: NodeJS.ProcessEnv): boolean {
  const file = env[CRASH_FILE_ENV];
  if (!file) return false;
  setCrashHook((name) => {
    let want: string;
    try {
      // Synchronous on purpose: the process must die at this very step, not a tick later.
      want = fs.readFileSync(file, 'utf8').trim();
    } catch {
      return;
    }
    const [point, how] = want.split(/\s+/);
    if (point !== name) return;
    fs.rmSync(file, { force: true });
    if (how === 'abort') process.abort();
    process.kill(process.pid, 'SIGKILL');
  });
  return true;
}
