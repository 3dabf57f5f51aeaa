// The daemon's internal events, created before anything else: parts announce what happened
// (an object added or deleted, a shutdown asked for, a command done, a client come or gone,
// preallocation progress) and others subscribe (QMP events, logs, metrics). No part holds a
// reference to one made after it.
import type { UserCreatable } from '../qom/user-creatable';
import type { PreallocEntry } from '../backends';
import type { QmpErrorBody } from '../errors/to-qmp';
import type { ExportRecord } from '../commands/export';

export type ShutdownReason = 'host-qmp-quit' | 'host-signal';

export interface DaemonEvents {
  'object-added': UserCreatable;
  'object-deleted': UserCreatable;
  /** `quit`: the SHUTDOWN event goes out before the reply, the stop after it. */
  'shutdown-requested': ShutdownReason;
  'prealloc-progress': PreallocEntry;
  'command-done': { command: string; client: string; error?: QmpErrorBody; startNs: bigint };
  'client-connected': { transport: 'unix'; client: string };
  'client-disconnected': { transport: 'unix'; client: string };
  /** memdev-export answered: a copy of a backend's fd goes to a client. */
  'memdev-exported': ExportRecord;
}

type Listener<K extends keyof DaemonEvents> = (payload: DaemonEvents[K]) => void;

export class EventBus {
  private readonly listeners: { [K in keyof DaemonEvents]?: Listener<K>[] } = {};

  on<K extends keyof DaemonEvents>(event: K, fn: Listener<K>): void {
    (this.listeners[event] ??= [] as Listener<K>[] as never).push(fn as never);
  }

  /** Calls every listener in subscription order, synchronously. */
  emit<K extends keyof DaemonEvents>(event: K, payload: DaemonEvents[K]): void {
    const list = this.listeners[event] as Listener<K>[] | undefined;
    if (list) for (const fn of list) fn(payload);
  }
}
