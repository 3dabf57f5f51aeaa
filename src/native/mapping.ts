// A memory mapping whose address never leaves native/: callers name ranges by offset, and every
// range is checked against the mapping so a bad offset cannot reach someone else's memory.
// unmap() is idempotent and waits for in-flight threadpool work (MADV_POPULATE_WRITE) before
// the munmap, so an address is never reused while a worker thread still faults pages into it.
import * as ffi from './ffi';
import { check, SysError } from './errno';
import { MADV_POPULATE_WRITE, PROT_READ, PROT_WRITE } from './constants';

/** A NUMA node mask for mbind(2): a bit mask (bit n = node n), the mask's unsigned long words
 *  (word 0 holds nodes 0-63), raw bytes already laid out as unsigned long[], or null (none). */
export type NodeMask = bigint | readonly bigint[] | Buffer | null;

const WORD_BITS = 64n;
const WORD_BYTES = 8;
/** Pages per mincore(2) call: bounds the result vector (64 KiB) for terabyte mappings. */
const MINCORE_WINDOW_PAGES = 1n << 16n;
const PAGE = BigInt(ffi.getpagesize());

type State = 'mapped' | 'unmapping' | 'unmapped';

let construct: (addr: ffi.Address, length: bigint, prot: number, flags: number) => Mapping;
let addressOf: (m: Mapping, syscall: string, offset: bigint, len: bigint) => ffi.Address;

export class Mapping {
  readonly #addr: ffi.Address;
  #state: State = 'mapped';
  /** Threadpool calls using the address right now. */
  #inflight = 0;

  private constructor(
    addr: ffi.Address,
    /** Bytes requested from mmap (the kernel maps whole pages). */
    readonly length: bigint,
    /** PROT_* it was mapped with: read()/write() refuse what would fault. */
    readonly prot: number,
    /** MAP_* it was mapped with. */
    readonly flags: number,
  ) {
    this.#addr = addr;
  }

  static {
    construct = (addr, length, prot, flags) => new Mapping(addr, length, prot, flags);
    addressOf = (m, syscall, offset, len) => m.#range(syscall, offset, len);
  }

  /** False once unmap() was called (even if the munmap itself waits for a worker). */
  get isMapped(): boolean {
    return this.#state === 'mapped';
  }

  /** The address of [offset, offset+len) after checking that it lies inside the mapping. */
  #range(syscall: string, offset: bigint, len: bigint): ffi.Address {
    if (this.#state !== 'mapped') throw new Error(`${syscall}: the mapping was unmapped`);
    if (offset < 0n || len < 0n || offset + len > this.length) {
      throw new RangeError(`${syscall}: range [${offset}, +${len}) is outside the ${this.length}-byte mapping`);
    }
    return this.#addr + offset;
  }

  /** madvise(2) over [offset, offset+len), by default the whole mapping. */
  madvise(advice: number, offset = 0n, len = this.length - offset): void {
    check('madvise', ffi.madvise(this.#range('madvise', offset, len), len, advice));
  }

  /** mbind(2) over [offset, offset+len). `maxnode` is passed as given (QEMU passes lastbit + 2 to
   *  work around the kernel's off-by-one, qemu-facts §5.3); the mask buffer is made long enough
   *  for it, so the kernel never reads past the mask. */
  mbind(mode: number, nodemask: NodeMask, maxnode: number, flags: number, offset = 0n, len = this.length - offset): void {
    const addr = this.#range('mbind', offset, len);
    check('mbind', ffi.mbind(addr, len, mode, nodemaskBuffer(nodemask, maxnode), BigInt(maxnode), flags));
  }

  /** Resident bytes in [offset, offset+len), counted with mincore(2) (facts §10.9: the only
   *  per-page residency query that also works for guest_memfd). */
  residentBytes(offset = 0n, len = this.length - offset): bigint {
    const base = this.#range('mincore', offset, len);
    const pages = (len + PAGE - 1n) / PAGE;
    const vec = Buffer.alloc(Number(pages < MINCORE_WINDOW_PAGES ? pages : MINCORE_WINDOW_PAGES));
    let resident = 0n;
    for (let p = 0n; p < pages; p += MINCORE_WINDOW_PAGES) {
      const n = pages - p < MINCORE_WINDOW_PAGES ? pages - p : MINCORE_WINDOW_PAGES;
      check('mincore', ffi.mincore(base + p * PAGE, n * PAGE, vec));
      let count = 0;
      for (let i = 0; i < Number(n); i++) count += vec[i] & 1;
      resident += BigInt(count);
    }
    return resident * PAGE;
  }

  /** Copies `len` bytes out of the mapping. Touching a page the kernel cannot supply (a
   *  guest_memfd without INIT_SHARED, a file page past EOF) raises SIGBUS, which kills node. */
  read(offset: number | bigint, len: number): Buffer {
    if ((this.prot & PROT_READ) === 0) throw new RangeError('read: the mapping is not readable');
    const src = this.#range('read', BigInt(offset), BigInt(len));
    const out = Buffer.alloc(len);
    if (len > 0) ffi.memcpy(out, src, len);
    return out;
  }

  /** Copies `data` into the mapping at `offset`. */
  write(offset: number | bigint, data: Uint8Array): void {
    if ((this.prot & PROT_WRITE) === 0) throw new RangeError('write: the mapping is not writable');
    const dest = this.#range('write', BigInt(offset), BigInt(data.length));
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
    if (data.length > 0) ffi.memcpy(dest, buf, data.length);
  }

  /** MADV_POPULATE_WRITE over [offset, offset+len) on libuv's threadpool, so faulting in
   *  gigabytes does not block the event loop. Rejects with SysError (EFAULT when a page cannot
   *  be supplied, ENOMEM when memory runs out, EINVAL on kernels before 5.14). */
  async populateWrite(offset = 0n, len = this.length - offset): Promise<void> {
    const addr = this.#range('madvise(MADV_POPULATE_WRITE)', offset, len);
    this.#inflight++;
    try {
      const r = await ffi.madviseAsync(addr, len, MADV_POPULATE_WRITE);
      if (r.rc < 0) throw new SysError('madvise(MADV_POPULATE_WRITE)', r.errno);
    } finally {
      this.#inflight--;
      if (this.#inflight === 0 && this.#state === 'unmapping') this.#munmap();
    }
  }

  /** Unmaps once; later calls do nothing. With threadpool work in flight the munmap happens when
   *  it finishes; the mapping is unusable from now on either way. */
  unmap(): void {
    if (this.#state !== 'mapped') return;
    this.#state = 'unmapping';
    if (this.#inflight === 0) this.#munmap();
  }

  #munmap(): void {
    this.#state = 'unmapped';
    // munmap of a range we mapped only fails for invalid arguments, which cannot happen here.
    ffi.munmap(this.#addr, this.length);
  }
}

/** Wraps a fresh mmap result (native/ only: index.ts does not export it). */
export function adoptMapping(addr: ffi.Address, length: bigint, prot: number, flags: number): Mapping {
  return construct(addr, length, prot, flags);
}

/** The address of a checked range of `m` (native/ only, e.g. a memslot's userspace_addr). */
export function mappingAddress(m: Mapping, syscall: string, offset: bigint, len: bigint): ffi.Address {
  return addressOf(m, syscall, offset, len);
}

/** Lays a NodeMask out as the unsigned long[] mbind(2) reads: at least ceil(maxnode / 64) words. */
function nodemaskBuffer(mask: NodeMask, maxnode: number): Buffer | null {
  if (mask === null) return null;
  const minWords = Math.ceil(Math.max(0, maxnode) / Number(WORD_BITS));
  if (Buffer.isBuffer(mask)) {
    if (mask.length >= minWords * WORD_BYTES) return mask;
    const b = Buffer.alloc(minWords * WORD_BYTES);
    mask.copy(b);
    return b;
  }
  const words: bigint[] = [];
  if (typeof mask === 'bigint') {
    if (mask < 0n) throw new RangeError('mbind: negative node mask');
    for (let m = mask; m > 0n; m >>= WORD_BITS) words.push(m & 0xffffffffffffffffn);
  } else {
    words.push(...mask);
  }
  const b = Buffer.alloc(Math.max(words.length, minWords, 1) * WORD_BYTES);
  words.forEach((w, i) => b.writeBigUInt64LE(BigInt.asUintN(64, w), i * WORD_BYTES));
  return b;
}
