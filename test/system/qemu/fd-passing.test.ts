// Differential test of fd passing (SCM_RIGHTS on the QMP UNIX socket) against QEMU 7.2:
// getfd, closefd, add-fd, remove-fd and query-fdsets, each error path and the held-fd rule
// (a connection keeps the latest fds it received until a command takes them), must answer
// alike; fd numbers differ by process and are compared by kind. Then what QEMU 7.2 cannot do:
// memory-backend-file over add-fd + /dev/fdset/N (7.2 treats it as a path; hostmemd opens it
// as newer QEMU does), with the bytes the client's own fd holds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../../src/native';
import { FdQmpClient, openFdCount, readThroughFd } from '../../helpers/fd-client';
import { qemuAvailable, qemuAndHostmemd, announceSkip } from '../../helpers/qemu';
import { tmpDir } from '../../helpers/daemon';
import { FDSET_NOT_FILE_TEXT } from '../../../src/backends/file';

const MiB = 1 << 20;
const have = qemuAvailable();
if (!have) announceSkip('fd-passing differential test', 'qemu-system-x86_64 is not installed');
const maybe = have ? describe : describe.skip;

/** fd numbers are the server's own: compared as "N". */
const normalise = (reply: Record<string, unknown>): string => JSON.stringify(reply).replace(/"fd":\d+/g, '"fd":"N"');

/** One step: a command, the number of fds sent with it. */
type Step = [string, Record<string, unknown> | undefined, number];
const STEPS: Step[] = [
  ['getfd', { fdname: 'a' }, 0],
  ['getfd', { fdname: '1abc' }, 0],
  ['getfd', { fdname: '1abc' }, 1],
  ['getfd', { fdname: 'a' }, 1],
  ['getfd', { fdname: 'a' }, 1], // replaces the first
  ['getfd', { fdname: '' }, 1],
  ['getfd', { fdname: 'b' }, 3], // two extras closed
  ['closefd', { fdname: 'a' }, 0],
  ['closefd', { fdname: 'a' }, 0],
  ['closefd', { fdname: 'zz' }, 0],
  ['add-fd', {}, 0],
  ['add-fd', { 'fdset-id': -1 }, 0],
  ['add-fd', { 'fdset-id': -1 }, 1],
  ['add-fd', {}, 1],
  ['add-fd', { 'fdset-id': 5, opaque: 'hello' }, 1],
  ['add-fd', { 'fdset-id': 5 }, 1],
  ['add-fd', {}, 2],
  ['query-fdsets', undefined, 0],
  ['remove-fd', { 'fdset-id': 5, fd: 99999 }, 0],
  ['remove-fd', { 'fdset-id': 77 }, 0],
  ['remove-fd', { 'fdset-id': 77, fd: 3 }, 0],
  ['remove-fd', { 'fdset-id': 0 }, 0],
  ['query-fdsets', undefined, 0],
  ['remove-fd', { 'fdset-id': 5 }, 0],
  ['query-fdsets', undefined, 0],
  // The held-fd rule: an fd that came with another command is taken by the next getfd.
  ['query-version', undefined, 1],
  ['getfd', { fdname: 'late' }, 0],
  ['getfd', { fdname: 'none-left' }, 0],
  ['add-fd', { 'fdset-id': 9 }, 1],
  ['object-add', { 'qom-type': 'memory-backend-file', id: 'm', size: MiB, 'mem-path': '/dev/fdset/10', share: true }, 0],
];

async function run(sock: string): Promise<string[]> {
  const c = await FdQmpClient.negotiated(sock);
  const out: string[] = [];
  try {
    for (const [cmd, args, n] of STEPS) {
      const fds = Array.from({ length: n }, () => native.memfdCreate('fdpass', native.MFD_CLOEXEC));
      const r = await c.executeWithFds(cmd, args, { sendFds: fds });
      for (const fd of [...fds, ...r.fds]) fd.close();
      let line = normalise(r.reply);
      if (cmd === 'query-version' && 'return' in r.reply) line = 'return version';
      out.push(`${cmd} ${JSON.stringify(args ?? {})} +${n} fds -> ${line}`);
    }
  } finally {
    await c.close();
  }
  return out;
}

maybe('fd passing, QEMU 7.2 vs hostmemd', () => {
  const both = qemuAndHostmemd(['--accel', 'none']);

  test('every step answers alike', async () => {
    const q = await run(both.qemu.sock);
    const h = await run(both.hostmemd.sock);
    expect(h).toEqual(q);
  });

  test('a dead client: its named fds and fd-set fds are closed in the daemon', async () => {
    // The previous test's connection is gone once its fd sets are (closed at its disconnect).
    const probe = await FdQmpClient.negotiated(both.hostmemd.sock);
    for (let i = 0; i < 200 && ((await probe.execute('query-fdsets')).reply.return as unknown[]).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    await probe.close();
    await new Promise((r) => setTimeout(r, 100));
    const start = openFdCount();
    const c = await FdQmpClient.negotiated(both.hostmemd.sock);
    for (let i = 0; i < 5; i++) {
      const a = native.memfdCreate('named', native.MFD_CLOEXEC);
      expect((await c.executeWithFds('getfd', { fdname: `n${i}` }, { sendFds: [a] })).reply).toEqual({ return: {} });
      a.close();
      const b = native.memfdCreate('set', native.MFD_CLOEXEC);
      expect((await c.executeWithFds('add-fd', { 'fdset-id': 40 }, { sendFds: [b] })).reply).toEqual({ return: expect.objectContaining({ 'fdset-id': 40 }) });
      b.close();
    }
    // An fd sent with no command taking it is held, and closed with the connection too.
    const held = native.memfdCreate('held', native.MFD_CLOEXEC);
    await c.executeWithFds('query-version', undefined, { sendFds: [held] });
    held.close();
    await c.close();
    // The daemon runs in this process: its count comes back to where it was.
    for (let i = 0; i < 200 && openFdCount() !== start; i++) await new Promise((r) => setTimeout(r, 10));
    expect(openFdCount()).toBe(start);
    const other = await FdQmpClient.negotiated(both.hostmemd.sock);
    expect((await other.execute('query-fdsets')).reply).toEqual({ return: [] });
    await other.close();
  });

  test('memory-backend-file over add-fd + /dev/fdset/N: the client file, outside --mem-path-allow', async () => {
    const dir = tmpDir();
    const c = await FdQmpClient.negotiated(both.hostmemd.sock);
    try {
      const file = path.join(dir, 'guest.img');
      const content = Buffer.alloc(MiB);
      content.write('the client opened this file', 4096);
      fs.writeFileSync(file, content);
      // QEMU's rule: the first fd of the set with the backend's access mode (O_RDWR) is taken.
      const ro = native.open(file, native.O_RDONLY | native.O_CLOEXEC);
      const rw = native.open(file, native.O_RDWR | native.O_CLOEXEC);
      for (const fd of [ro, rw]) expect((await c.executeWithFds('add-fd', { 'fdset-id': 3 }, { sendFds: [fd] })).reply).toHaveProperty('return');
      ro.close();
      rw.close();
      const add = { 'qom-type': 'memory-backend-file', id: 'viaset', size: MiB, 'mem-path': '/dev/fdset/3', share: true };
      expect((await c.execute('object-add', add)).reply).toEqual({ return: {} });
      // The set may go: the backend holds its own copy.
      expect((await c.execute('remove-fd', { 'fdset-id': 3 })).reply).toEqual({ return: {} });
      const e = await c.executeWithFds('memdev-export', { id: 'viaset' });
      expect(readThroughFd(e.fds[0], 4096, 27).toString()).toBe('the client opened this file');
      for (const fd of e.fds) fd.close();
      expect((await c.execute('object-del', { id: 'viaset' })).reply).toEqual({ return: {} });

      // Only read-only fds in the set: no fd of the wanted mode (EACCES).
      const ro2 = native.open(file, native.O_RDONLY | native.O_CLOEXEC);
      await c.executeWithFds('add-fd', { 'fdset-id': 4 }, { sendFds: [ro2] });
      ro2.close();
      expect((await c.execute('object-add', { ...add, 'mem-path': '/dev/fdset/4' })).reply).toEqual({ error: { class: 'GenericError', desc: "can't open backing store /dev/fdset/4 for guest RAM: Permission denied" } });
      // A FIFO in the set is refused without being opened for I/O or waited on.
      const fifo = path.join(dir, 'fifo');
      native.mkfifo(fifo, 0o600);
      const f = native.open(fifo, native.O_RDWR | native.O_NONBLOCK | native.O_CLOEXEC);
      await c.executeWithFds('add-fd', { 'fdset-id': 6 }, { sendFds: [f] });
      f.close();
      expect((await c.execute('object-add', { ...add, 'mem-path': '/dev/fdset/6' })).reply).toEqual({ error: { class: 'GenericError', desc: FDSET_NOT_FILE_TEXT.replace('%s', '/dev/fdset/6') } });
      // Another client cannot use this client's set: to it, the set does not exist.
      const rw2 = native.open(file, native.O_RDWR | native.O_CLOEXEC);
      await c.executeWithFds('add-fd', { 'fdset-id': 8 }, { sendFds: [rw2] });
      rw2.close();
      const stranger = await FdQmpClient.negotiated(both.hostmemd.sock);
      try {
        expect((await stranger.execute('object-add', { ...add, 'mem-path': '/dev/fdset/8' })).reply).toEqual({ error: { class: 'GenericError', desc: "can't open backing store /dev/fdset/8 for guest RAM: No such file or directory" } });
      } finally {
        await stranger.close();
      }
      expect((await c.execute('object-add', { ...add, 'mem-path': '/dev/fdset/8' })).reply).toEqual({ return: {} });
      expect((await c.execute('object-del', { id: 'viaset' })).reply).toEqual({ return: {} });
      // No such set: QEMU 7.2's text for every /dev/fdset path.
      expect((await c.execute('object-add', { ...add, 'mem-path': '/dev/fdset/99' })).reply).toEqual({ error: { class: 'GenericError', desc: "can't open backing store /dev/fdset/99 for guest RAM: No such file or directory" } });
      expect((await c.execute('query-memdev')).reply).toEqual({ return: [] });
    } finally {
      await c.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
