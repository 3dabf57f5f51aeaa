// The state journal: one file per live object under <state-dir>/objects/, holding the validated
// object-add arguments (kept current by qom-set) and the identity of the backend's fd. Each
// write is atomic and durable (temp file, fsync, rename, fsync of the directory) and finishes
// before the command's reply; one file per object keeps every write O(1) and confines damage
// to the entry it hits. Entries that cannot be used are moved to objects/rejected/, not lost.
// A full or read-only file system is a state of the journal, not a reason not to start: the
// directory may be missing or unwritable, a failed write leaves no temp file, and probe()
// tells when writes work again.
// The directory is read as data, not trusted: only regular files of bounded size are read, no
// symlink is followed, and nothing that could block (a FIFO, a device) is ever opened for reading.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { JsonValue, isJsonObject } from '../json/value';
import { encodeJson } from '../json/writer';
import { parseJsonText } from '../json/stream';
import { errorText } from '../errors/text';

export const JOURNAL_VERSION = 1;
const SUFFIX = '.json';

/** The largest entry read back. A real entry is a few hundred bytes (the object-add arguments
 *  and an fd identity); anything near this is not one of ours, and reading it would only cost
 *  time and memory at every start. */
export const MAX_ENTRY_BYTES = 1024 * 1024;

/** How entries are opened: never through a symlink (ELOOP), never waiting for a FIFO's writer
 *  or a device (O_NONBLOCK), never becoming a controlling terminal. */
const ENTRY_OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY;

const kindOf = (st: fs.Stats): string =>
  st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'an unknown kind of file';

/** Reads one entry's text as data: the file itself (not what a symlink names), a regular file
 *  only, at most MAX_ENTRY_BYTES. Throws with the reason otherwise. */
export function readEntryFile(file: string): string {
  // lstat first, so that nothing that is not a regular file is even opened (opening a device
  // can have effects of its own); the fstat after the open settles a race with a swap.
  const pre = fs.lstatSync(file);
  if (!pre.isFile()) throw new Error(`${kindOf(pre)}, not a regular file`);
  let fd: number;
  try {
    fd = fs.openSync(file, ENTRY_OPEN_FLAGS);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new Error('a symbolic link, not a regular file');
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`${kindOf(st)}, not a regular file`);
    if (st.size > MAX_ENTRY_BYTES) throw new Error(`${st.size} bytes, larger than the ${MAX_ENTRY_BYTES} bytes an entry may have`);
    // Room for one byte more than fstat saw: a file that grows meanwhile is caught, not read on.
    const buf = Buffer.allocUnsafe(st.size + 1);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > st.size) throw new Error('it grew while being read');
    }
    return buf.toString('utf8', 0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** The checks an entry must pass besides its checksum: it is the entry of the object its file
 *  is named after, in both places that name it (the record and the object-add arguments). */
function checkNamed(e: JournalEntry, id: string): void {
  if (e.id !== id) throw new Error(`names object '${e.id}' but is stored as '${id}'`);
  if (e.args.id !== id) throw new Error(`its arguments name object ${encodeJson(e.args.id ?? null)} but it is stored as '${id}'`);
}

/** The fd a backend held when journaled: what a preserved fd must match to be reattached. */
export interface FdIdentity {
  name: string;
  dev: string;
  ino: string;
}

export interface JournalEntry {
  id: string;
  /** Creation order: objects come back in it (qom-list order). */
  seq: number;
  /** The object-add arguments, with qom-set changes applied. */
  args: Record<string, JsonValue>;
  fd?: FdIdentity;
}

/** An entry the journal could not read back. */
export interface JournalProblem {
  file: string;
  id?: string;
  reason: string;
}


const digest = (text: string): string => createHash('sha256').update(text).digest('hex');

/** File content: the entry as one line of JSON, then its SHA-256, so any damage is detected. */
export function encodeEntry(e: JournalEntry): string {
  const body: Record<string, JsonValue> = { version: JOURNAL_VERSION, id: e.id, seq: e.seq, args: e.args };
  if (e.fd) body.fd = { name: e.fd.name, dev: e.fd.dev, ino: e.fd.ino };
  const line = encodeJson(body);
  return `${line}\nsha256:${digest(line)}\n`;
}

export function decodeEntry(text: string): JournalEntry {
  const nl = text.indexOf('\n');
  if (nl < 0) throw new Error('truncated (no checksum line)');
  const line = text.slice(0, nl);
  const sum = /^sha256:([0-9a-f]{64})\n?$/.exec(text.slice(nl + 1));
  if (!sum) throw new Error('truncated or damaged checksum line');
  if (sum[1] !== digest(line)) throw new Error('checksum mismatch (the entry was damaged)');
  const v = parseJsonText(line);
  if (!isJsonObject(v)) throw new Error('not a JSON object');
  if (v.version !== JOURNAL_VERSION) throw new Error(`unsupported journal version ${String(v.version)}`);
  if (typeof v.id !== 'string' || typeof v.seq !== 'number' || !isJsonObject(v.args)) throw new Error('missing id, seq or args');
  const entry: JournalEntry = { id: v.id, seq: v.seq, args: v.args as Record<string, JsonValue> };
  const fd = v.fd;
  if (fd !== undefined) {
    if (!isJsonObject(fd) || typeof fd.name !== 'string' || typeof fd.dev !== 'string' || typeof fd.ino !== 'string') throw new Error('bad fd record');
    entry.fd = { name: fd.name, dev: fd.dev, ino: fd.ino };
  }
  return entry;
}

/** Failures that say the file system cannot take writes now (full, over quota, read-only,
 *  failing, or made inaccessible to us), not that one entry is wrong: the journal is degraded
 *  until a write succeeds again. */
const STORAGE_FAULTS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EACCES', 'EPERM']);

export function isStorageFault(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && STORAGE_FAULTS.has(code);
}

/** Bytes a probe writes: about an entry's size, so that a probe that passes means an entry
 *  would have fitted. */
const PROBE_BYTES = 1024;

export class Journal {
  readonly dir: string;
  readonly rejectedDir: string;
  readonly lostDir: string;
  /** Why the objects directory could not be created at start (a read-only or full state
   *  directory); the journal starts empty and degraded then, and probe() creates it later. */
  readonly setupError?: unknown;
  private nextSeq = 1;
  /** Per-id chain, so a put and a remove of one id land in the order they were asked. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'objects');
    this.rejectedDir = path.join(this.dir, 'rejected');
    this.lostDir = path.join(this.dir, 'lost');
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      this.setupError = e;
    }
  }

  /** Whether a write of an entry's size can be made durable in the directory now: a temp file
   *  written, synced and removed (a leftover is removed by load() like any other). Creates the
   *  directory if it is missing. Throws why not. */
  async probe(): Promise<void> {
    await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(this.dir, `.probe.${process.pid}.tmp`);
    try {
      const h = await fs.promises.open(tmp, 'w', 0o600);
      try {
        await h.writeFile(Buffer.alloc(PROBE_BYTES, 0x20));
        await h.datasync();
      } finally {
        await h.close();
      }
    } finally {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  /** Reads every entry (creation order) and every problem; leftover temp files are removed. */
  load(how: { keepTemp?: boolean } = {}): { entries: JournalEntry[]; problems: JournalProblem[] } {
    const entries: JournalEntry[] = [];
    const problems: JournalProblem[] = [];
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      // Never created (a read-only state directory at the first start): nothing journaled.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      names = [];
    }
    for (const name of names) {
      const file = path.join(this.dir, name);
      if (name.endsWith('.tmp')) {
        // A write cut short before its rename: the object was never acknowledged. Only a file
        // or a link is removed (unlink never follows); anything else is reported.
        if (!how.keepTemp) {
          try {
            fs.unlinkSync(file);
          } catch (err) {
            problems.push({ file, reason: `leftover temp file could not be removed: ${errorText(err)}` });
          }
        }
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      const id = name.slice(0, -SUFFIX.length);
      try {
        const e = decodeEntry(readEntryFile(file));
        checkNamed(e, id);
        entries.push(e);
      } catch (err) {
        problems.push({ file, id, reason: errorText(err) });
      }
    }
    entries.sort((a, b) => a.seq - b.seq);
    this.nextSeq = (entries.length > 0 ? entries[entries.length - 1].seq : 0) + 1;
    return { entries, problems };
  }

  allocSeq(): number {
    return this.nextSeq++;
  }

  private fileOf(id: string): string {
    return path.join(this.dir, id + SUFFIX);
  }

  private chain(id: string, op: () => Promise<void>): Promise<void> {
    const prev = this.chains.get(id) ?? Promise.resolve();
    const next = prev.then(op, op);
    this.chains.set(id, next);
    const clear = (): void => {
      if (this.chains.get(id) === next) this.chains.delete(id);
    };
    next.then(clear, clear);
    return next;
  }

  /** Writes (or replaces) the entry; resolves once it is durable. */
  put(e: JournalEntry): Promise<void> {
    return this.chain(e.id, () => this.write(e));
  }

  /** Reads the entry of `id`, changes it with `fn` and writes it back, in turn with the other
   *  writes of that id (nothing is kept in memory between writes). */
  update(id: string, fn: (e: JournalEntry) => JournalEntry): Promise<void> {
    return this.chain(id, async () => {
      const e = decodeEntry(readEntryFile(this.fileOf(id)));
      checkNamed(e, id);
      await this.write(fn(e));
    });
  }

  private async write(e: JournalEntry): Promise<void> {
    const file = this.fileOf(e.id);
    const tmp = `${file}.tmp`;
    try {
      const h = await fs.promises.open(tmp, 'w', 0o600);
      try {
        await h.writeFile(encodeEntry(e));
        await h.datasync();
      } finally {
        await h.close();
      }
      await fs.promises.rename(tmp, file);
    } catch (err) {
      // A full file system leaves an empty or partial temp file: it would hold space and wait
      // for the next start to be removed. The entry itself is untouched (the rename did not run).
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    }
    await this.syncDir();
  }

  /** Removes the entry; resolves once the removal is durable. */
  remove(id: string): Promise<void> {
    return this.chain(id, async () => {
      await fs.promises.rm(this.fileOf(id), { force: true });
      await this.syncDir();
    });
  }

  /** Moves an unusable entry aside (objects/rejected/ID.TIME.json) so nothing is dropped; an
   *  object whose memory is gone goes to objects/lost/ instead, freeing its id. */
  reject(file: string, folder: 'rejected' | 'lost' = 'rejected'): string {
    const dir = folder === 'lost' ? this.lostDir : this.rejectedDir;
    this.ensureAsideDir(dir);
    const to = path.join(dir, `${path.basename(file, SUFFIX)}.${Date.now()}${SUFFIX}`);
    fs.renameSync(file, to);
    return to;
  }

  /** objects/rejected/ (and lost/) must be a directory of its own: were it a symlink, moving
   *  entries into it would move them out of the state dir. Anything else in its place is moved
   *  aside first. */
  private ensureAsideDir(dir: string): void {
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (st?.isDirectory()) return;
    if (st) fs.renameSync(dir, `${dir}.${Date.now()}.not-a-directory`);
    fs.mkdirSync(dir, { mode: 0o700 });
  }

  fileFor(id: string): string {
    return this.fileOf(id);
  }

  private async syncDir(): Promise<void> {
    const d = await fs.promises.open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
