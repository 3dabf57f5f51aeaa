// Preallocation off the event loop: MADV_POPULATE_WRITE runs through koffi's async calls on
// libuv's threadpool, split like QEMU's touch_all_pages (qemu-facts §5.6) into `threads`
// contiguous shares that run concurrently, each issued in pieces so that progress can be
// reported and an abort takes effect between pieces.
import { Mapping } from './mapping';
import { getpagesize } from './libc';

/** Bytes per threadpool call. At the measured 1.4-2 GiB/s per thread (facts §7) a piece takes
 *  0.5-0.7 s: progress several times a second on each thread, and an abort waits at most that
 *  long. Each piece boundary costs a round trip through the event loop while the other shares
 *  keep both cores busy (profiled in issue 16: 2-30 ms on a loaded 2-core host), so pieces are
 *  as large as progress allows: a 1 GiB backend on 2 threads is one call per thread, as in
 *  QEMU's touch_all_pages. */
export const PREALLOC_PIECE = 1n << 30n;

/** libuv's default threadpool size (deps/uv/src/threadpool.c: default_threads[4]). */
const UV_DEFAULT_THREADPOOL_SIZE = 4;
/** libuv's cap on UV_THREADPOOL_SIZE (MAX_THREADPOOL_SIZE in threadpool.c). */
const UV_MAX_THREADPOOL_SIZE = 1024;

/** The threadpool size libuv uses, as UV_THREADPOOL_SIZE says now. libuv reads the variable once,
 *  when the pool first starts (the first fs/dns/async call), so it has to be set before that: the
 *  `bin/hostmemd` launcher sets 16, QEMU's preallocation thread cap. With fewer pool threads than
 *  prealloc threads the shares queue behind each other, and a populate occupies pool threads
 *  that fs.promises and dns.lookup also wait for. */
export function threadpoolSize(): number {
  const n = Number.parseInt(process.env.UV_THREADPOOL_SIZE ?? '', 10);
  if (!Number.isFinite(n) || n < 1) return UV_DEFAULT_THREADPOOL_SIZE;
  return Math.min(n, UV_MAX_THREADPOOL_SIZE);
}

/** MADV_POPULATE_WRITE over [offset, offset+len) of `m` on the threadpool (one call). */
export function populateWrite(m: Mapping, offset = 0n, len: bigint = m.length - offset): Promise<void> {
  return m.populateWrite(offset, len);
}

/** Called after each piece: bytes done so far (all shares together) and the total. */
export type PreallocProgress = (done: bigint, total: bigint) => void;

export interface PreallocOptions {
  /** Bytes per threadpool call (rounded up to pageSize); default PREALLOC_PIECE. */
  pieceSize?: bigint;
  /** Alignment of shares and pieces: the memory's page size, i.e. the huge page size for
   *  hugetlb memory (madvise needs aligned starts there). Default getpagesize(). */
  pageSize?: number;
  /** Stops every share before its next piece; the promise then rejects with signal.reason once
   *  the pieces already running have finished (a running madvise cannot be interrupted). */
  signal?: AbortSignal;
}

/** Faults in the whole mapping with `threads` concurrent shares. Rejects with the first failure
 *  (a SysError such as EFAULT or ENOMEM) after every share has stopped, so the caller may unmap
 *  at once. Real parallelism is min(threads, threadpoolSize()). */
export async function preallocate(m: Mapping, threads: number, onProgress?: PreallocProgress, opts: PreallocOptions = {}): Promise<void> {
  const page = BigInt(opts.pageSize ?? getpagesize());
  const total = m.length;
  const pages = (total + page - 1n) / page;
  if (pages === 0n) return;
  let n = BigInt(Math.max(1, Math.floor(threads)));
  if (n > pages) n = pages;
  const wanted = opts.pieceSize ?? PREALLOC_PIECE;
  const piece = wanted <= page ? page : ((wanted + page - 1n) / page) * page;
  const signal = opts.signal;
  let done = 0n;
  let stop = false;

  const runShare = async (start: bigint, end: bigint): Promise<void> => {
    try {
      for (let at = start; at < end && !stop; at += piece) {
        signal?.throwIfAborted();
        const len = end - at < piece ? end - at : piece;
        await m.populateWrite(at, len);
        done += len;
        onProgress?.(done, total);
      }
    } catch (e) {
      stop = true;
      throw e;
    }
  };

  // QEMU's split: every share gets pages / n pages, the first pages % n one more.
  const perShare = pages / n;
  const extra = pages % n;
  const shares: Promise<void>[] = [];
  let first = 0n;
  for (let i = 0n; i < n; i++) {
    const count = perShare + (i < extra ? 1n : 0n);
    const start = first * page;
    const endPage = first + count;
    const end = endPage * page < total ? endPage * page : total;
    first = endPage;
    shares.push(runShare(start, end));
  }
  const results = await Promise.allSettled(shares);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
