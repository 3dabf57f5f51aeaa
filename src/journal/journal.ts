// The state journal: one file per live object under <state-dir>/objects/, holding the validated
// object-add arguments (kept current by qom-set) and the identity of the backend's fd. Each
// write is atomic and durable (temp file, fsync, rename, fsync of the directory) and finishes
// before the command's reply; one file per object keeps every write O(1) and confines damage
// to the entry it hits. Entries that cannot be used are moved to objects/rejected/, not lost.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { JsonValue, isJsonObject } from '../json/value';
import { encodeJson } from '../json/writer';
import { parseJsonText } from '../json/stream';
import { errorText } from '../errors/text';

export const JOURNAL_VERSION = 1;
const SUFFIX = '.json';

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

export class Journal {
  readonly dir: string;
  readonly rejectedDir: string;
  private nextSeq = 1;
  /** Per-id chain, so a put and a remove of one id land in the order they were asked. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'objects');
    this.rejectedDir = path.join(this.dir, 'rejected');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Reads every entry (creation order) and every problem; leftover temp files are removed. */
  load(how: { keepTemp?: boolean } = {}): { entries: JournalEntry[]; problems: JournalProblem[] } {
    const entries: JournalEntry[] = [];
    const problems: JournalProblem[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.endsWith('.tmp')) {
        // A write cut short before its rename: the object was never acknowledged.
        if (!how.keepTemp) fs.rmSync(file, { force: true });
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      const id = name.slice(0, -SUFFIX.length);
      try {
        const e = decodeEntry(fs.readFileSync(file, 'utf8'));
        if (e.id !== id) throw new Error(`names object '${e.id}' but is stored as '${id}'`);
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
    return this.chain(id, async () => this.write(fn(decodeEntry(await fs.promises.readFile(this.fileOf(id), 'utf8')))));
  }

  private async write(e: JournalEntry): Promise<void> {
    const file = this.fileOf(e.id);
    const tmp = `${file}.tmp`;
    const h = await fs.promises.open(tmp, 'w', 0o600);
    try {
      await h.writeFile(encodeEntry(e));
      await h.datasync();
    } finally {
      await h.close();
    }
    await fs.promises.rename(tmp, file);
    await this.syncDir();
  }

  /** Removes the entry; resolves once the removal is durable. */
  remove(id: string): Promise<void> {
    return this.chain(id, async () => {
      await fs.promises.rm(this.fileOf(id), { force: true });
      await this.syncDir();
    });
  }

  /** Moves an unusable entry aside (objects/rejected/ID.TIME.json) so nothing is dropped. */
  reject(file: string): string {
    fs.mkdirSync(this.rejectedDir, { recursive: true, mode: 0o700 });
    const to = path.join(this.rejectedDir, `${path.basename(file, SUFFIX)}.${Date.now()}${SUFFIX}`);
    fs.renameSync(file, to);
    return to;
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
