// Preallocation on libuv's threadpool: the whole mapping becomes resident with any thread count,
// progress is reported per piece, an abort stops between pieces, failures reject with SysError
// after every share has stopped, unmap() waits for in-flight work, and the event loop keeps
// running while gigabytes are faulted in.
import * as native from '../../../src/native';
import { findMappings } from '../../helpers/proc';

const KiB = 1n << 10n;
const MiB = 1n << 20n;
const RW = native.PROT_READ | native.PROT_WRITE;
const path = (name: string): string => `/memfd:${name} (deleted)`;

function mapMemfd(name: string, size: bigint, fileSize = size): { fd: native.Fd; m: native.Mapping } {
  const fd = native.memfdCreate(name, native.MFD_CLOEXEC);
  native.ftruncate(fd, fileSize);
  return { fd, m: native.mmap(size, RW, native.MAP_SHARED, fd, 0n) };
}

test.each([1, 2, 3, 16])('%i thread(s): an odd-sized mapping becomes fully resident; progress ends at the total', async (threads) => {
  const size = 10n * MiB + 12n * KiB; // 2563 pages: shares of unequal page counts
  const { fd, m } = mapMemfd(`hmd-np-threads${threads}`, size);
  const seen: bigint[] = [];
  await native.preallocate(m, threads, (done, total) => {
    expect(total).toBe(size);
    seen.push(done);
  }, { pieceSize: MiB });
  expect(m.residentBytes()).toBe(size);
  expect(BigInt(findMappings(size, path(`hmd-np-threads${threads}`))[0].rssKb) * KiB).toBe(size);
  expect(seen[seen.length - 1]).toBe(size);
  expect([...seen].sort((a, b) => (a < b ? -1 : 1))).toEqual(seen);
  // At least one piece per 1 MiB, plus the partial last piece of each share.
  expect(seen.length).toBeGreaterThanOrEqual(11);
  m.unmap();
  fd.close();
});

test('pieces are rounded up to the page size given (huge pages need aligned starts)', async () => {
  const size = 8n * MiB;
  const { fd, m } = mapMemfd('hmd-np-align', size);
  const seen: bigint[] = [];
  await native.preallocate(m, 2, (done) => seen.push(done), { pieceSize: 1n, pageSize: 2 * 1024 * 1024 });
  expect(seen).toEqual([2n, 4n, 6n, 8n].map((x) => x * MiB));
  m.unmap();
  fd.close();
});

test('an abort stops every share before its next piece and rejects with the reason', async () => {
  const size = 64n * MiB;
  const { fd, m } = mapMemfd('hmd-np-abort', size);
  const ac = new AbortController();
  const reason = new Error('stop preallocating');
  let calls = 0;
  const p = native.preallocate(m, 2, () => {
    if (++calls === 2) ac.abort(reason);
  }, { pieceSize: MiB, signal: ac.signal });
  await expect(p).rejects.toBe(reason);
  const resident = m.residentBytes();
  expect(resident).toBeGreaterThanOrEqual(2n * MiB);
  expect(resident).toBeLessThan(size);
  m.unmap();
  fd.close();
});

test('a failing piece rejects with SysError EFAULT after the other shares have stopped', async () => {
  const size = 32n * MiB;
  // The file covers only the first 4 MiB: populating beyond it would raise SIGBUS, i.e. EFAULT.
  const { fd, m } = mapMemfd('hmd-np-efault', size, 4n * MiB);
  const err = await native.preallocate(m, 2, undefined, { pieceSize: MiB }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(native.SysError);
  expect(err).toMatchObject({ code: 'EFAULT', strerror: 'Bad address', syscall: 'madvise(MADV_POPULATE_WRITE)' });
  // Share 2 (16-32 MiB) failed at once; share 1 stopped after the file's end at the latest.
  expect(m.residentBytes()).toBeLessThanOrEqual(4n * MiB);
  m.unmap();
  fd.close();
});

test('unmap() during an in-flight populate defers the munmap until the worker is done', async () => {
  const size = 256n * MiB + 4n * KiB;
  const { fd, m } = mapMemfd('hmd-np-inflight', size);
  const p = native.populateWrite(m);
  m.unmap();
  expect(m.isMapped).toBe(false);
  // Still mapped: the threadpool thread is faulting pages into this range right now.
  expect(findMappings(size, path('hmd-np-inflight'))).toHaveLength(1);
  await p;
  expect(findMappings(size, path('hmd-np-inflight'))).toHaveLength(0);
  m.unmap();
  fd.close();
});

test('the event loop keeps running while 1 GiB is populated', async () => {
  const size = 1n << 30n;
  const { fd, m } = mapMemfd('hmd-np-loop', size);
  let ticks = 0;
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 1);
  const t0 = performance.now();
  await native.preallocate(m, 2);
  const elapsed = performance.now() - t0;
  clearInterval(timer);
  expect(m.residentBytes()).toBe(size);
  // A synchronous madvise would be one gap as long as the whole populate (hundreds of ms). The
  // bound leaves room for this nested VM's own scheduling noise (idle gaps of ~50 ms measured).
  expect(ticks).toBeGreaterThanOrEqual(10);
  expect(maxGap).toBeLessThan(Math.max(100, elapsed / 2));
  m.unmap();
  fd.close();
});

test('threadpoolSize reflects UV_THREADPOOL_SIZE, defaulting to libuv\'s 4', () => {
  const saved = process.env.UV_THREADPOOL_SIZE;
  try {
    delete process.env.UV_THREADPOOL_SIZE;
    expect(native.threadpoolSize()).toBe(4);
    process.env.UV_THREADPOOL_SIZE = '16';
    expect(native.threadpoolSize()).toBe(16);
    process.env.UV_THREADPOOL_SIZE = '5000';
    expect(native.threadpoolSize()).toBe(1024);
  } finally {
    if (saved === undefined) delete process.env.UV_THREADPOOL_SIZE;
    else process.env.UV_THREADPOOL_SIZE = saved;
  }
});
