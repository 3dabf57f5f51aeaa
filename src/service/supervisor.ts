// The daemon's side of hostmemd-supervise's ownership: the supervisor holds the QMP sockets and
// the fd store, so a daemon that outlives it can preserve nothing and blocks the socket for a
// new supervisor. The supervisor names itself in $HOSTMEMD_SUPERVISOR_PID; the daemon then asks
// the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG) and stops like on any SIGTERM.
import * as native from '../native';

/** Set by hostmemd-supervise for the daemon it starts: its own pid. */
export const SUPERVISOR_PID_ENV = 'HOSTMEMD_SUPERVISOR_PID';

export interface Supervisor {
  readonly pid: number;
  /** Whether the supervisor is still this process's parent (an orphan is re-parented). */
  alive(): boolean;
}

/** When started by hostmemd-supervise: arranges SIGTERM at its death and returns a handle to
 *  check on it; undefined for any other start. The variable is removed from `env`, so nothing
 *  this process starts mistakes itself for the supervisor's child. The death signal is set
 *  first and the parent checked after, so a supervisor that died before is noticed too (the
 *  caller checks alive() at once). Throws SysError if prctl fails. */
export function followSupervisor(env: NodeJS.ProcessEnv): Supervisor | undefined {
  const raw = env[SUPERVISOR_PID_ENV];
  delete env[SUPERVISOR_PID_ENV];
  if (raw === undefined) return undefined;
  const pid = Number(raw);
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  // PR_SET_PDEATHSIG fires when the parent *thread* that forked us dies; the supervisor forks
  // from its main thread, whose end is the end of the process.
  native.setParentDeathSignal(native.SIGTERM);
  return { pid, alive: () => native.getppid() === pid };
}
