// The state journal: one file per live object under <state-dir>/objects/, holding the validated
// object-add arguments (kept current by qom-set) and the identity of the backend's fd, with a
// write-ahead log in front (<state-dir>/journal.log, group commit): every change ready at once
// is appended in one O_DSYNC write (one durable write, one trip to libuv's pool) before any of
// their replies; the entry files are written by the next checkpoint (idle, or a large log),
// which syncs them and empties the log. Until then the log is the record: it is replayed over
// the files at start. Entries that cannot be used are moved to objects/rejected/, not lost.
// A full or read-only file system is a state of the journal, not a reason not to start: the
// directory may be missing or unwritable, a failed write leaves no temp file, and probe()
// tells when writes work again.
// The directory and the log are read as data, not trusted: only regular files of bounded size
// are read, no symlink is followed, and nothing that could block (a FIFO, a device) is opened.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { JsonValue, isJsonObject } from '../json/value';
import { encodeJson } from '../json/writer';
import { parseJsonText } from '../json/stream';
import { errorText } from '../errors/text';
import { crashPoint } from '../crash-point';

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
export function readEntryFile(file: string, maxBytes = MAX_ENTRY_BYTES): string {
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
    if (st.size > maxBytes) throw new Error(`${st.size} bytes, larger than the ${maxBytes} bytes ${maxBytes === MAX_ENTRY_BYTES ? 'an entry' : 'the journal log'} may have`);
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

/** Whether `file` is an entry file with exactly `text` (read as data, like any entry). */
function holds(file: string, text: string): boolean {
  try {
    return readEntryFile(file) === text;
  } catch {
    return false;
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

/** Whether JSON.parse's numbers in `v` are the exact parser's too: safe integers (a bigint or
 *  JsonFloat there otherwise) and fractions; an integral float token (1.0, 1e3) shows in the
 *  text comparison of parseOwnLine. */
function plainNumbers(v: unknown): boolean {
  if (typeof v === 'number') return Number.isSafeInteger(v) || !Number.isInteger(v);
  if (typeof v !== 'object' || v === null) return true;
  for (const x of Array.isArray(v) ? v : Object.values(v)) if (!plainNumbers(x)) return false;
  return true;
}

/** parseJsonText's value of a line the journal's writer made, many times faster at start
 *  (1,000 records): JSON.parse's, kept only if its numbers are plain and JSON.stringify gives
 *  it back as the line's own tokens (the line without its whitespace): so no 1.0, no -0, no
 *  duplicate or reordered member was there, nothing JSON.parse reads differently from the
 *  exact parser. A line with a \u escape or anything but printable ASCII, or another top
 *  level than an object, goes the exact way, as does any line this check refuses: the exact
 *  parser's value, or its refusal. (Comparing with JSON.stringify rather than with our own
 *  encoder costs about a tenth.) */
export function parseOwnLine(line: string): JsonValue {
  // Printable ASCII without \u escapes, as the writer makes it (it escapes everything else):
  // the exact parser has views of its own on other characters (noncharacters, for one).
  if (PRINTABLE_ASCII.test(line) && !line.includes('\\u')) {
    try {
      const v = JSON.parse(line) as JsonValue;
      // Objects only: the exact parser has its own view of other top-level values.
      if (typeof v === 'object' && v !== null && !Array.isArray(v) && plainNumbers(v) && JSON.stringify(v) === withoutSpaces(line)) return v;
    } catch {
      /* the exact parser says why */
    }
  }
  return parseJsonText(line);
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** `line` without the whitespace between its tokens (strings are kept as they are). */
function withoutSpaces(line: string): string {
  let out = '';
  let from = 0;
  let inString = false;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // an escape: the next character is part of it
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
      out += line.slice(from, i);
      from = i + 1;
    }
  }
  return from === 0 ? line : out + line.slice(from);
}

/** File content: the entry as one line of JSON, then its SHA-256, so any damage is detected. */
export function encodeEntry(e: JournalEntry): string {
  const body: Record<string, JsonValue> = { version: JOURNAL_VERSION, id: e.id, seq: e.seq, args: e.args };
  if (e.fd) body.fd = { name: e.fd.name, dev: e.fd.dev, ino: e.fd.ino };
  const line = encodeJson(body);
  return `${line}\nsha256:${digest(line)}\n`;
}

/** An entry from its text. `covered`: the text came inside a log record whose own checksum
 *  matched, which covers these bytes too: its checksum line must be there, but is not computed
 *  again (1,000 SHA-256s less at a restart's replay). */
export function decodeEntry(text: string, covered = false): JournalEntry {
  const nl = text.indexOf('\n');
  if (nl < 0) throw new Error('truncated (no checksum line)');
  const line = text.slice(0, nl);
  const sum = /^sha256:([0-9a-f]{64})\n?$/.exec(text.slice(nl + 1));
  if (!sum) throw new Error('truncated or damaged checksum line');
  if (!covered && sum[1] !== digest(line)) throw new Error('checksum mismatch (the entry was damaged)');
  const v = parseOwnLine(line);
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

/** The write-ahead log, in the state directory (beside objects/, not in it). */
export const LOG_NAME = 'journal.log';

/** The largest log read back at start. Checkpoints keep it near CHECKPOINT_BYTES; a log far
 *  larger is not one of ours. */
export const MAX_LOG_BYTES = 64 * 1024 * 1024;

/** A log past this size is checkpointed after the batch that took it there; below it, only
 *  once changes pause (CHECKPOINT_IDLE_MS). Writing entry files costs ~0.7 ms of CPU each on a
 *  2-core machine (mostly the file system's), so a checkpoint started in the middle of a burst
 *  of adds competes with the burst and with the query that follows it: 8 MiB (~20,000 adds)
 *  leaves a burst of 10,000 to the idle checkpoint, and a replay at start stays well under
 *  MAX_LOG_BYTES. */
export const CHECKPOINT_BYTES = 8 * 1024 * 1024;

/** After this long without a change, the log is checkpointed (the entry files made durable, the
 *  log emptied), so that an idle daemon leaves one file per object and an empty log. */
export const CHECKPOINT_IDLE_MS = 1000;

/** How the checkpoint opens a temp file: created or emptied, never through a symlink, written
 *  durably (O_DSYNC). */
const TEMP_OPEN_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW | fs.constants.O_DSYNC;

/** Entries checkpointed at once (fdatasyncs in flight on the thread pool). */
const CHECKPOINT_PARALLEL = 16;

/** The longest id (in bytes) whose entry file can exist: `ID.json.tmp` must fit a file name
 *  (NAME_MAX, 255 bytes). Checked before a change is logged, with the error a longer name gets
 *  from open(2): the entry file is only written at the next checkpoint, and a change that could
 *  never be written there would keep the log from being emptied. */
export const MAX_ID_BYTES = 255 - `${SUFFIX}.tmp`.length;

/** ENAMETOOLONG for an id longer than MAX_ID_BYTES, else undefined. */
export function idTooLong(id: string): NodeJS.ErrnoException | undefined {
  if (Buffer.byteLength(id, 'utf8') <= MAX_ID_BYTES) return undefined;
  return Object.assign(new Error(`ENAMETOOLONG: name too long, open '${id}${SUFFIX}.tmp'`), { code: 'ENAMETOOLONG', errno: -36 });
}

/** Ids the journal may name a file after: what object-add accepts (QEMU's id_wellformed), so
 *  a forged log record can never name a path outside objects/. */
const ID_RE = /^[A-Za-z][A-Za-z0-9._-]*$/;

/** Step names for the crash-point test hook (src/crash-point.ts), per kind of change. */
export type ChangeKind = 'object-add' | 'qom-set' | 'object-del' | 'restore';

type Op = { kind: ChangeKind; id: string; entry: JournalEntry | null; resolve: () => void; reject: (e: unknown) => void };

/** A change durable in the log whose entry file is not written yet (null entry: a removal). */
type Unapplied = { entry: JournalEntry | null; kind: ChangeKind };

/** One log record: a put (the whole entry) or a removal, as one JSON line and its SHA-256. */
function encodeRecord(id: string, e: JournalEntry | null): string {
  const body: Record<string, JsonValue> = e ? { version: JOURNAL_VERSION, op: 'put', entry: encodeEntry(e) } : { version: JOURNAL_VERSION, op: 'del', id };
  const line = encodeJson(body);
  return `${line}\nsha256:${digest(line)}\n`;
}

/** What a log replays to: the last record of each id (null: removed), in log order. */
interface Replay {
  final: Map<string, JournalEntry | null>;
  problems: JournalProblem[];
  /** Bytes of whole, valid records (the rest is a write cut short, or damage). */
  validBytes: number;
  size: number;
}

export class Journal {
  readonly dir: string;
  readonly rejectedDir: string;
  readonly lostDir: string;
  readonly logFile: string;
  /** Why the objects directory could not be created at start (a read-only or full state
   *  directory); the journal starts empty and degraded then, and probe() creates it later. */
  readonly setupError?: unknown;
  private nextSeq = 1;
  /** Per-id chain, so a put and a remove of one id land in the order they were asked (and an
   *  id is in a batch at most once). */
  private readonly chains = new Map<string, Promise<void>>();
  /** Changes waiting for the next batch, and whether a batch is being written. */
  private queue: Op[] = [];
  private writing = false;
  private log?: fs.promises.FileHandle;
  /** Bytes of valid records in the log; anything past it (a failed append) is cut before the
   *  next append. */
  private logSize = 0;
  private logCut = false;
  /** Entry files written unsynced since the last checkpoint (the log replayed at start; made
   *  durable by the next checkpoint). */
  private readonly dirty = new Set<string>();
  /** Changes durable in the log whose entry file is not written or removed yet: every change
   *  since the last checkpoint (and replayed ones a read-only start cannot write). The log is
   *  the record until a checkpoint writes them. */
  private readonly unapplied = new Map<string, Unapplied>();
  private checkpointTimer?: NodeJS.Timeout;
  private checkpointWanted = false;
  /** A checkpoint's first part, writing the entry files, runs beside the batches (it touches
   *  no record of the log): set while it runs. Its second part (what came in meanwhile, then
   *  emptying the log) runs between batches once `filed`. */
  private filing?: Promise<void>;
  private filed = false;
  /** The last entry-file writing failed: the next checkpoint waits for the idle timer. */
  private retryLater = false;
  /** Durable writes (one fdatasync of the log each) and the changes they carried. */
  readonly stats = { batches: 0, changes: 0 };
  /** The crash-point test hook, called with `<change>:<step>` (src/crash-point.ts). */
  step: (name: string) => void = crashPoint;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'objects');
    this.rejectedDir = path.join(this.dir, 'rejected');
    this.lostDir = path.join(this.dir, 'lost');
    this.logFile = path.join(stateDir, LOG_NAME);
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

  /** Reads the log as data (a regular file, bounded, no symlink followed): the last record of
   *  each id. Stops at the first record that is cut short or damaged. */
  private readLog(): Replay {
    const final = new Map<string, JournalEntry | null>();
    const problems: JournalProblem[] = [];
    let text: string;
    try {
      text = readEntryFile(this.logFile, MAX_LOG_BYTES);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { final, problems, validBytes: 0, size: 0 };
      problems.push({ file: this.logFile, reason: `journal log unreadable (${errorText(e)}); its changes are not replayed` });
      return { final, problems, validBytes: -1, size: -1 };
    }
    return this.parseLog(text);
  }

  /** The records of a log's text, up to the first that is cut short or damaged. */
  private parseLog(text: string): Replay {
    const final = new Map<string, JournalEntry | null>();
    const problems: JournalProblem[] = [];
    const buf = Buffer.from(text, 'utf8');
    let at = 0;
    while (at < text.length) {
      const nl = text.indexOf('\n', at);
      const nl2 = nl < 0 ? -1 : text.indexOf('\n', nl + 1);
      if (nl2 < 0) break;
      const line = text.slice(at, nl);
      const sum = text.slice(nl + 1, nl2);
      if (sum !== `sha256:${digest(line)}`) break;
      at = nl2 + 1;
      try {
        const v = parseOwnLine(line);
        if (!isJsonObject(v) || v.version !== JOURNAL_VERSION) throw new Error('not a journal record');
        if (v.op === 'put' && typeof v.entry === 'string') {
          const e = decodeEntry(v.entry, true);
          if (!ID_RE.test(e.id)) throw new Error(`'${e.id}' is not an object id`);
          checkNamed(e, e.id);
          final.set(e.id, e);
        } else if (v.op === 'del' && typeof v.id === 'string') {
          if (!ID_RE.test(v.id)) throw new Error(`'${v.id}' is not an object id`);
          final.set(v.id, null);
        } else throw new Error('neither a put nor a del');
      } catch (e) {
        problems.push({ file: this.logFile, reason: `journal log record at byte ${Buffer.byteLength(text.slice(0, at))} ignored: ${errorText(e)}` });
      }
    }
    const validBytes = Buffer.byteLength(text.slice(0, at));
    if (validBytes < buf.length) {
      // A crash cuts at most the last append, which was never acknowledged; anything else is
      // damage. Either way, what follows cannot be trusted, and it is said.
      problems.push({ file: this.logFile, reason: `journal log: the last ${buf.length - validBytes} bytes are not a whole record (a write cut short, or damage); ignored` });
    }
    return { final, problems, validBytes, size: buf.length };
  }

  /** Reads every entry (creation order) and every problem; leftover temp files are removed.
   *  The log's changes are applied in memory (the log stays the record until the checkpoint
   *  scheduled here writes them to the entry files); a damaged log's are written to the entry
   *  files first (not synced), where that can be done. */
  load(how: { keepTemp?: boolean } = {}): { entries: JournalEntry[]; problems: JournalProblem[] } {
    const entries: JournalEntry[] = [];
    const problems: JournalProblem[] = [];
    const replay = this.readLog();
    problems.push(...replay.problems);
    if (replay.validBytes < 0 && !how.keepTemp) {
      // Not a log we can use (too large, not a regular file): kept aside, never written to.
      try {
        this.ensureAsideDir(this.rejectedDir);
        fs.renameSync(this.logFile, path.join(this.rejectedDir, `${LOG_NAME}.${Date.now()}`));
      } catch (err) {
        problems.push({ file: this.logFile, reason: `the unusable journal log could not be moved aside: ${errorText(err)}` });
      }
    }
    this.logSize = Math.max(0, replay.validBytes);
    this.logCut = replay.size !== replay.validBytes;
    const list = (): string[] => {
      try {
        return fs.readdirSync(this.dir);
      } catch (e) {
        // Never created (a read-only state directory at the first start): nothing journaled.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        return [];
      }
    };
    const names = list();
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
    }
    // A whole log stays the record of its changes until the checkpoint after start writes
    // them out: restore reads them from memory, and 1,000 changes cost no 1,000 file writes
    // before READY. A damaged log may be moved aside as a problem, so its valid part is
    // written to the entry files first, as before.
    const keepInLog = how.keepTemp || replay.problems.length === 0;
    for (const [id, e] of replay.final) {
      if (keepInLog) {
        this.unapplied.set(id, { entry: e, kind: 'restore' });
        continue;
      }
      try {
        this.applySync(id, e);
        this.dirty.add(id);
      } catch {
        this.unapplied.set(id, { entry: e, kind: 'restore' });
      }
    }
    for (const name of how.keepTemp ? names : list()) {
      if (!name.endsWith(SUFFIX)) continue;
      const id = name.slice(0, -SUFFIX.length);
      if (this.unapplied.has(id)) continue;
      const file = path.join(this.dir, name);
      try {
        const e = decodeEntry(readEntryFile(file));
        checkNamed(e, id);
        entries.push(e);
      } catch (err) {
        problems.push({ file, id, reason: errorText(err) });
      }
    }
    for (const u of this.unapplied.values()) if (u.entry) entries.push(u.entry);
    entries.sort((a, b) => a.seq - b.seq);
    this.nextSeq = (entries.length > 0 ? entries[entries.length - 1].seq : 0) + 1;
    if (!how.keepTemp && (this.logSize > 0 || this.logCut)) this.scheduleCheckpoint();
    return { entries, problems };
  }

  /** Writes one replayed change to its entry file (at start, before anything is served). */
  private applySync(id: string, e: JournalEntry | null): void {
    const file = this.fileOf(id);
    if (!e) {
      fs.rmSync(file, { force: true });
      return;
    }
    const tmp = `${file}.tmp`;
    try {
      const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW, 0o600);
      try {
        fs.writeFileSync(fd, encodeEntry(e));
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
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
  put(e: JournalEntry, kind: ChangeKind = 'object-add', staged?: () => void): Promise<void> {
    return this.chain(e.id, () => this.commit(kind, e.id, e, staged));
  }

  /** The entry of `id` as last written. */
  private current(id: string): JournalEntry {
    const u = this.unapplied.get(id);
    if (u) {
      if (!u.entry) throw Object.assign(new Error(`no entry for '${id}'`), { code: 'ENOENT' });
      return u.entry;
    }
    const e = decodeEntry(readEntryFile(this.fileOf(id)));
    checkNamed(e, id);
    return e;
  }

  /** Reads the entry of `id` (as last logged), changes it with `fn` and writes it back, in turn
   *  with the other writes of that id. */
  update(id: string, fn: (e: JournalEntry) => JournalEntry, kind: ChangeKind = 'qom-set', staged?: () => void): Promise<void> {
    return this.chain(id, () => this.commit(kind, id, fn(this.current(id)), staged));
  }

  /** Removes the entry; resolves once the removal is durable. */
  remove(id: string, kind: ChangeKind = 'object-del', staged?: () => void): Promise<void> {
    return this.chain(id, () => this.commit(kind, id, null, staged));
  }

  /** Queues one change for the next batch; resolves once it is durable (group commit: every
   *  change queued while a batch is being written goes into the next one). */
  private commit(kind: ChangeKind, id: string, entry: JournalEntry | null, staged?: () => void): Promise<void> {
    const tooLong = idTooLong(id);
    if (tooLong) return Promise.reject(tooLong);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ kind, id, entry, resolve, reject });
      this.kick();
      staged?.();
    });
  }

  /** Starts a batch once the current turn of the event loop is over, so that every change
   *  made ready in it (requests of all connections read together) shares the write. */
  private kick(): void {
    if (this.writing) return;
    this.writing = true;
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        if (this.queue.length > 0) {
          const batch = this.queue;
          this.queue = [];
          await this.writeBatch(batch);
          continue;
        }
        if (this.filed) {
          this.filed = false;
          await this.checkpoint().catch(() => undefined);
          continue;
        }
        if (this.checkpointWanted && !this.filing) {
          this.checkpointWanted = false;
          // The entry files are written while batches go on, so that changes do not wait for
          // thousands of files; only what came in meanwhile is written between batches.
          this.filing = this.writeUnapplied().then(
            () => void (this.filed = true),
            () => void (this.retryLater = true),
          );
          void this.filing.finally(() => {
            this.filing = undefined;
            this.kick();
          });
          continue;
        }
        break;
      }
    } finally {
      this.writing = false;
    }
    // A checkpoint under way ends with the drain that its first part starts.
    if (this.filing || this.filed) return;
    if (this.retryLater) {
      this.retryLater = false;
      this.scheduleCheckpoint();
    } else if (this.logSize > CHECKPOINT_BYTES) this.wantCheckpoint();
    else if (this.logSize > 0) this.scheduleCheckpoint();
  }

  private steps(batch: readonly Op[], step: string): void {
    for (const op of batch) this.step(`${op.kind}:${step}`);
  }

  /** One batch: every change appended to the log in one O_DSYNC write (its one durable write);
   *  then the replies. The entry files are left to the next checkpoint: the log holds the
   *  changes until then, so nothing but that write stands between a change and its reply. */
  private async writeBatch(batch: Op[]): Promise<void> {
    this.steps(batch, 'logging');
    try {
      await this.append(batch.map((op) => encodeRecord(op.id, op.entry)).join(''), batch);
    } catch (err) {
      const removals = batch.filter((op) => !op.entry);
      // A removal must work on a full file system: a checkpoint empties the log (so no record
      // of these ids is left to replay), then they are unlinked and the directory synced. Their
      // own pending changes are left out of it (writing an entry about to be removed could
      // need the very space that is missing), and kept if it fails: the log still holds them.
      if (removals.length > 0 && isStorageFault(err) && (err as NodeJS.ErrnoException).code !== 'EROFS') {
        const held = new Map<string, Unapplied>();
        for (const op of removals) {
          const u = this.unapplied.get(op.id);
          if (u) held.set(op.id, u);
          this.unapplied.delete(op.id);
        }
        try {
          await this.checkpoint();
          for (const op of removals) await fs.promises.rm(this.fileOf(op.id), { force: true });
          await this.syncDir();
          for (const op of removals) {
            this.dirty.delete(op.id);
            op.resolve();
          }
          for (const op of batch) if (op.entry) op.reject(err);
          return;
        } catch {
          for (const [id, u] of held) if (!this.unapplied.has(id)) this.unapplied.set(id, u);
          /* answered below with the append's error */
        }
      }
      for (const op of batch) op.reject(err);
      return;
    }
    this.steps(batch, 'synced');
    // Distinct ids (one change per id per batch).
    for (const op of batch) this.unapplied.set(op.id, { entry: op.entry, kind: op.kind });
    for (const op of batch) op.resolve();
  }

  /** Appends the records to the log, opened O_DSYNC: the write returns once they are durable
   *  (as write + fdatasync would, in one call). A failure cuts the log back to its last valid
   *  record. */
  private async append(text: string, batch: readonly Op[]): Promise<void> {
    if (!this.log) {
      this.log = await fs.promises.open(this.logFile, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_DSYNC, 0o600);
      const st = await this.log.stat();
      if (!st.isFile()) {
        await this.closeLog();
        throw new Error(`${this.logFile} is not a regular file`);
      }
      if (st.size !== this.logSize) {
        // Changed since load() read it (a handover's predecessor checkpointed or logged after
        // this process read it), or a cut-short tail: read again, so that new records follow
        // the last valid one and never leave a hole that would end the log at replay.
        if (st.size > MAX_LOG_BYTES) {
          await this.closeLog();
          throw new Error(`${this.logFile}: ${st.size} bytes, larger than the ${MAX_LOG_BYTES} bytes the journal log may have`);
        }
        const buf = Buffer.alloc(st.size);
        let n = 0;
        while (n < st.size) {
          const { bytesRead } = await this.log.read(buf, n, st.size - n, n);
          if (bytesRead === 0) break;
          n += bytesRead;
        }
        const again = this.parseLog(buf.toString('utf8', 0, n));
        this.logSize = again.validBytes;
        this.logCut = st.size !== again.validBytes;
      }
    }
    if (this.logCut) {
      await this.log.truncate(this.logSize);
      this.logCut = false;
    }
    const buf = Buffer.from(text, 'utf8');
    try {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await this.log.write(buf, done, buf.length - done, this.logSize + done);
        if (bytesWritten === 0) throw Object.assign(new Error('short write to the journal log'), { code: 'ENOSPC', errno: -28 });
        done += bytesWritten;
      }
    } catch (err) {
      this.logCut = true;
      await this.log.truncate(this.logSize).then(
        () => (this.logCut = false),
        () => undefined,
      );
      throw err;
    }
    this.logSize += buf.length;
    this.stats.batches++;
    this.stats.changes += batch.length;
  }

  private async closeLog(): Promise<void> {
    const h = this.log;
    this.log = undefined;
    await h?.close().catch(() => undefined);
  }

  private scheduleCheckpoint(): void {
    clearTimeout(this.checkpointTimer);
    this.checkpointTimer = setTimeout(() => this.wantCheckpoint(), CHECKPOINT_IDLE_MS);
    this.checkpointTimer.unref();
  }

  private wantCheckpoint(): void {
    clearTimeout(this.checkpointTimer);
    this.checkpointWanted = true;
    this.kick();
  }

  /** Writes every change logged since the last checkpoint to its entry file, durably (temp file
   *  written and fdatasynced, then renamed; a removal unlinks), fdatasyncs the files replayed
   *  unsynced at start, syncs the directory, then empties the log: its records are no longer
   *  needed. Runs between batches. A failure leaves the log as it is (it still holds every
   *  change not yet written). */
  private async checkpoint(): Promise<void> {
    // Never two writers of one temp file: the first part may still run (a removal on a full
    // file system checkpoints from within a batch).
    await this.filing;
    await this.writeUnapplied();
    const ids = [...this.dirty];
    for (let i = 0; i < ids.length; i += CHECKPOINT_PARALLEL) {
      await Promise.all(
        ids.slice(i, i + CHECKPOINT_PARALLEL).map(async (id) => {
          let h: fs.promises.FileHandle;
          try {
            h = await fs.promises.open(this.fileOf(id), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
            throw e;
          }
          try {
            await h.datasync();
          } finally {
            await h.close();
          }
        }),
      );
    }
    await this.syncDir();
    this.step('checkpoint:synced');
    for (const id of ids) this.dirty.delete(id);
    if (this.log || this.logSize > 0 || this.logCut) {
      if (!this.log) await this.append('', []);
      await this.log!.truncate(0);
      await this.log!.datasync();
      this.logSize = 0;
      this.logCut = false;
    }
  }

  /** Writes the entry file of every change logged so far (PARALLEL at a time); a change made
   *  meanwhile stays for the next writing (the log still holds it). */
  private async writeUnapplied(): Promise<void> {
    const changes = [...this.unapplied];
    for (let i = 0; i < changes.length; i += CHECKPOINT_PARALLEL) {
      await Promise.all(changes.slice(i, i + CHECKPOINT_PARALLEL).map(([id, u]) => (this.unapplied.get(id) === u ? this.writeEntryFile(id, u) : undefined)));
    }
  }

  /** One change of the checkpoint: its entry file made durable (or removed). The file is then
   *  current, so the change is no longer kept in memory. */
  private async writeEntryFile(id: string, u: Unapplied): Promise<void> {
    const file = this.fileOf(id);
    if (!u.entry) {
      await fs.promises.rm(file, { force: true });
    } else {
      const tmp = `${file}.tmp`;
      try {
        // O_DSYNC: durable when the write returns (no separate fdatasync, one trip fewer).
        const h = await fs.promises.open(tmp, TEMP_OPEN_FLAGS, 0o600);
        try {
          await h.writeFile(encodeEntry(u.entry));
        } finally {
          await h.close();
        }
        this.step(`${u.kind}:temp-written`);
        // Moved aside meanwhile (reject(), while a restore runs): not written back.
        if (this.unapplied.get(id) !== u) return void (await fs.promises.rm(tmp, { force: true }));
        await fs.promises.rename(tmp, file);
      } catch (err) {
        // A full file system leaves an empty or partial temp file: it would hold space and
        // wait for the next start to be removed. The change stays in the log.
        await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
        throw err;
      }
    }
    this.step(`${u.kind}:applied`);
    this.dirty.delete(id);
    if (this.unapplied.get(id) === u) this.unapplied.delete(id);
  }

  /** Writes every pending change and checkpoints (tests, an orderly stop); resolves when done. */
  async settle(): Promise<void> {
    this.wantCheckpoint();
    while (this.writing || this.queue.length > 0 || this.filing || this.filed || this.checkpointWanted) await new Promise((r) => setTimeout(r, 1));
  }

  /** Stops the idle checkpoint timer and closes the log (teardown). */
  close(): void {
    clearTimeout(this.checkpointTimer);
    void this.closeLog();
  }

  /** Moves an unusable entry aside (objects/rejected/ID.TIME.json) so nothing is dropped; an
   *  object whose memory is gone goes to objects/lost/ instead, freeing its id. */
  reject(file: string, folder: 'rejected' | 'lost' = 'rejected'): string {
    const dir = folder === 'lost' ? this.lostDir : this.rejectedDir;
    this.ensureAsideDir(dir);
    const to = path.join(dir, `${path.basename(file, SUFFIX)}.${Date.now()}${SUFFIX}`);
    const id = path.basename(file, SUFFIX);
    // An entry only the log holds so far (load keeps a whole log's changes in memory) is
    // written aside, and an older file of it goes; usually the file is that entry already
    // (renamed into place, not yet checkpointed): then it is moved, which a full disk allows.
    const pending = path.dirname(file) === this.dir ? this.unapplied.get(id)?.entry : undefined;
    if (pending && !holds(file, encodeEntry(pending))) {
      fs.writeFileSync(to, encodeEntry(pending), { mode: 0o600, flag: 'wx' });
      fs.rmSync(file, { force: true });
    } else fs.renameSync(file, to);
    // The log may still hold this id's last put: a removal is logged too, so that a crash
    // before the next checkpoint does not replay the entry back into objects/.
    if (path.dirname(file) === this.dir && ID_RE.test(id) && (this.logSize > 0 || this.unapplied.has(id))) {
      this.unapplied.delete(id);
      void this.remove(id, 'restore').catch(() => undefined);
    }
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
