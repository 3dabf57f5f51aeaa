// Where the QMP sockets go and who owns them: shared by the daemon and hostmemd-supervise,
// which creates the sockets itself so that they outlive a crashed daemon.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DaemonOptions } from './cli';

/** The default socket when no --qmp is given: $RUNTIME_DIRECTORY (systemd) or the state dir. */
export function defaultQmpPath(options: Pick<DaemonOptions, 'stateDir'>, env: NodeJS.ProcessEnv): string {
  const runtimeDir = env.RUNTIME_DIRECTORY?.split(':')[0];
  return path.join(runtimeDir || options.stateDir, 'qmp.sock');
}

/** Looks a group name (or number) up in /etc/group. */
export function resolveGroup(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const [g, , gid] = line.split(':');
    if (g === name) return Number(gid);
  }
  throw new Error(`unknown group '${name}'`);
}
