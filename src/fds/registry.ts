// The named-fd registry (QEMU's cpr_save_fd/cpr_find_fd, qemu-facts §6.5): every backend fd
// is kept by its backend's name, so a restarted or handed-over daemon finds the very same
// memory again. Fds inherited at start (systemd's fd store, a handover) wait here, "preserved",
// until a backend of that name claims them. A mirror (systemd's fd store, a supervisor's)
// keeps a copy of the set outside this process.
import type { Fd } from '../native';
import { crashPoint } from '../crash-point';

/** A copy of the registry kept outside the process, so that memory outlives it. */
export interface FdStoreMirror {
  /** A backend now holds `fd` under `name`; `preserve` is false when the fd does not hold the
   *  memory's contents (a private mapping). May throw: the backend's creation then fails. */
  saved(name: string, fd: Fd, preserve: boolean): void;
  /** `name` is gone for good (object-del, failed creation, unclaimed at start). */
  removed(name: string): void;
}

export class FdRegistry {
  private readonly fds = new Map<string, Fd>();
  private readonly preserved = new Map<string, Fd>();
  /** Preserved fds that came from the mirror's store itself (passed at start): still in it. */
  private readonly inStore = new Set<Fd>();
  constructor(private readonly mirror?: FdStoreMirror) {}

  /** Offers an inherited fd under `name` to the backend that will claim it; `fromStore`: it was
   *  passed from the store the mirror keeps (systemd's, a supervisor's), which still holds it. */
  adopt(name: string, fd: Fd, fromStore = false): void {
    const old = this.preserved.get(name);
    if (old && old !== fd) {
      this.inStore.delete(old);
      old.close();
    }
    this.preserved.set(name, fd);
    if (fromStore) this.inStore.add(fd);
  }

  /** The fd for `name`: a preserved one waiting to be claimed, or the one a backend holds. */
  find(name: string): Fd | undefined {
    return this.preserved.get(name) ?? this.fds.get(name);
  }

  isPreserved(name: string): boolean {
    return this.preserved.has(name);
  }

  /** A backend holds `fd` under `name` (claiming a preserved fd, or a new one). */
  save(name: string, fd: Fd, preserve = true): void {
    // A restart's backends claim the fds the store passed back: storing each again would cost
    // one sd_notify message per backend before READY and change nothing in the store.
    if (!(preserve && this.inStore.has(fd) && this.preserved.get(name) === fd)) this.mirror?.saved(name, fd, preserve);
    this.inStore.delete(fd);
    crashPoint('fd-stored');
    if (this.preserved.get(name) === fd) this.preserved.delete(name);
    this.fds.set(name, fd);
  }

  /** `name` is gone for good (object-del or failed creation): forgotten here and in the
   *  mirror. The caller closes the fd. */
  drop(name: string): void {
    if (this.fds.delete(name)) {
      this.mirror?.removed(name);
      crashPoint('fd-removed');
    }
  }

  /** This process lets go of `name` but the memory lives on (shutdown, a failed start, a
   *  handover): forgotten here only, the mirror keeps it. The caller closes the fd. */
  letGo(name: string): void {
    this.fds.delete(name);
  }

  /** A preserved fd that will not be claimed (its backend failed, or none asked): closed and
   *  removed from the fd store. */
  discardPreserved(name: string): void {
    const fd = this.preserved.get(name);
    if (!fd) return;
    this.preserved.delete(name);
    this.inStore.delete(fd);
    fd.close();
    this.mirror?.removed(name);
  }

  /** Names of preserved fds nobody has claimed. */
  unclaimed(): string[] {
    return [...this.preserved.keys()];
  }

  /** Names of fds held by backends. */
  names(): string[] {
    return [...this.fds.keys()];
  }

  /** Every fd held by a backend, by name (handover sends these). */
  entries(): IterableIterator<[string, Fd]> {
    return this.fds.entries();
  }
}
