// mem-path confinement as an attacker meets it (issue 12): a real daemon with the default options
// (allowed: <state-dir>/files and hugetlbfs mounts). Every trick — a file or directory outside,
// an existing 0600 file (its size must not leak), an empty file to extend, a symlink, '..', a
// relative path, a FIFO, a device — gets the same refusal, nothing outside the allowed
// directories is created, changed or removed (also after object-del with discard-data, and when
// a journal entry names such a path), a FIFO never stalls the other clients; inside, QEMU's
// create/extend/temp-file/discard-data behaviour holds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import pino from 'pino';
import { RawQmpClient } from '../helpers/qmp-client';
import { startWithClient, stopWithClient, InProcess, tmpDir } from '../helpers/daemon';
import { startDaemon } from '../../src/daemon/main';
import { parseCli } from '../../src/daemon/cli';

const MiB = 1 << 20;
const refusal = (p: string): string => `mem-path '${p}' is not a regular file or directory inside an allowed directory (--mem-path-allow)`;

let d: InProcess;
let c: RawQmpClient;
let files: string;
let out: string;
let secret: string;
const SECRET_BYTES = Buffer.alloc(0x2a8, 's');

/** Everything under `dir` as lstat and content show it (mode, size, mtime, inode, hash). */
function snapshot(dir: string): Record<string, string> {
  const r: Record<string, string> = {};
  const walk = (p: string): void => {
    const st = fs.lstatSync(p);
    let what = `${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${st.ino}`;
    if (st.isFile()) what += ` ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
    if (st.isSymbolicLink()) what += ` -> ${fs.readlinkSync(p)}`;
    r[path.relative(dir, p) || '.'] = what;
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  };
  walk(dir);
  return r;
}

/** This process's umask (process.umask() without an argument is deprecated). */
function umask(): number {
  return parseInt(/^Umask:\s*([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1], 8);
}

beforeAll(async () => {
  ({ d, c } = await startWithClient());
  files = path.join(d.dir, 'files');
  out = tmpDir('hostmemd-outside-');
  secret = path.join(out, 'secret');
  fs.writeFileSync(secret, SECRET_BYTES, { mode: 0o600 });
  fs.writeFileSync(path.join(out, 'empty'), '');
  fs.mkdirSync(path.join(out, 'sub'));
});
afterAll(async () => {
  await stopWithClient({ d, c });
  fs.rmSync(out, { recursive: true, force: true });
});

async function add(args: Record<string, unknown>): Promise<Record<string, unknown>> {
  return c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'f', size: MiB, ...args });
}

test('the default allowed directory exists: <state-dir>/files, mode 0750', () => {
  expect(fs.statSync(files).mode & 0o7777).toBe(0o750);
});

describe('refused with one text, nothing outside touched', () => {
  const tricks = (): [string, string, Record<string, unknown>?][] => [
    ['a new 1 GiB file in a directory outside', path.join(out, 'new-1g'), { size: 1 << 30 }],
    ['an existing 0600 file outside (size oracle)', secret],
    ['an existing 0600 file outside, readonly', secret, { readonly: true }],
    ['an existing file outside with discard-data', secret, { 'discard-data': true, share: true, size: 4096 }],
    ['an empty file outside (extend)', path.join(out, 'empty')],
    ['a directory outside (temp file)', out],
    ['a missing file outside (existence oracle)', path.join(out, 'missing'), { readonly: true }],
    ['a file in a missing directory outside', path.join(out, 'nodir', 'x')],
    ['.. out of the allowed directory', `${files}/../../${path.basename(out)}/secret`],
    ['.. to the state directory', `${files}/../journal-like`],
    ['relative, resolved against the cwd', path.relative(process.cwd(), secret)],
    ['relative, a bare name', 'guest.mem'],
    ['/dev/zero', '/dev/zero'],
    ['/dev/zero readonly', '/dev/zero', { readonly: true }],
    ['/etc/shadow-like root file', '/etc/shadow', { readonly: true }],
    ['a symlink inside to a file outside', path.join(files, 'link')],
    ['a symlink inside to a file outside, readonly', path.join(files, 'link'), { readonly: true }],
    ['a symlink inside to a directory outside', path.join(files, 'dirlink')],
    ['a path through a symlinked directory', path.join(files, 'dirlink', 'secret')],
    ['a new file through a symlinked directory', path.join(files, 'dirlink', 'created')],
    ['a dangling symlink inside', path.join(files, 'dangling')],
    ['a magic link (/proc/self/cwd)', '/proc/self/cwd/x'],
  ];

  beforeAll(() => {
    fs.symlinkSync(secret, path.join(files, 'link'));
    fs.symlinkSync(out, path.join(files, 'dirlink'));
    fs.symlinkSync(path.join(out, 'dangling-target'), path.join(files, 'dangling'));
  });

  test('every trick', async () => {
    const before = snapshot(out);
    const stateBefore = fs.readdirSync(d.dir).sort();
    const descs: string[] = [];
    for (const [name, p, extra] of tricks()) {
      const r = await add({ 'mem-path': p, ...extra });
      expect([name, r]).toEqual([name, { error: { class: 'GenericError', desc: refusal(p) } }]);
      descs.push((r.error as { desc: string }).desc.replace(p, 'P'));
      // Nothing was created, so object-del has nothing to discard.
      expect(await c.execute('object-del', { id: 'f' })).toEqual({ error: { class: 'GenericError', desc: "object 'f' not found" } });
    }
    expect(new Set(descs).size).toBe(1);
    expect(snapshot(out)).toEqual(before);
    expect(fs.existsSync(path.join(out, 'dangling-target'))).toBe(false);
    expect(fs.readFileSync(secret)).toEqual(SECRET_BYTES);
    expect(fs.readdirSync(d.dir).sort()).toEqual(stateBefore);
    expect(fs.existsSync(path.join(d.dir, 'journal-like'))).toBe(false);
    expect(fs.existsSync(path.resolve('guest.mem'))).toBe(false);
    expect((await c.execute('query-memdev')).return).toEqual([]);
  });

  test('the same, with the fallback walk instead of openat2', async () => {
    const native = await import('../../src/native');
    native.beneathMode('walk');
    try {
      const before = snapshot(out);
      for (const [name, p, extra] of tricks()) expect([name, await add({ 'mem-path': p, ...extra })]).toEqual([name, { error: { class: 'GenericError', desc: refusal(p) } }]);
      expect(snapshot(out)).toEqual(before);
      // Inside, it creates as openat2 does.
      expect(await add({ 'mem-path': path.join(files, 'walked'), share: true })).toEqual({ return: {} });
      expect(fs.statSync(path.join(files, 'walked')).size).toBe(MiB);
      expect(await c.execute('object-del', { id: 'f' })).toEqual({ return: {} });
    } finally {
      native.beneathMode('openat2');
    }
  });

  test('a FIFO inside the allowed directory is refused at once; other clients are answered meanwhile', async () => {
    const fifo = path.join(files, 'fifo');
    execFileSync('mkfifo', [fifo]);
    // If the daemon ever blocked in open(2) on the FIFO, this writer would free it after 3 s,
    // and the timing below fails instead of the test hanging.
    const rescuer = spawn('sh', ['-c', 'sleep 3; exec 3>"$1"', 'sh', fifo], { stdio: 'ignore' });
    const other = await RawQmpClient.negotiated(d.sock);
    try {
      for (const readonly of [false, true]) {
        const t0 = Date.now();
        const [r, v] = await Promise.all([add({ 'mem-path': fifo, readonly, share: false }), other.execute('query-version')]);
        expect(r).toEqual({ error: { class: 'GenericError', desc: refusal(fifo) } });
        expect(v).toHaveProperty('return');
        expect(Date.now() - t0).toBeLessThan(1000);
      }
    } finally {
      other.close();
      rescuer.kill();
      fs.unlinkSync(fifo);
    }
  });
});

describe('inside the allowed directory, QEMU semantics', () => {
  afterEach(async () => {
    for (const m of (await c.execute('query-memdev')).return as { id: string }[]) await c.execute('object-del', { id: m.id });
  });

  test('a new file is created 0644 and sized; an empty one is extended; a short one is refused with its size', async () => {
    const p = path.join(files, 'new.mem');
    expect(await add({ 'mem-path': p, share: true })).toEqual({ return: {} });
    const st = fs.statSync(p);
    expect([st.size, st.mode & 0o777]).toEqual([MiB, 0o644 & ~umask()]);
    const empty = path.join(files, 'empty.mem');
    fs.writeFileSync(empty, '');
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'g', size: MiB, 'mem-path': empty })).toEqual({ return: {} });
    expect(fs.statSync(empty).size).toBe(MiB);
    const short = path.join(files, 'short.mem');
    fs.writeFileSync(short, Buffer.alloc(0x2000));
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'h', size: MiB, 'mem-path': short })).toEqual({
      error: { class: 'GenericError', desc: "h backing store size 0x2000 is too small for 'size' option 0x100000 plus 'offset' option 0x0" },
    });
    // '..' that stays inside is fine.
    fs.mkdirSync(path.join(files, 'sub'));
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'i', size: MiB, 'mem-path': `${files}/sub/../inside.mem` })).toEqual({ return: {} });
    expect(fs.statSync(path.join(files, 'inside.mem')).size).toBe(MiB);
  });

  test('a directory (the allowed one or below it) gets an unlinked temp file', async () => {
    fs.mkdirSync(path.join(files, 'tmpdir'), { recursive: true });
    const before = fs.readdirSync(files).sort();
    expect(await add({ 'mem-path': files })).toEqual({ return: {} });
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'g', size: MiB, 'mem-path': path.join(files, 'tmpdir') })).toEqual({ return: {} });
    expect(fs.readdirSync(files).sort()).toEqual(before);
    expect(fs.readdirSync(path.join(files, 'tmpdir'))).toEqual([]);
    const fds = fs.readdirSync('/proc/self/fd').map((n) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${n}`);
      } catch {
        return '';
      }
    });
    expect(fds.filter((t) => /hostmemd_back_mem\.(f|g)\.[0-9a-f]{8} \(deleted\)$/.test(t))).toHaveLength(2);
  });

  test('discard-data punches the file on object-del; without it the bytes stay', async () => {
    const keep = path.join(files, 'keep.mem');
    const drop = path.join(files, 'drop.mem');
    for (const p of [keep, drop]) fs.writeFileSync(p, Buffer.alloc(MiB, 0x5a));
    expect(await add({ 'mem-path': keep, share: true })).toEqual({ return: {} });
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'g', size: MiB, 'mem-path': drop, share: true, 'discard-data': true })).toEqual({ return: {} });
    expect(await c.execute('object-del', { id: 'f' })).toEqual({ return: {} });
    expect(await c.execute('object-del', { id: 'g' })).toEqual({ return: {} });
    expect(fs.readFileSync(keep).every((b) => b === 0x5a)).toBe(true);
    const dropped = fs.readFileSync(drop);
    expect(dropped.length).toBe(MiB);
    expect(dropped.every((b) => b === 0)).toBe(true);
  });

  test('readonly opens an existing file; a missing one gets QEMU’s text', async () => {
    const ro = path.join(files, 'ro.mem');
    fs.writeFileSync(ro, Buffer.alloc(MiB));
    expect(await add({ 'mem-path': ro, readonly: true })).toEqual({ return: {} });
    const missing = path.join(files, 'missing.mem');
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'g', size: MiB, 'mem-path': missing, readonly: true })).toEqual({
      error: { class: 'GenericError', desc: `can't open backing store ${missing} for guest RAM: No such file or directory` },
    });
  });
});

test('a journal entry naming a path outside is not acted on at restore: reported, file untouched', async () => {
  const state = tmpDir();
  const allowed = tmpDir('hostmemd-allowed-');
  const start = async (args: string[]) => {
    const cli = parseCli(['--state-dir', state, ...args], {});
    if (cli.kind !== 'run') throw new Error(cli.output);
    return startDaemon(cli.options, pino({ level: 'silent' }));
  };
  try {
    // Journaled while the directory was allowed ...
    const target = path.join(allowed, 'victim');
    fs.writeFileSync(target, Buffer.alloc(MiB, 0x77));
    let daemon = await start(['--mem-path-allow', allowed]);
    let q = await RawQmpClient.negotiated(daemon.socketPaths[0]);
    expect(await q.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'v', size: MiB, 'mem-path': target, share: true, 'discard-data': true })).toEqual({ return: {} });
    q.close();
    await daemon.shutdown('host-signal');
    // Emptied meanwhile: a restore that opened it would extend it to 1 MiB.
    fs.writeFileSync(target, '');
    const before = snapshot(allowed);
    // ... and restored with the default options, under which it lies outside.
    daemon = await start([]);
    q = await RawQmpClient.negotiated(daemon.socketPaths[0]);
    expect((await q.execute('query-memdev')).return).toEqual([]);
    const cpr = (await q.execute('query-cpr')).return as { problems: { id?: string; problem: string }[] };
    expect(cpr.problems).toEqual([expect.objectContaining({ id: 'v', problem: expect.stringContaining(refusal(target)) })]);
    q.close();
    await daemon.shutdown('host-signal');
    expect(snapshot(allowed)).toEqual(before);
  } finally {
    fs.rmSync(state, { recursive: true, force: true });
    fs.rmSync(allowed, { recursive: true, force: true });
  }
});
