// The state journal's file format and its failure modes: exact values (uint64 sizes beyond
// 2^53), damage of any kind detected per entry, creation order kept, writes of one id applied
// in the order asked, leftovers of an interrupted write ignored.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Journal, decodeEntry, encodeEntry, JournalEntry } from '../../../src/journal/journal';
import { createHash } from 'node:crypto';
import { tmpDir } from '../../helpers/daemon';

const withSum = (line: string): string => `${line}\nsha256:${createHash('sha256').update(line).digest('hex')}\n`;

let dir: string;
beforeEach(() => (dir = tmpDir('hostmemd-journal-')));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

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
  const j = new Journal(dir);
  expect(j.load()).toEqual({ entries: [], problems: [] });
  await j.put(entry('b', j.allocSeq()));
  await j.put(entry('a', j.allocSeq()));
  await j.put(entry('c', j.allocSeq()));
  fs.writeFileSync(path.join(j.dir, 'c.json'), 'garbage');
  fs.writeFileSync(path.join(j.dir, 'x.json.tmp'), 'half');
  fs.copyFileSync(path.join(j.dir, 'a.json'), path.join(j.dir, 'z.json')); // names another id
  const again = new Journal(dir);
  const { entries, problems } = again.load();
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
  const j = new Journal(dir);
  const ops = [j.put(entry('m', 1)), j.remove('m'), j.put(entry('m', 2)), j.remove('m'), j.put(entry('m', 3))];
  await Promise.all(ops);
  expect(new Journal(dir).load().entries.map((e) => e.seq)).toEqual([3]);
  await Promise.all([j.put(entry('n', 4)), j.remove('n')]);
  expect(new Journal(dir).load().entries.map((e) => e.id)).toEqual(['m']);
});

test('files are private to the daemon (0600 entries, 0700 directory)', async () => {
  const j = new Journal(dir);
  await j.put(entry('m', 1));
  expect(fs.statSync(j.dir).mode & 0o777).toBe(0o700);
  expect(fs.statSync(path.join(j.dir, 'm.json')).mode & 0o777).toBe(0o600);
});
