// Fds a stranger sends cannot fill the daemon's fd table: at most 16 ride on one message (the
// kernel closes the rest, MSG_CTRUNC), a connection holds only its latest batch until a
// command takes it, all connections together hold at most MAX_HELD_FDS, and everything held
// is closed with the connection. Fds of any kind (a FIFO nobody writes to) are held, never
// read or waited on.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../src/native';
import { spawnDaemon, Child } from '../helpers/daemon';
import { FdQmpClient, openFdCount } from '../helpers/fd-client';
import { fdTargets, settledCount } from '../helpers/proc';
import { MAX_HELD_FDS } from '../../src/qmp/session';
import { MAX_FDS_PER_READ } from '../../src/transport/unix-socket';

let d: Child;
beforeAll(async () => {
  d = await spawnDaemon(['--accel', 'none']);
});
afterAll(async () => {
  await d?.stop();
});

const daemonFds = (): number => openFdCount(d.proc.pid as number);
const memfds = (n: number): native.Fd[] => Array.from({ length: n }, () => native.memfdCreate('flood', native.MFD_CLOEXEC));

/** The daemon's fds on memfds this test sent (named "flood"): nothing else of the daemon's
 *  (a journal write, a thread's fd) can come and go in this count. */
const floodFds = (): number => fdTargets(d.proc.pid as number).filter((t) => t.startsWith('/memfd:flood')).length;
const settle = (target: number): Promise<number> => settledCount(daemonFds, target);
const settledFlood = (target: number): Promise<number> => settledCount(floodFds, target);

test('one message with 40 fds: 16 held, a getfd keeps one, the rest are closed', async () => {
  const c = await FdQmpClient.negotiated(d.sock);
  const start = daemonFds();
  const fds = memfds(40);
  expect((await c.executeWithFds('query-version', undefined, { sendFds: fds })).reply).toHaveProperty('return');
  for (const fd of fds) fd.close();
  expect(await settledFlood(MAX_FDS_PER_READ)).toBe(MAX_FDS_PER_READ);
  expect((await c.execute('getfd', { fdname: 'kept' })).reply).toEqual({ return: {} });
  expect(await settledFlood(1)).toBe(1);
  // 50 batches in a row: only the last one is held.
  for (let i = 0; i < 50; i++) {
    const b = memfds(8);
    await c.send('{"execute":"query-version"}', b);
    for (const fd of b) fd.close();
  }
  for (let i = 0; i < 50; i++) await c.line();
  expect(await settledFlood(1 + 8)).toBe(1 + 8);
  await c.close();
  expect(await settledFlood(0)).toBe(0);
  await settle(start - 2); // the connection's own two fds go too
  expect(daemonFds()).toBe(start - 2);
});

test('connections together hold at most MAX_HELD_FDS; all is released when they close', async () => {
  const start = daemonFds();
  const n = Math.ceil(MAX_HELD_FDS / MAX_FDS_PER_READ) + 8;
  const socks: native.Fd[] = [];
  const batch = memfds(MAX_FDS_PER_READ);
  try {
    for (let i = 0; i < n; i++) {
      const s = native.sockets.socket(native.sockets.SOCK_STREAM);
      socks.push(s);
      native.sockets.connectNow(s, d.sock);
      native.sockets.sendWithFds(s, Buffer.from(' '), batch);
    }
    const c = await FdQmpClient.negotiated(d.sock);
    expect((await c.execute('query-version')).reply).toHaveProperty('return');
    await c.close();
    // Each connection costs the daemon two fds (Node's and the reader's copy).
    await new Promise((r) => setTimeout(r, 300));
    expect(floodFds()).toBeLessThanOrEqual(MAX_HELD_FDS);
    expect(floodFds()).toBeGreaterThanOrEqual(MAX_HELD_FDS - MAX_FDS_PER_READ);
    expect(daemonFds()).toBeLessThanOrEqual(start + 2 * n + MAX_HELD_FDS);
  } finally {
    for (const fd of batch) fd.close();
    for (const s of socks) s.close();
  }
  expect(await settledFlood(0)).toBe(0);
  await settle(start);
  expect(daemonFds()).toBe(start);
}, 30_000);

test('a FIFO passed with getfd is kept without being read; the daemon keeps serving', async () => {
  const dir = fs.mkdtempSync(path.join(d.dir, 'fifo-'));
  const fifo = path.join(dir, 'f');
  native.mkfifo(fifo, 0o600);
  const f = native.open(fifo, native.O_RDWR | native.O_NONBLOCK | native.O_CLOEXEC);
  const c = await FdQmpClient.negotiated(d.sock);
  try {
    expect((await c.executeWithFds('getfd', { fdname: 'fifo' }, { sendFds: [f] })).reply).toEqual({ return: {} });
    expect((await c.executeWithFds('add-fd', {}, { sendFds: [f] })).reply).toHaveProperty('return');
    expect((await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'x', size: 1 << 20, 'mem-path': '/dev/fdset/0', share: true })).reply).toHaveProperty('error');
    expect((await c.execute('query-version')).reply).toHaveProperty('return');
  } finally {
    f.close();
    await c.close();
  }
});
