// The named-fd registry (QEMU's cpr_save_fd/cpr_find_fd, qemu-facts §6.5): every backend fd
// is kept by its backend's name, so a restarted or handed-over daemon can find the very same
// memory again. Persistence (systemd fd store, handover) hooks in through `onChange`.
import type { Fd } from '../native';

export interface FdRegistryHooks {
  saved?(name: string, fd: Fd): void;
  removed?(name: string): void;
}

export class FdRegistry {
  private readonly fds = new Map<string, Fd>();
  constructor(private readonly hooks: FdRegistryHooks = {}) {}

  /** A preserved fd for `name`, taken out of the "waiting to be claimed" state. */
  find(name: string): Fd | undefined {
    return this.fds.get(name);
  }

  save(name: string, fd: Fd): void {
    this.fds.set(name, fd);
    this.hooks.saved?.(name, fd);
  }

  /** Forgets `name` (object-del or failed creation). The caller closes the fd. */
  drop(name: string): void {
    if (this.fds.delete(name)) this.hooks.removed?.(name);
  }

  names(): string[] {
    return [...this.fds.keys()];
  }
}
