// The state journal's file format and its failure modes: exact values (uint64 sizes beyond
// 2^53), damage of any kind detected per entry, creation order kept, writes of one id applied
// in the order asked, leftovers of an interrupted write ignored; and forged entries (FIFOs,
// symlinks, devices, oversized files, another object's arguments, directories) reported and moved
// aside without being followed, read in full or acted on. Uses the real fs in a temp dir.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Journal, decodeEntry, encodeEntry, JournalEntry, MAX_ENTRY_BYTES } from '../../../src/journal/journal';
import { ObjectJournal } from '../../../src/journal/object-journal';
import { FdRegistry } from '../../../src/fds/registry';
import type { ObjectManager } from '../../../src/qom/user-creatable';
import type { JsonValue } from '../../../src/json/value';
import * as native from '../../../src/native';
import { createHash } from 'node:crypto';
import { tmpDir } from '../../helpers/daemon';

const withSum = (line: string): string => `${line}\nsha256:${createHash('sha256').update(line).digest('hex')}\n`;

/** Every journal a test opens, closed after it: its log's FileHandle would otherwise be left to
 *  the garbage collector (with Node's warning). */
const journals: Journal[] = [];
const openJournal = (d: string): Journal => {
  const j = new Journal(d);
  journals.push(j);
  return j;
};

let dir: string;
beforeEach(() => (dir = tmpDir('hostmemd-journal-')));
afterEach(() => {
  journals.splice(0).forEach((j) => j.close());
  fs.rmSync(dir, { recursive: true, force: true });
});

const entry = (id: string, seq: number): JournalEntry => ({
  id,
  seq,
  args: { 'qom-type': 'memory-backend-memfd', id, size: (1n << 62n) + 4096n, 'host-nodes': [0], share: true },
  fd: { name: id, dev: '12', ino: '34' },
});

test('an entry round-trips exactly, bigints included', () => {
  const e = entry('m0', 7);
  expect(decodeEntry(encodeEntry(e))).toEqual(e);
});

test('every single-byte change of an entry is detected', () => {
  const text = encodeEntry(entry('m0', 1));
  let undetected = 0;
  for (let i = 0; i < text.length; i++) {
    const bad = text.slice(0, i) + String.fromCharCode(text.charCodeAt(i) ^ 1) + text.slice(i + 1);
    try {
      decodeEntry(bad);
      if (bad !== text) undetected++;
    } catch {
      /* detected */
    }
  }
  expect(undetected).toBe(0);
});

test.each([
  ['empty file', '', /^truncated \(no checksum line\)$/],
  ['cut in the JSON', '{"version":1,"id":"m', /^truncated/],
  ['no checksum', '{"version":1}\n', /^truncated or damaged checksum line$/],
  ['wrong version', withSum('{"version":9,"id":"m","seq":1,"args":{}}'), /^unsupported journal version 9$/],
  ['no args', withSum('{"version":1,"id":"m","seq":1}'), /^missing id, seq or args$/],
])('%s is reported with a reason', (_name, text, reason) => {
  expect(() => decodeEntry(text)).toThrow(reason);
});

test('load returns entries in creation order, problems per file, and drops half-written temp files', async () => {
  const j = openJournal(dir);
  expect(j.load()).toEqual({ entries: [], problems: [] });
  await j.put(entry('b', j.allocSeq()));
  await j.put(entry('a', j.allocSeq()));
  await j.put(entry('c', j.allocSeq()));
  // Damage to an entry file counts once the log no longer holds its change (a checkpoint).
  await j.settle();
  j.close();
  fs.writeFileSync(path.join(j.dir, 'c.json'), 'garbage');
  fs.writeFileSync(path.join(j.dir, 'x.json.tmp'), 'half');
  fs.copyFileSync(path.join(j.dir, 'a.json'), path.join(j.dir, 'z.json')); // names another id
  const again = openJournal(dir);
  const { entries, problems } = again.load();
  again.close();
  expect(entries.map((e) => e.id)).toEqual(['b', 'a']);
  expect(problems.map((p) => [p.id, p.reason])).toEqual(
    expect.arrayContaining([
      ['c', 'truncated (no checksum line)'],
      ['z', "names object 'a' but is stored as 'z'"],
    ]),
  );
  expect(fs.existsSync(path.join(j.dir, 'x.json.tmp'))).toBe(false);
  // New sequence numbers continue after the highest one loaded.
  expect(again.allocSeq()).toBe(3);
  // A rejected entry is moved aside, not deleted.
  const moved = again.reject(path.join(j.dir, 'c.json'));
  expect(fs.readFileSync(moved, 'utf8')).toBe('garbage');
  expect(fs.existsSync(path.join(j.dir, 'c.json'))).toBe(false);
});

test('put and remove of one id land in the order they were asked, even when not awaited', async () => {
  const j = openJournal(dir);
  const ops = [j.put(entry('m', 1)), j.remove('m'), j.put(entry('m', 2)), j.remove('m'), j.put(entry('m', 3))];
  await Promise.all(ops);
  expect(openJournal(dir).load().entries.map((e) => e.seq)).toEqual([3]);
  await Promise.all([j.put(entry('n', 4)), j.remove('n')]);
  expect(openJournal(dir).load().entries.map((e) => e.id)).toEqual(['m']);
});

test('files are private to the daemon (0600 entries, 0700 directory)', async () => {
  const j = openJournal(dir);
  await j.put(entry('m', 1));
  await j.settle();
  expect(fs.statSync(j.dir).mode & 0o777).toBe(0o700);
  expect(fs.statSync(j.logFile).mode & 0o777).toBe(0o600);
  expect(fs.statSync(path.join(j.dir, 'm.json')).mode & 0o777).toBe(0o600);
});

// ---- forged entries: the journal is data, not commands --------------------------------------

describe('forged or odd entries', () => {
  let outside: string;
  beforeEach(() => (outside = tmpDir('hostmemd-journal-outside-')));
  afterEach(() => fs.rmSync(outside, { recursive: true, force: true }));

  /** Fills objects/ with one valid entry and every kind of forgery; returns what lies outside. */
  const plant = async (j: Journal): Promise<{ fifo: string; elsewhere: string }> => {
    await j.put(entry('good', j.allocSeq()));
    const at = (id: string): string => path.join(j.dir, `${id}.json`);
    native.mkfifo(at('fifo'), 0o600);
    const fifo = path.join(outside, 'fifo');
    native.mkfifo(fifo, 0o600);
    fs.symlinkSync(fifo, at('fifolink'));
    fs.symlinkSync('/dev/zero', at('zero'));
    // A valid entry, kept outside, under the name it names: still not followed.
    const elsewhere = path.join(outside, 'elsewhere.json');
    fs.writeFileSync(elsewhere, encodeEntry(entry('elsewhere', 99)));
    fs.symlinkSync(elsewhere, at('elsewhere'));
    fs.writeFileSync(at('big'), Buffer.alloc(2 * 1024 * 1024, 0x20));
    // Checksum and record id are right, but object-add would make another object.
    fs.writeFileSync(at('other'), encodeEntry({ ...entry('other', 5), args: { ...entry('victim', 5).args } }));
    fs.mkdirSync(at('dir'));
    return { fifo, elsewhere };
  };

  const FORGED: [string, RegExp][] = [
    ['fifo', /^a FIFO, not a regular file$/],
    ['fifolink', /^a symbolic link, not a regular file$/],
    ['zero', /^a symbolic link, not a regular file$/],
    ['elsewhere', /^a symbolic link, not a regular file$/],
    ['big', new RegExp(`^2097152 bytes, larger than the ${MAX_ENTRY_BYTES} bytes an entry may have$`)],
    ['other', /^its arguments name object "victim" but it is stored as 'other'$/],
    ['dir', /^a directory, not a regular file$/],
  ];

  test('load reports each, returns only the valid entry, and returns at once', async () => {
    const j = openJournal(dir);
    await plant(j);
    const t0 = performance.now();
    const { entries, problems } = openJournal(dir).load();
    expect(performance.now() - t0).toBeLessThan(500);
    expect(entries.map((e) => e.id)).toEqual(['good']);
    expect(problems).toHaveLength(FORGED.length);
    for (const [id, reason] of FORGED) {
      const p = problems.find((q) => q.id === id);
      expect(p?.file).toBe(path.join(j.dir, `${id}.json`));
      expect(p?.reason).toMatch(reason);
    }
  });

  test('restore moves each aside, acts on none, and leaves what they point at alone', async () => {
    const j = openJournal(dir);
    const { fifo, elsewhere } = await plant(j);
    const elsewhereText = fs.readFileSync(elsewhere, 'utf8');
    const added: Record<string, unknown>[] = [];
    const objects = {
      add: (args: Record<string, unknown>) => {
        added.push(args);
        return Promise.resolve({ name: args.id, keeping: () => undefined });
      },
      overCaps: () => undefined,
    } as unknown as ObjectManager;
    const validator = { validate: (_c: string, args: Record<string, JsonValue>) => ({ ok: true as const, value: args }) };
    const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
    const restoring = openJournal(dir);
    const oj = new ObjectJournal(restoring, new FdRegistry(), quiet);
    const t0 = performance.now();
    expect(await oj.restore(objects, validator, new Set())).toBe(1);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(added.map((a) => a.id)).toEqual(['good']);
    expect(oj.problems).toHaveLength(FORGED.length);
    for (const [id] of FORGED) {
      const p = oj.problems.find((q) => q.id === id);
      expect(p?.problem).toMatch(/^journal entry unreadable \(.+\); moved aside, object not restored$/);
      expect(p?.file).toMatch(new RegExp(`^${j.rejectedDir}/${id}\\.\\d+\\.json$`));
    }
    // objects/ holds the valid entry (once checkpointed) and the rejected folder; rejected/ holds
    // the rest as they were.
    await restoring.settle();
    expect(fs.readdirSync(j.dir).sort()).toEqual(['good.json', 'rejected']);
    expect(fs.readdirSync(j.rejectedDir)).toHaveLength(FORGED.length);
    const kept = (id: string): fs.Stats => fs.lstatSync(oj.problems.find((q) => q.id === id)!.file!);
    expect(kept('fifo').isFIFO()).toBe(true);
    expect(kept('zero').isSymbolicLink()).toBe(true);
    expect(kept('dir').isDirectory()).toBe(true);
    // The targets of the links are untouched.
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
    expect(fs.readFileSync(elsewhere, 'utf8')).toBe(elsewhereText);
    // The next start sees only the valid entry.
    expect(openJournal(dir).load()).toEqual({ entries: [expect.objectContaining({ id: 'good' })], problems: [] });
  });

  test('a rejected/ that is a symlink is moved aside, never followed', async () => {
    const j = openJournal(dir);
    fs.symlinkSync(outside, j.rejectedDir);
    fs.writeFileSync(path.join(j.dir, 'bad.json'), 'garbage');
    const to = j.reject(path.join(j.dir, 'bad.json'));
    expect(path.dirname(to)).toBe(j.rejectedDir);
    expect(fs.lstatSync(j.rejectedDir).isDirectory()).toBe(true);
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  test('a leftover temp file that is a directory is reported, not fatal', () => {
    const j = openJournal(dir);
    fs.mkdirSync(path.join(j.dir, 'x.json.tmp'));
    const { entries, problems } = j.load();
    expect(entries).toEqual([]);
    expect(problems).toEqual([{ file: path.join(j.dir, 'x.json.tmp'), reason: expect.stringMatching(/^leftover temp file could not be removed: /) }]);
  });

  test('update refuses an entry swapped for a symlink after start', async () => {
    const j = openJournal(dir);
    await j.put(entry('m', 1));
    await j.settle();
    const elsewhere = path.join(outside, 'm.json');
    fs.writeFileSync(elsewhere, encodeEntry(entry('m', 1)));
    fs.rmSync(path.join(j.dir, 'm.json'));
    fs.symlinkSync(elsewhere, path.join(j.dir, 'm.json'));
    await expect(j.update('m', (e) => ({ ...e, seq: 2 }))).rejects.toThrow('a symbolic link, not a regular file');
    expect(decodeEntry(fs.readFileSync(elsewhere, 'utf8')).seq).toBe(1);
  });
});

// ---- group commit: the write-ahead log --------------------------------------------------------

describe('group commit', () => {
  const opened: Journal[] = [];
  const journal = (): Journal => {
    const j = openJournal(dir);
    opened.push(j);
    return j;
  };
  afterEach(() => opened.splice(0).forEach((j) => j.close()));

  test('changes queued together share one fdatasync, each resolves only after it, files and log agree', async () => {
    const j = journal();
    await j.put(entry('first', j.allocSeq()));
    expect(j.stats).toEqual({ batches: 1, changes: 1 });
    const ids = Array.from({ length: 16 }, (_, i) => `m${i}`);
    const resolved: string[] = [];
    const synced: string[] = [];
    j.step = (s) => synced.push(s);
    await Promise.all(ids.map((id) => j.put(entry(id, j.allocSeq())).then(() => resolved.push(`${id} after ${synced.filter((x) => x === 'object-add:synced').length} synced`))));
    // 16 changes queued at once: one durable write for all, and none answered before it.
    expect(j.stats).toEqual({ batches: 2, changes: 17 });
    expect(resolved).toEqual(ids.map((id) => `${id} after 16 synced`));
    // Durable in the log only: the entry files wait for the checkpoint, and a restart now
    // replays them from the log.
    for (const id of ids) expect(fs.existsSync(j.fileFor(id))).toBe(false);
    expect(fs.statSync(j.logFile).size).toBeGreaterThan(0);
    expect(openJournal(dir).load({ keepTemp: true }).entries.map((e) => e.id)).toEqual(['first', ...ids]);
    await j.settle();
    // The checkpoint wrote each file (temp file, then rename), then emptied the log.
    expect(synced.filter((x) => x === 'object-add:applied').length).toBe(17);
    expect(synced.indexOf('checkpoint:synced')).toBeGreaterThan(synced.lastIndexOf('object-add:applied'));
    for (const id of ids) expect(fs.existsSync(j.fileFor(id))).toBe(true);
    expect(fs.statSync(j.logFile).size).toBe(0);
    expect(journal().load().entries.map((e) => e.id)).toEqual(['first', ...ids]);
  });

  test('one change costs one write to the log and no other file operation before it resolves', async () => {
    const j = journal();
    await j.put(entry('warm', j.allocSeq()));
    const calls: string[] = [];
    const spies = (['open', 'rename', 'rm', 'writeFile'] as const).map((m) => jest.spyOn(fs.promises, m).mockImplementation(((...a: unknown[]) => (calls.push(m), (jest.requireActual('node:fs') as typeof fs).promises[m](...(a as [never, never])))) as never));
    try {
      await j.put(entry('m', j.allocSeq()));
      await j.update('m', (e) => ({ ...e, args: { ...e.args, dump: false } }));
      await j.remove('m');
    } finally {
      spies.forEach((s) => s.mockRestore());
    }
    expect(calls).toEqual([]);
    expect(j.stats).toEqual({ batches: 4, changes: 4 });
  });

  test('changes go on while a checkpoint writes the entry files; what came in meanwhile is written before the log is emptied', async () => {
    const j = journal();
    for (let i = 0; i < 20; i++) await j.put(entry(`a${i}`, j.allocSeq()));
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const realOpen = fs.promises.open;
    const spy = jest.spyOn(fs.promises, 'open').mockImplementation(async (...a: Parameters<typeof realOpen>) => {
      if (String(a[0]).endsWith('.tmp')) await gate;
      return realOpen(...a);
    });
    try {
      const settled = j.settle();
      await new Promise((r) => setTimeout(r, 20));
      // The checkpoint is stuck writing entry files: a change is still made durable and answered.
      await j.put(entry('b', j.allocSeq()));
      await j.update('a0', (e) => ({ ...e, args: { ...e.args, dump: false } }));
      expect(fs.existsSync(j.fileFor('a1'))).toBe(false);
      open();
      await settled;
    } finally {
      spy.mockRestore();
    }
    expect(fs.statSync(j.logFile).size).toBe(0);
    for (const id of ['a1', 'a19', 'b']) expect(fs.existsSync(j.fileFor(id))).toBe(true);
    expect(decodeEntry(fs.readFileSync(j.fileFor('a0'), 'utf8')).args.dump).toBe(false);
    expect(journal().load().entries.map((e) => e.id)).toEqual([...Array.from({ length: 20 }, (_, i) => `a${i}`), 'b']);
  });

  test('a removal works when the log cannot grow (full file system): the checkpoint empties the log first, leaving out the entry being removed', async () => {
    const j = journal();
    await j.put(entry('kept', j.allocSeq()));
    await j.settle();
    await j.put(entry('gone', j.allocSeq())); // in the log only
    const enospc = (): Promise<never> => Promise.reject(Object.assign(new Error('ENOSPC: injected'), { code: 'ENOSPC', errno: -28 }));
    const probe = await fs.promises.open(j.logFile, 'r');
    const proto = Object.getPrototypeOf(probe) as { write: () => Promise<unknown> };
    await probe.close();
    const writes = jest.spyOn(proto, 'write').mockImplementation(enospc);
    const realOpen = fs.promises.open;
    const opens = jest.spyOn(fs.promises, 'open').mockImplementation((...a: Parameters<typeof realOpen>) => (String(a[0]).endsWith('.tmp') ? enospc() : realOpen(...a)));
    try {
      await expect(j.put(entry('new', j.allocSeq()))).rejects.toMatchObject({ code: 'ENOSPC' });
      await j.remove('gone');
    } finally {
      writes.mockRestore();
      opens.mockRestore();
    }
    expect(fs.statSync(j.logFile).size).toBe(0);
    expect(fs.readdirSync(j.dir)).toEqual(['kept.json']);
    expect(journal().load().entries.map((e) => e.id)).toEqual(['kept']);
  });

  test('the log is replayed over the files at load (in memory); the checkpoint after it writes a lost or stale entry file again and repeats a removal', async () => {
    const j = journal();
    await j.put(entry('a', 1));
    await j.put(entry('b', 2));
    await j.update('a', (e) => ({ ...e, args: { ...e.args, dump: false } }));
    await j.remove('b');
    // As after a crash before the checkpoint: a missing, a stale entry file.
    fs.rmSync(j.fileFor('a'), { force: true });
    fs.writeFileSync(j.fileFor('b'), encodeEntry(entry('b', 2)));
    const again = journal();
    const { entries, problems } = again.load();
    expect(problems).toEqual([]);
    expect(entries.map((e) => [e.id, e.args.dump])).toEqual([['a', false]]);
    // No file written before the start is over: the log is still the record.
    expect(fs.existsSync(j.fileFor('a'))).toBe(false);
    expect(fs.statSync(j.logFile).size).toBeGreaterThan(0);
    await again.settle();
    expect(decodeEntry(fs.readFileSync(j.fileFor('a'), 'utf8')).args.dump).toBe(false);
    expect(fs.existsSync(j.fileFor('b'))).toBe(false);
    expect(fs.statSync(j.logFile).size).toBe(0);
  });

  test('an entry only the log holds is moved aside with its content, and stays gone', async () => {
    const j = journal();
    await j.put(entry('a', 1));
    await j.put(entry('b', 2));
    await j.update('b', (e) => ({ ...e, args: { ...e.args, dump: false } }));
    // A missing and a stale entry file, as after a crash before a checkpoint wrote them.
    fs.rmSync(j.fileFor('a'), { force: true });
    fs.writeFileSync(j.fileFor('b'), encodeEntry(entry('b', 2)));
    const again = journal();
    expect(again.load().entries.map((e) => e.id)).toEqual(['a', 'b']);
    const a = again.reject(again.fileFor('a'), 'lost');
    const b = again.reject(again.fileFor('b'));
    expect(decodeEntry(fs.readFileSync(a, 'utf8')).id).toBe('a');
    expect(decodeEntry(fs.readFileSync(b, 'utf8')).args.dump).toBe(false);
    expect(fs.existsSync(again.fileFor('b'))).toBe(false);
    await again.settle();
    expect(fs.existsSync(again.fileFor('a'))).toBe(false);
    expect(fs.existsSync(again.fileFor('b'))).toBe(false);
    expect(journal().load().entries).toEqual([]);
  });

  test('a torn last append is reported and cut; later changes land after the valid records', async () => {
    const j = journal();
    await j.put(entry('a', 1));
    fs.appendFileSync(j.logFile, '{"version":1,"op":"put","entry":"{\\"ver');
    const again = journal();
    const { entries, problems } = again.load();
    expect(entries.map((e) => e.id)).toEqual(['a']);
    expect(problems).toEqual([{ file: j.logFile, reason: expect.stringMatching(/^journal log: the last \d+ bytes are not a whole record/) }]);
    await again.put(entry('b', again.allocSeq()));
    fs.rmSync(again.fileFor('b'), { force: true });
    expect(journal().load().entries.map((e) => e.id)).toEqual(['a', 'b']);
  });

  test('a forged log record naming a path outside objects/ is ignored and reported', async () => {
    const j = journal();
    await j.put(entry('a', 1));
    const evil = { ...entry('../../evil', 2) };
    const inner = encodeEntry(evil);
    const line = JSON.stringify({ version: 1, op: 'put', entry: inner });
    fs.appendFileSync(j.logFile, withSum(line));
    const { entries, problems } = journal().load();
    expect(entries.map((e) => e.id)).toEqual(['a']);
    expect(problems).toEqual([{ file: j.logFile, reason: expect.stringMatching(/ignored: '\.\.\/\.\.\/evil' is not an object id$/) }]);
    expect(fs.existsSync(path.join(dir, '..', 'evil.json'))).toBe(false);
  });

  test('a log that is a symlink is not followed, and is moved aside', async () => {
    const outside = tmpDir('hostmemd-journal-outside-');
    try {
      const j = journal();
      await j.put(entry('a', 1));
      await j.settle();
      j.close();
      fs.rmSync(j.logFile);
      fs.writeFileSync(path.join(outside, 'log'), '');
      fs.symlinkSync(path.join(outside, 'log'), j.logFile);
      const again = journal();
      const { entries, problems } = again.load();
      expect(entries.map((e) => e.id)).toEqual(['a']);
      expect(problems).toEqual([{ file: j.logFile, reason: expect.stringMatching(/^journal log unreadable \(a symbolic link, not a regular file\)/) }]);
      await again.put(entry('b', 2));
      expect(fs.readFileSync(path.join(outside, 'log'), 'utf8')).toBe('');
    } finally {
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  test('a successor that read the log before its predecessor checkpointed appends after what is there now, leaving no hole', async () => {
    const a = journal();
    a.load();
    await a.put(entry('a', 1));
    const b = journal();
    // A handover's successor reads the journal read-only while the predecessor still runs.
    expect(b.load({ keepTemp: true }).entries.map((e) => e.id)).toEqual(['a']);
    await a.put(entry('c', 2));
    await a.settle();
    expect(fs.statSync(a.logFile).size).toBe(0);
    await b.put(entry('b', 3));
    expect(fs.statSync(a.logFile).size).toBeGreaterThan(0);
    // A crash now: the log replays b's record (nothing before it ends the log early).
    fs.rmSync(b.fileFor('b'), { force: true });
    expect(journal().load().entries.map((e) => e.id)).toEqual(['a', 'c', 'b']);
  });
});
