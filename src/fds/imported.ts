// Fds clients give the daemon (getfd, add-fd), QEMU's monitor fd semantics: named fds per
// connection, and fd sets that memory-backend-file opens as /dev/fdset/N (qemu_open's rule: a
// copy of the set's first fd whose access mode fits). Bounded: a client cannot fill the
// daemon's fd table, and what a connection gave is closed when it ends.
import { AsyncLocalStorage } from 'node:async_hooks';
import * as native from '../native';
import { genericError } from '../errors/qmp-error';

/** An fd as it arrives with a request: the transport's Fd (opaque to the protocol layer). */
export interface ReceivedFd {
  raw(syscall: string): number;
  close(): void;
}

/** Named fds (getfd) one connection may hold. */
export const MAX_NAMED_FDS_PER_CLIENT = 256;
export const TOO_MANY_NAMED_TEXT = `getfd: this connection holds ${MAX_NAMED_FDS_PER_CLIENT} named fds already; close some (closefd)`;
/** Fds in sets (add-fd), all connections together, and per connection. */
export const MAX_FDSET_FDS = 4096;
export const MAX_FDSET_FDS_PER_CLIENT = 256;
export const TOO_MANY_FDSET_TEXT = `add-fd: the fd sets hold ${MAX_FDSET_FDS} fds already; remove some (remove-fd)`;
export const TOO_MANY_FDSET_CLIENT_TEXT = `add-fd: this connection added ${MAX_FDSET_FDS_PER_CLIENT} fds to fd sets already; remove some (remove-fd)`;
/** QEMU's texts. */
export const NO_FD_TEXT = 'No file descriptor supplied via SCM_RIGHTS';
const notFound = (what: string): Error => genericError(`File descriptor named '${what}' not found`);

/** The prefix memory-backend-file's mem-path names an fd set with. */
export const FDSET_PREFIX = '/dev/fdset/';

interface SetFd {
  fd: native.Fd;
  opaque?: string;
  owner: string;
}

export class ImportedFds {
  private readonly named = new Map<string, Map<string, native.Fd>>();
  private readonly sets = new Map<number, SetFd[]>();
  private setFdCount = 0;
  private readonly perClient = new Map<string, number>();
  /** The connection whose command is running (object-add), across its awaits. */
  private readonly requester = new AsyncLocalStorage<string>();

  /** Runs `fn` (an object-add) on behalf of `client`: /dev/fdset/N then names only fds that
   *  client added, so no client can reach another's files through the fd sets. */
  runAs<T>(client: string, fn: () => T): T {
    return this.requester.run(client, fn);
  }

  private static own(fd: ReceivedFd): native.Fd {
    if (fd instanceof native.Fd) return fd;
    throw new Error('received fd of an unknown kind');
  }

  /** getfd: `fd` under `name` for `client`; an fd already there under that name is closed. */
  getfd(client: string, name: string, fd: ReceivedFd | undefined): void {
    if (!fd) throw genericError(NO_FD_TEXT);
    if (/^[0-9]/.test(name)) {
      fd.close();
      throw genericError("Parameter 'fdname' expects a name not starting with a digit");
    }
    let mine = this.named.get(client);
    if (!mine) this.named.set(client, (mine = new Map()));
    const old = mine.get(name);
    if (!old && mine.size >= MAX_NAMED_FDS_PER_CLIENT) {
      fd.close();
      throw genericError(TOO_MANY_NAMED_TEXT);
    }
    old?.close();
    mine.set(name, ImportedFds.own(fd));
  }

  closefd(client: string, name: string): void {
    const mine = this.named.get(client);
    const fd = mine?.get(name);
    if (!mine || !fd) throw genericError(`File descriptor named '${name}' not found`);
    mine.delete(name);
    fd.close();
  }

  addFd(client: string, fd: ReceivedFd | undefined, fdsetId?: number, opaque?: string): { 'fdset-id': number; fd: number } {
    if (!fd) throw genericError(NO_FD_TEXT);
    const fail = (text: string): never => {
      fd.close();
      throw genericError(text);
    };
    if (fdsetId !== undefined && fdsetId < 0) fail("Parameter 'fdset-id' expects a non-negative value");
    if (this.setFdCount >= MAX_FDSET_FDS) fail(TOO_MANY_FDSET_TEXT);
    if ((this.perClient.get(client) ?? 0) >= MAX_FDSET_FDS_PER_CLIENT) fail(TOO_MANY_FDSET_CLIENT_TEXT);
    let id = fdsetId;
    if (id === undefined) {
      // QEMU takes the lowest id no set has.
      id = 0;
      while (this.sets.has(id)) id++;
    }
    let set = this.sets.get(id);
    if (!set) this.sets.set(id, (set = []));
    const own = ImportedFds.own(fd);
    set.push({ fd: own, opaque, owner: client });
    this.setFdCount++;
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    return { 'fdset-id': id, fd: own.fd };
  }

  removeFd(fdsetId: number, fd?: number): void {
    const set = this.sets.get(fdsetId);
    const label = fd === undefined ? `fdset-id:${fdsetId}` : `fdset-id:${fdsetId}, fd:${fd}`;
    if (!set) throw notFound(label);
    const gone = fd === undefined ? set.slice() : set.filter((e) => e.fd.fd === fd);
    if (gone.length === 0) throw notFound(label);
    for (const e of gone) this.drop(fdsetId, e);
  }

  private drop(fdsetId: number, e: SetFd): void {
    const set = this.sets.get(fdsetId);
    if (!set) return;
    const i = set.indexOf(e);
    if (i < 0) return;
    set.splice(i, 1);
    e.fd.close();
    this.setFdCount--;
    const n = (this.perClient.get(e.owner) ?? 1) - 1;
    if (n > 0) this.perClient.set(e.owner, n);
    else this.perClient.delete(e.owner);
    if (set.length === 0) this.sets.delete(fdsetId);
  }

  /** query-fdsets: highest id first, each set's fds oldest first (QEMU's order). */
  query(): { 'fdset-id': number; fds: { fd: number; opaque?: string }[] }[] {
    return [...this.sets.keys()]
      .sort((a, b) => b - a)
      .map((id) => ({
        'fdset-id': id,
        fds: (this.sets.get(id) ?? []).map((e) => (e.opaque === undefined ? { fd: e.fd.fd } : { fd: e.fd.fd, opaque: e.opaque })),
      }));
  }

  /** A connection ended: its named fds and the fds it put in sets are closed (a backend made
   *  from a set holds its own copy). */
  clientGone(client: string): void {
    const mine = this.named.get(client);
    if (mine) for (const fd of mine.values()) fd.close();
    this.named.delete(client);
    if (!this.perClient.has(client)) return;
    for (const [id, set] of [...this.sets]) for (const e of set.slice()) if (e.owner === client) this.drop(id, e);
  }

  /** qemu_open of "/dev/fdset/N": a copy (close-on-exec) of the first fd of set N whose access
   *  mode is `accessMode` (O_RDONLY, O_WRONLY, O_RDWR), among the fds the requesting
   *  connection added itself (runAs): another client's fds are as if absent. Errors as errnos,
   *  as open(2) would give: ENOENT (no such set), EACCES (no fd of that mode). */
  openFromSet(path: string, accessMode: number): native.Fd {
    const id = parseFdsetPath(path);
    const client = this.requester.getStore();
    const set = (id === undefined ? [] : (this.sets.get(id) ?? [])).filter((e) => e.owner === client);
    if (set.length === 0) throw new native.SysError('open', 2 /* ENOENT */);
    for (const e of set) if (e.fd.accessMode === accessMode) return e.fd.dup();
    throw new native.SysError('open', 13 /* EACCES */);
  }

  /** Every held fd is closed (daemon exit). */
  closeAll(): void {
    for (const client of [...this.named.keys()]) this.clientGone(client);
    for (const [id, set] of [...this.sets]) for (const e of set.slice()) this.drop(id, e);
  }
}

/** N of "/dev/fdset/N" (qemu_parse_fd's rule: decimal digits only), or undefined. */
export function parseFdsetPath(path: string): number | undefined {
  if (!path.startsWith(FDSET_PREFIX)) return undefined;
  const n = path.slice(FDSET_PREFIX.length);
  if (!/^[0-9]+$/.test(n)) return undefined;
  const v = Number(n);
  return Number.isSafeInteger(v) ? v : undefined;
}
