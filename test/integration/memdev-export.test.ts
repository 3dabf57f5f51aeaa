// memdev-export: a client gets a backend's memory fd with the reply (SCM_RIGHTS) and maps the
// very pages the daemon owns. Refusals are clear GenericErrors that pass no fd, leak none in
// either process and leave the backend as it was; a thousand exports leave the daemon's fd
// count where it started; a read-only file backend gives a read-only fd; object-del of an
// exported backend leaves the receiver's memory alone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../src/native';
import { spawnDaemon, Child } from '../helpers/daemon';
import { FdQmpClient, openFdCount, readThroughFd, withMapping } from '../helpers/fd-client';
import { settledCount } from '../helpers/proc';
import { EXPORT_PRIVATE_TEXT, EXPORT_PREALLOC_TEXT } from '../../src/backends';

const MiB = 1 << 20;
let d: Child;
let c: FdQmpClient;

beforeAll(async () => {
  d = await spawnDaemon(['--accel', 'none']);
  c = await FdQmpClient.negotiated(d.sock);
});
afterAll(async () => {
  await c?.close();
  await d?.stop();
});

/** The daemon's open fds, less the journal's own files (its log, and entry files a checkpoint
 *  opens for a moment to sync them, 1 s after the last change): those come and go on their own. */
const daemonFds = (): number => {
  const pid = d.proc.pid as number;
  const stateDir = d.dir;
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (!/\/journal\.log$|\/objects(\/[^/]*)?$/.test(target) && !target.startsWith(stateDir)) n++;
  }
  return n;
};
/** The count once it reaches `want` (bounded: 3 s): a closed connection or a journal write in
 *  flight may hold an fd for a moment after the reply. */
const settledFds = (want: number): Promise<number> => settledCount(daemonFds, want);
/** How many of the daemon's fds are open on the file with inode `ino` (a memfd's). */
const daemonFdsOn = (ino: number): number => {
  const pid = d.proc.pid as number;
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.statSync(`/proc/${pid}/fd/${fd}`).ino === ino) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
};
const settledOn = (ino: number, want: number): Promise<number> => settledCount(() => daemonFdsOn(ino), want);
const ok = { return: {} };

async function add(id: string, type: string, props: Record<string, unknown> = {}): Promise<void> {
  expect((await c.execute('object-add', { 'qom-type': type, id, size: MiB, ...props })).reply).toEqual(ok);
}

/** Runs a refused export and checks that nothing moved: no fd in the reply, none leaked on
 *  either side, the backend as it was. */
async function refused(id: string, desc: string): Promise<void> {
  const before = { daemon: daemonFds(), self: openFdCount(), memdev: (await c.execute('query-memdev')).reply };
  const r = await c.executeWithFds('memdev-export', { id });
  expect(r.reply).toEqual({ error: { class: 'GenericError', desc } });
  expect(r.fds).toHaveLength(0);
  expect(await settledFds(before.daemon)).toBe(before.daemon);
  expect(openFdCount()).toBe(before.self);
  expect((await c.execute('query-memdev')).reply).toEqual(before.memdev);
}

test('a memfd backend: the reply describes the fd, two receivers share the same pages', async () => {
  await add('m0', 'memory-backend-memfd');
  const a = await c.executeWithFds('memdev-export', { id: 'm0' });
  expect(a.reply).toEqual({ return: { id: 'm0', type: 'memory-backend-memfd', size: MiB, offset: 0, 'page-size': 4096, share: true, readonly: false, fds: ['memory'] } });
  expect(a.fds).toHaveLength(1);
  const other = await FdQmpClient.negotiated(d.sock);
  try {
    const b = await other.executeWithFds('memdev-export', { id: 'm0' });
    expect(b.fds).toHaveLength(1);
    const pattern = Buffer.from('hostmemd shares these pages');
    withMapping(a.fds[0], MiB, (m) => m.write(4096 * 3, pattern), { writable: true });
    expect(readThroughFd(b.fds[0], 4096 * 3, pattern.length)).toEqual(pattern);
    // The same file as the daemon's own: same inode as its fd for the backend.
    expect(native.fstat(a.fds[0]).ino).toBe(native.fstat(b.fds[0]).ino);
    for (const fd of [...a.fds, ...b.fds]) fd.close();
  } finally {
    await other.close();
  }
  expect((await c.execute('query-memdev-exports')).reply).toEqual({ return: [{ id: 'm0', 'qom-type': 'memory-backend-memfd', exports: 2 }] });
});

test('a file backend: the receiver sees the bytes of the file, at the backend offset', async () => {
  const file = path.join(d.dir, 'files', 'f0');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const content = Buffer.alloc(2 * MiB);
  content.write('before the offset', 0);
  content.write('guest memory starts here', MiB);
  fs.writeFileSync(file, content);
  await add('f0', 'memory-backend-file', { 'mem-path': file, share: true, offset: MiB });
  const r = await c.executeWithFds('memdev-export', { id: 'f0' });
  expect(r.reply).toEqual({ return: expect.objectContaining({ type: 'memory-backend-file', offset: MiB, readonly: false, fds: ['memory'] }) });
  expect(readThroughFd(r.fds[0], 0, 24, BigInt(MiB)).toString()).toBe('guest memory starts here');
  r.fds[0].close();
});

test('a read-only file backend gives a read-only fd: no writable shared mapping from it', async () => {
  const file = path.join(d.dir, 'files', 'ro');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.alloc(MiB, 7));
  await add('ro', 'memory-backend-file', { 'mem-path': file, share: true, readonly: true });
  const r = await c.executeWithFds('memdev-export', { id: 'ro' });
  expect(r.reply).toEqual({ return: expect.objectContaining({ readonly: true }) });
  expect(r.fds[0].accessMode).toBe(native.O_RDONLY);
  expect(() => native.mmap(BigInt(MiB), native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, r.fds[0])).toThrow(/Permission denied/);
  expect(readThroughFd(r.fds[0], 100, 1)[0]).toBe(7);
  r.fds[0].close();
});

test('refusals: private memory, unknown id; nothing leaks, the backend stays', async () => {
  await add('priv', 'memory-backend-ram');
  await refused('priv', EXPORT_PRIVATE_TEXT.replace('%s', 'priv'));
  await add('privfile', 'memory-backend-memfd', { share: false });
  await refused('privfile', EXPORT_PRIVATE_TEXT.replace('%s', 'privfile'));
  await refused('nosuch', "object 'nosuch' not found");
  expect((await c.execute('memdev-export', {})).reply).toEqual({ error: { class: 'GenericError', desc: "Parameter 'id' is missing" } });
});

test('a backend still preallocating is refused, and exported once done', async () => {
  await add('big', 'memory-backend-memfd', { size: 1024 * MiB });
  const setter = await FdQmpClient.negotiated(d.sock);
  try {
    // qom-set prealloc=on faults the whole GiB in; meanwhile the backend is preallocating.
    const done = setter.execute('qom-set', { path: '/objects/big', property: 'prealloc', value: true });
    for (let i = 0; i < 500; i++) {
      const running = (await c.execute('query-prealloc')).reply.return as { id: string }[];
      if (running.some((e) => e.id === 'big')) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    const before = { daemon: daemonFds(), self: openFdCount() };
    const r = await c.executeWithFds('memdev-export', { id: 'big' });
    const stillRunning = ((await c.execute('query-prealloc')).reply.return as unknown[]).length > 0;
    if (stillRunning || 'error' in r.reply) {
      expect(r.reply).toEqual({ error: { class: 'GenericError', desc: EXPORT_PREALLOC_TEXT.replace('%s', 'big') } });
      expect(r.fds).toHaveLength(0);
      expect(daemonFds()).toBe(before.daemon);
      expect(openFdCount()).toBe(before.self);
    } else {
      // The host faulted a GiB in faster than one round trip: nothing to refuse any more.
      console.warn('preallocation finished before the export could be refused: refusal not exercised');
      for (const fd of r.fds) fd.close();
    }
    expect((await done).reply).toEqual(ok);
    const after = await c.executeWithFds('memdev-export', { id: 'big' });
    expect(after.fds).toHaveLength(1);
    for (const fd of after.fds) fd.close();
  } finally {
    await setter.close();
  }
  expect((await c.execute('object-del', { id: 'big' })).reply).toEqual(ok);
});

test('1,000 exports, each fd closed by the receiver, leave the daemon fd count where it was', async () => {
  await add('loop', 'memory-backend-memfd');
  const start = { daemon: daemonFds(), self: openFdCount() };
  for (let i = 0; i < 1000; i++) {
    const r = await c.executeWithFds('memdev-export', { id: 'loop' });
    if (r.fds.length !== 1) throw new Error(`export ${i}: ${JSON.stringify(r.reply)} with ${r.fds.length} fds`);
    r.fds[0].close();
  }
  expect(await settledFds(start.daemon)).toBe(start.daemon);
  expect(openFdCount()).toBe(start.self);
}, 60_000);

test('object-del of an exported backend: the daemon lets go, the receiver keeps its pages', async () => {
  await add('gone', 'memory-backend-memfd');
  const r = await c.executeWithFds('memdev-export', { id: 'gone' });
  withMapping(r.fds[0], MiB, (m) => m.write(0, Buffer.from('still here')), { writable: true });
  const ino = fs.fstatSync(r.fds[0].raw('fstat')).ino;
  expect(await settledOn(ino, 1)).toBe(1); // the copy sent with the reply is closed once written
  const before = daemonFds();
  expect((await c.execute('object-del', { id: 'gone' })).reply).toEqual(ok);
  // The daemon's own fd of the backend goes, and nothing else of it stays open.
  expect(await settledOn(ino, 0)).toBe(0);
  expect(await settledFds(before - 1)).toBe(before - 1);
  expect(readThroughFd(r.fds[0], 0, 10).toString()).toBe('still here');
  r.fds[0].close();
  await refusedUnknown('gone');
});

async function refusedUnknown(id: string): Promise<void> {
  await refused(id, `object '${id}' not found`);
}

test('a client that goes away before reading its reply leaks no fd in the daemon', async () => {
  await add('drop', 'memory-backend-memfd');
  const start = daemonFds();
  for (let i = 0; i < 20; i++) {
    const x = FdQmpClient.connect(d.sock);
    await x.line();
    await x.send('{"execute":"qmp_capabilities"}{"execute":"memdev-export","arguments":{"id":"drop"}}');
    await x.close();
  }
  // The daemon notices each close: its count comes back.
  expect(await settledFds(start)).toBe(start);
});
