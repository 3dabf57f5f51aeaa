// The real daemon (bin/hostmemd from dist/) started on a state dir whose objects/ holds one valid
// entry and every kind of forgery an attacker with write access could plant there: a FIFO, a
// symlink to a FIFO, to /dev/zero and to a valid entry elsewhere, a 2 MiB and a sparse 1 GiB
// file, an entry whose arguments make another object (a file outside the state dir), and a
// directory. It must start at once, not grow, report each problem, restore only the valid
// object, and touch nothing outside the state dir.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RawQmpClient } from '../helpers/qmp-client';
import { Child, spawnDaemon, tmpDir } from '../helpers/daemon';
import { encodeEntry } from '../../src/journal/journal';
import { JsonValue } from '../../src/json/value';
import * as native from '../../src/native';

const MiB = 1024 * 1024;

function vmRssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

/** Names, kinds, sizes and times of everything under `dir` (what "untouched" is checked by). */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const st = fs.lstatSync(path.join(dir, name));
    out.push(`${name} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${st.ctimeMs}`);
  }
  return out.sort();
}

const fileArgs = (id: string, memPath: string): Record<string, JsonValue> => ({ 'qom-type': 'memory-backend-file', id, size: MiB, 'mem-path': memPath, 'discard-data': true });

/** Every forged entry, and the words its problem is reported with. */
const FORGED: [string, RegExp][] = [
  ['fifo', /a FIFO, not a regular file/],
  ['fifolink', /a symbolic link, not a regular file/],
  ['zero', /a symbolic link, not a regular file/],
  ['elsewhere', /a symbolic link, not a regular file/],
  ['big', /2097152 bytes, larger than the 1048576 bytes an entry may have/],
  ['huge', /1073741824 bytes, larger than the 1048576 bytes an entry may have/],
  ['other', /its arguments name object "victim" but it is stored as 'other'/],
  ['dir', /a directory, not a regular file/],
];

describe('a forged state journal', () => {
  let stateDir: string;
  let outside: string;
  const children: Child[] = [];
  const clients: RawQmpClient[] = [];

  beforeEach(() => {
    stateDir = tmpDir('hostmemd-forged-');
    outside = tmpDir('hostmemd-forged-outside-');
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const d of children.splice(0)) {
      d.proc.kill('SIGKILL');
      await d.exited;
      fs.rmSync(d.dir, { recursive: true, force: true });
    }
    fs.rmSync(stateDir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  });

  function plant(): void {
    const objects = path.join(stateDir, 'objects');
    fs.mkdirSync(objects, { mode: 0o700 });
    const at = (id: string): string => path.join(objects, `${id}.json`);
    // The valid one: a file backend whose file holds its memory (one without its memory would
    // be reported lost, not restored).
    const goodFile = path.join(stateDir, 'files', 'good');
    fs.mkdirSync(path.dirname(goodFile), { mode: 0o750 });
    fs.writeFileSync(goodFile, Buffer.alloc(MiB, 0x33));
    const good: Record<string, JsonValue> = { 'qom-type': 'memory-backend-file', id: 'good', size: MiB, share: true, 'mem-path': goodFile };
    fs.writeFileSync(at('good'), encodeEntry({ id: 'good', seq: 1, args: good }), { mode: 0o600 });
    native.mkfifo(at('fifo'), 0o600);
    native.mkfifo(path.join(outside, 'fifo'), 0o600);
    fs.symlinkSync(path.join(outside, 'fifo'), at('fifolink'));
    fs.symlinkSync('/dev/zero', at('zero'));
    // A valid entry kept outside; followed, it would create and zero a file outside.
    fs.writeFileSync(path.join(outside, 'elsewhere.json'), encodeEntry({ id: 'elsewhere', seq: 2, args: fileArgs('elsewhere', path.join(outside, 'made-by-elsewhere')) }));
    fs.symlinkSync(path.join(outside, 'elsewhere.json'), at('elsewhere'));
    fs.writeFileSync(at('big'), Buffer.alloc(2 * MiB, 0x20));
    fs.writeFileSync(at('huge'), '');
    fs.truncateSync(at('huge'), 1024 * MiB); // sparse: costs nothing unless read
    // Checksum and record are right for 'other', but object-add would make 'victim', a file
    // outside the state dir (restored under another id, object-del would leave the entry).
    fs.writeFileSync(at('other'), encodeEntry({ id: 'other', seq: 3, args: fileArgs('victim', path.join(outside, 'made-by-other')) }));
    fs.mkdirSync(at('dir'));
  }

  async function start(dir: string): Promise<{ d: Child; c: RawQmpClient; ms: number }> {
    const t0 = performance.now();
    const d = await spawnDaemon(['--accel', 'none', '--state-dir', dir], {}, path.join(dir, 'qmp.sock'));
    children.push(d);
    const c = await RawQmpClient.negotiated(path.join(dir, 'qmp.sock'));
    clients.push(c);
    return { d, c, ms: performance.now() - t0 };
  }

  test('starts at once, stays small, reports each forgery, restores only the valid object, touches nothing outside', async () => {
    const emptyDir = tmpDir('hostmemd-empty-');
    try {
      const base = await start(emptyDir);
      expect(await base.c.execute('query-version')).toHaveProperty('return');
      const baseRssKb = vmRssKb(base.d.proc.pid!);

      plant();
      const before = snapshot(outside);
      const forged = await start(stateDir);
      // The bound of the acceptance test; a regression shows as a hang (spawnDaemon gives up
      // after 10 s) or as seconds spent reading.
      expect(forged.ms).toBeLessThan(Math.max(2000, base.ms + 1000));
      console.log(`start: ${Math.round(base.ms)} ms on an empty state dir, ${Math.round(forged.ms)} ms on the forged one`);
      const cpr = (await forged.c.execute('query-cpr')).return as { objects: { id: string }[]; problems: { id?: string; problem: string; file?: string }[] };
      expect(cpr.objects.map((o) => o.id)).toEqual(['good']);
      expect(cpr.problems).toHaveLength(FORGED.length);
      for (const [id, words] of FORGED) {
        const p = cpr.problems.find((q) => q.id === id);
        expect(p?.problem).toMatch(words);
        expect(p?.problem).toMatch(/moved aside, object not restored$/);
        expect(p?.file).toMatch(new RegExp(`^${path.join(stateDir, 'objects', 'rejected')}/${id}\\.\\d+\\.json$`));
      }
      const list = (await forged.c.execute('qom-list', { path: '/objects' })).return as { name: string }[];
      expect(list.map((p) => p.name).filter((n) => n !== 'type')).toEqual(['good']);
      const grownKb = vmRssKb(forged.d.proc.pid!) - baseRssKb;
      console.log(`VmRSS: ${baseRssKb} kB on an empty state dir, ${baseRssKb + grownKb} kB on the forged one`);
      expect(grownKb).toBeLessThan(50 * 1024);
      // objects/ keeps the valid entry only; nothing outside was created, changed or removed.
      expect(fs.readdirSync(path.join(stateDir, 'objects')).sort()).toEqual(['good.json', 'rejected']);
      expect(snapshot(outside)).toEqual(before);
      expect(fs.existsSync(path.join(outside, 'made-by-elsewhere'))).toBe(false);
      expect(fs.existsSync(path.join(outside, 'made-by-other'))).toBe(false);
    } finally {
      fs.rmSync(emptyDir, { recursive: true, force: true });
    }
  });
});
