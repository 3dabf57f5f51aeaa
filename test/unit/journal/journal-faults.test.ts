// The state journal on a file system that takes no writes (issue 13 item 3): a qom-set whose
// entry cannot be written is undone, so that the reply, the live value, query-memdev and the
// journal agree; object-add is refused before anything is allocated while the journal is
// degraded, with the reason, and works again once a write succeeds; object-del keeps the object
// when its entry cannot be removed. Backends run on the native fake; the journal writes a temp
// dir, with ENOSPC/EROFS injected at the Journal's write methods (no mount needed).
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fake from '../../fakes/native';
import { MiB, objectsFixture, ObjectsFixture } from '../../fakes/objects';
import { Journal, JournalEntry, MAX_ID_BYTES, decodeEntry } from '../../../src/journal/journal';
import { ObjectJournal, DEGRADED_SUFFIX } from '../../../src/journal/object-journal';
import { MADV_DODUMP, MADV_DONTDUMP } from '../../../src/native/constants';
import type { Log } from '../../../src/log';
import type { JsonValue } from '../../../src/json/value';

const ERRNO = { ENOSPC: 28, EROFS: 30 } as const;

/** A node fs error as fs.promises throws it. */
function fsError(code: keyof typeof ERRNO, syscall: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: injected, ${syscall}`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = -ERRNO[code];
  e.syscall = syscall;
  return e;
}

/** The real journal, except that writes fail with `fault` while it is set (removals too for
 *  EROFS: unlink works on a full file system, not on a read-only one). */
class FaultyJournal extends Journal {
  fault?: keyof typeof ERRNO;
  /** Only the test write fails (the log itself would still take a record). */
  probeFault?: keyof typeof ERRNO;
  override put(e: JournalEntry): Promise<void> {
    return this.fault ? Promise.reject(fsError(this.fault, 'write')) : super.put(e);
  }
  override update(id: string, fn: (e: JournalEntry) => JournalEntry): Promise<void> {
    return this.fault ? Promise.reject(fsError(this.fault, 'write')) : super.update(id, fn);
  }
  override remove(id: string): Promise<void> {
    return this.fault === 'EROFS' ? Promise.reject(fsError('EROFS', 'unlink')) : super.remove(id);
  }
  override probe(): Promise<void> {
    const f = this.fault ?? this.probeFault;
    return f ? Promise.reject(fsError(f, 'write')) : super.probe();
  }
}

const quiet: Log = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

let dir: string;
let fx: ObjectsFixture;
let journal: FaultyJournal;
let oj: ObjectJournal;
beforeEach(() => {
  fake.reset();
  // A fresh temp dir (helpers/daemon's tmpDir would load the real native layer).
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-jfault-'));
  fx = objectsFixture();
  journal = new FaultyJournal(dir);
  oj = new ObjectJournal(journal, fx.fds, quiet);
  fx.setPersistence(oj);
});
afterEach(() => {
  oj.close();
  fx.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The entry of `id` as a restart would find it: the entry files with the log replayed over them
 *  (read-only; the files themselves wait for the next checkpoint). */
const entryArgs = (id: string): Record<string, unknown> => new Journal(dir).load({ keepTemp: true }).entries.find((e) => e.id === id)!.args;
const memdev = async (id: string): Promise<Record<string, unknown>> => ((await fx.run('query-memdev')) as Record<string, unknown>[]).find((m) => m.id === id)!;

test('a qom-set the journal cannot record is undone: reply, live value, query-memdev and journal agree', async () => {
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB });
  expect((await memdev('m')).dump).toBe(true); // cached before the set
  const mapping = fx.backend('m').mapping as unknown as fake.Mapping;
  journal.fault = 'ENOSPC';
  expect(await fx.error('qom-set', { path: '/objects/m', property: 'dump', value: false })).toEqual({
    class: 'GenericError',
    desc: "cannot record property 'dump' of object 'm' in the state journal: No space left on device; the change was undone",
  });
  expect(await fx.run('qom-get', { path: '/objects/m', property: 'dump' })).toBe(true);
  expect((await memdev('m')).dump).toBe(true);
  expect(entryArgs('m').dump).toBeUndefined(); // still the object-add arguments (default true)
  // The kernel saw the change and its undo.
  expect(mapping.advice.slice(-2)).toEqual([MADV_DONTDUMP, MADV_DODUMP]);
  expect(oj.health()).toMatchObject({ degraded: true, reason: "No space left on device (updating the entry of 'm')" });

  // Once the journal takes writes again the same set is recorded and kept.
  journal.fault = undefined;
  expect(await fx.run('qom-set', { path: '/objects/m', property: 'dump', value: false })).toEqual({});
  expect(await fx.run('qom-get', { path: '/objects/m', property: 'dump' })).toBe(false);
  expect((await memdev('m')).dump).toBe(false);
  expect(entryArgs('m').dump).toBe(false);
  expect(oj.health()).toEqual({ degraded: false, pending: [] });
});

test('host-nodes after creation is not journaled (QEMU ignores it then): accepted while degraded, the entry keeps the value the memory was made with', async () => {
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB, policy: 'bind', 'host-nodes': [0] });
  journal.fault = 'EROFS';
  expect(await fx.run('qom-set', { path: '/objects/m', property: 'host-nodes', value: [0, 1] })).toEqual({});
  expect(entryArgs('m')['host-nodes']).toEqual([0]);
  expect(oj.health().degraded).toBe(false);
});

test('while degraded, a qom-set is recorded only once a test write works: a record that would still fit in the log is not enough', async () => {
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB });
  journal.fault = 'ENOSPC';
  expect((await fx.error('object-add', { 'qom-type': 'memory-backend-memfd', id: 'b', size: MiB })).desc).toMatch(/No space left on device/);
  expect(oj.health().degraded).toBe(true);
  // The log would take the record now; the test write still fails.
  journal.fault = undefined;
  journal.probeFault = 'ENOSPC';
  expect(await fx.error('qom-set', { path: '/objects/m', property: 'dump', value: false })).toEqual({
    class: 'GenericError',
    desc: "cannot record property 'dump' of object 'm' in the state journal: No space left on device; the change was undone",
  });
  expect(await fx.run('qom-get', { path: '/objects/m', property: 'dump' })).toBe(true);
  expect(entryArgs('m').dump).toBeUndefined();
  expect(oj.health().degraded).toBe(true);
  // The test write works again: the set is recorded and the degraded state ends.
  journal.probeFault = undefined;
  expect(await fx.run('qom-set', { path: '/objects/m', property: 'dump', value: false })).toEqual({});
  expect(entryArgs('m').dump).toBe(false);
  expect(oj.health()).toEqual({ degraded: false, pending: [] });
});

test('an id longer than an entry file name allows is refused before anything is allocated', async () => {
  const before = fake.callsOf('memfdCreate').length;
  const id = 'i'.repeat(MAX_ID_BYTES + 1);
  expect(await fx.error('object-add', { 'qom-type': 'memory-backend-memfd', id, size: MiB })).toEqual({
    class: 'GenericError',
    desc: `cannot record object '${id}' in the state journal: File name too long`,
  });
  expect(fake.callsOf('memfdCreate').length).toBe(before);
  expect(oj.health().degraded).toBe(false);
  expect(await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'i'.repeat(MAX_ID_BYTES), size: MiB })).toEqual({});
  await journal.settle();
  expect(fs.readdirSync(journal.dir)).toEqual([`${'i'.repeat(MAX_ID_BYTES)}.json`]);
});

test('a refused value leaves nothing to undo and is not reported as a journal failure', async () => {
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB });
  journal.fault = 'ENOSPC';
  expect(await fx.error('qom-set', { path: '/objects/m', property: 'size', value: 2 * MiB })).toEqual({ class: 'GenericError', desc: 'cannot change property size of memory-backend-memfd ' });
  expect(oj.health().degraded).toBe(false);
});

test('while degraded, object-add is refused before allocating, with the reason; a write that succeeds ends it', async () => {
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'a', size: MiB });
  journal.fault = 'ENOSPC';
  // The first failure is the entry's own write: the backend was made, and is undone.
  expect(await fx.error('object-add', { 'qom-type': 'memory-backend-memfd', id: 'b', size: MiB })).toEqual({
    class: 'GenericError',
    desc: `cannot record object 'b' in the state journal: No space left on device; ${DEGRADED_SUFFIX}`,
  });
  // Degraded now: the next one is refused before anything is allocated.
  const before = fake.callsOf('memfdCreate').length;
  expect(await fx.error('object-add', { 'qom-type': 'memory-backend-memfd', id: 'c', size: MiB })).toEqual({
    class: 'GenericError',
    desc: "cannot record object 'c' in the state journal: No space left on device; the journal is degraded, new objects are refused until it is writable",
  });
  expect(fake.callsOf('memfdCreate').length).toBe(before);
  expect(fake.counts()).toEqual({ fds: 1, mappings: 1 });
  expect(fx.fds.names()).toEqual(['a']);
  expect(fx.events).toEqual(['added:a']);
  expect(fx.objects.usage.objects).toBe(1);
  expect(oj.health()).toMatchObject({ degraded: true });
  // Objects already there are still served.
  expect(((await fx.run('query-memdev')) as { id: string }[]).map((m) => m.id)).toEqual(['a']);

  journal.fault = undefined;
  expect(await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'c', size: MiB })).toEqual({});
  expect(oj.health()).toEqual({ degraded: false, pending: [] });
  expect(entryArgs('c').id).toBe('c');
  await journal.settle();
  expect(fs.readdirSync(journal.dir).sort()).toEqual(['a.json', 'c.json']); // no probe left behind
});

test('object-del keeps the object when its entry cannot be removed (read-only), and works on a full one', async () => {
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB });
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'n', size: MiB });
  await journal.settle();
  journal.fault = 'EROFS';
  expect(await fx.error('object-del', { id: 'm' })).toEqual({ class: 'GenericError', desc: "cannot remove object 'm' from the state journal: Read-only file system" });
  expect(fx.objects.get('m')).toBeDefined();
  expect(fs.existsSync(journal.fileFor('m'))).toBe(true);
  expect(oj.health().degraded).toBe(true);
  journal.fault = 'ENOSPC';
  expect(await fx.run('object-del', { id: 'n' })).toEqual({});
  await journal.settle();
  expect(fs.existsSync(journal.fileFor('n'))).toBe(false);
  // A removal is no proof that writes work: still degraded.
  expect(oj.health().degraded).toBe(true);
});

test('a log append that fails half-way is cut back: the change is refused, the journal as it was', async () => {
  await journal.put({ id: 'x', seq: 1, args: { id: 'x', v: 1 } });
  await journal.settle();
  journal.close();
  // A restarted journal opens the log at its first append: that handle writes half and fails,
  // as on a full file system.
  const again = new Journal(dir);
  again.load();
  const realOpen = fs.promises.open;
  const spy = jest.spyOn(fs.promises, 'open').mockImplementation(async (...a: Parameters<typeof realOpen>) => {
    const h = await realOpen(...a);
    if (a[0] !== again.logFile) return h;
    const realWrite = h.write.bind(h) as (b: Buffer, o: number, l: number, p: number) => Promise<unknown>;
    h.write = (async (b: Buffer, o: number, l: number, p: number) => {
      await realWrite(b, o, Math.floor(l / 2), p);
      throw fsError('ENOSPC', 'write');
    }) as unknown as typeof h.write;
    return h;
  });
  try {
    await expect(again.put({ id: 'x', seq: 1, args: { id: 'x', v: 2 } })).rejects.toMatchObject({ code: 'ENOSPC' });
  } finally {
    spy.mockRestore();
  }
  again.close();
  expect(fs.statSync(again.logFile).size).toBe(0);
  expect(fs.readdirSync(journal.dir)).toEqual(['x.json']);
  expect(new Journal(dir).load({ keepTemp: true })).toEqual({ entries: [{ id: 'x', seq: 1, args: { id: 'x', v: 1 } }], problems: [] });
});

test('a checkpoint whose entry write fails leaves no temp file behind and keeps the log, which still holds the change', async () => {
  await journal.put({ id: 'x', seq: 1, args: { id: 'x', v: 1 } });
  await journal.settle();
  await journal.put({ id: 'x', seq: 1, args: { id: 'x', v: 2 } });
  const realOpen = fs.promises.open;
  const spy = jest.spyOn(fs.promises, 'open').mockImplementation(async (...a: Parameters<typeof realOpen>) => {
    const h = await realOpen(...a);
    if (String(a[0]).endsWith('.tmp')) h.writeFile = () => Promise.reject(fsError('ENOSPC', 'write'));
    return h;
  });
  try {
    await journal.settle();
  } finally {
    spy.mockRestore();
  }
  expect(fs.readdirSync(journal.dir)).toEqual(['x.json']);
  expect(decodeEntry(fs.readFileSync(journal.fileFor('x'), 'utf8')).args.v).toBe(1);
  expect(fs.statSync(journal.logFile).size).toBeGreaterThan(0);
  expect(entryArgs('x').v).toBe(2);
  // The next checkpoint that can write makes the file current and empties the log.
  await journal.settle();
  expect(decodeEntry(fs.readFileSync(journal.fileFor('x'), 'utf8')).args.v).toBe(2);
  expect(fs.statSync(journal.logFile).size).toBe(0);
});

test('qom-sets of one object run one at a time: an undo never overwrites a later, recorded set', async () => {
  await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB });
  let failFirst!: (e: Error) => void;
  const recorded: JsonValue[] = [];
  fx.setPersistence({
    added: async () => undefined,
    deleting: async () => undefined,
    changed: (o, p) => {
      if (recorded.length === 0) {
        recorded.push('pending');
        return new Promise<void>((_r, j) => (failFirst = j));
      }
      recorded.push(o.getProperty(p));
      return Promise.resolve();
    },
  });
  const first = fx.error('qom-set', { path: '/objects/m', property: 'prealloc-threads', value: 4 });
  const second = fx.run('qom-set', { path: '/objects/m', property: 'prealloc-threads', value: 8 });
  await new Promise((r) => setImmediate(r));
  // The second waits for the first: not set yet.
  expect(await fx.run('qom-get', { path: '/objects/m', property: 'prealloc-threads' })).toBe(4);
  failFirst(new Error('No space left on device'));
  expect((await first).desc).toBe("cannot record property 'prealloc-threads' of object 'm' in the state journal: No space left on device; the change was undone");
  expect(await second).toEqual({});
  expect(await fx.run('qom-get', { path: '/objects/m', property: 'prealloc-threads' })).toBe(8);
  expect(recorded).toEqual(['pending', 8]);
});
