// Test helper: reads this process's /proc/self/{maps,smaps,numa_maps,fd} so system tests can
// check the real effects of backends (mapping size and sharing, residency, VmFlags, policy).
import * as fs from 'node:fs';

export interface SmapsEntry {
  start: bigint;
  end: bigint;
  size: bigint;
  perms: string;
  path: string;
  rssKb: number;
  vmFlags: string[];
}

export function smaps(pid: number | 'self' = 'self'): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const start = BigInt('0x' + head[1]);
      const end = BigInt('0x' + head[2]);
      cur = { start, end, size: end - start, perms: head[3], path: head[4], rssKb: 0, vmFlags: [] };
      out.push(cur);
    } else if (cur && line.startsWith('Rss:')) cur.rssKb = Number(/(\d+)/.exec(line)![1]);
    else if (cur && line.startsWith('VmFlags:')) cur.vmFlags = line.slice(8).trim().split(/\s+/);
  }
  return out;
}

/** The mappings whose size and path match (path may be a RegExp). */
export function findMappings(size: bigint, path?: string | RegExp, pid: number | 'self' = 'self'): SmapsEntry[] {
  return smaps(pid).filter((m) => m.size === size && (path === undefined || (typeof path === 'string' ? m.path === path : path.test(m.path))));
}

/** numa_maps policy field of the mapping starting at `start`. */
export function numaPolicy(start: bigint, pid: number | 'self' = 'self'): string | undefined {
  for (const line of fs.readFileSync(`/proc/${pid}/numa_maps`, 'utf8').split('\n')) {
    const [addr, policy] = line.split(' ');
    if (addr && BigInt('0x' + addr) === start) return policy;
  }
  return undefined;
}

export function fdCount(pid: number | 'self' = 'self'): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

export function mapsCount(pid: number | 'self' = 'self'): number {
  return fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l !== '').length;
}

/** fd targets (readlink of /proc/PID/fd/*), e.g. "/memfd:x (deleted)", "anon_inode:[kvm-gmem]". */
export function fdTargets(pid: number | 'self' = 'self'): string[] {
  const dir = `/proc/${pid}/fd`;
  const out: string[] = [];
  for (const f of fs.readdirSync(dir)) {
    try {
      out.push(fs.readlinkSync(`${dir}/${f}`));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Private anonymous mappings marked the way backends mark theirs: VmFlags `mg`
 *  (MADV_MERGEABLE, merge=on, the default) or `dd` (MADV_DONTDUMP, dump=off). V8 and malloc
 *  never set them, so a RAM backend left mapped shows here and heap pages do not. (A private
 *  RAM backend with merge=off and dump=on cannot be told from heap pages.) */
export function markedAnonMapsCount(pid: number | 'self' = 'self'): number {
  return smaps(pid).filter((m) => m.path === '' && (m.vmFlags.includes('mg') || m.vmFlags.includes('dd'))).length;
}

/** Mappings that belong to memory backends: memfd, POSIX shm, guest_memfd, backing files,
 *  shared anonymous memory (`/dev/zero (deleted)`), and the marked private anonymous ones
 *  (markedAnonMapsCount). The whole-process count also moves with the JS heap, which is not
 *  ours: V8 maps and unmaps hundreds of heap pages as it grows and collects. */
export function backendMapsCount(pid: number | 'self' = 'self'): number {
  const files = smaps(pid).filter((m) => /\/memfd:|\/dev\/shm\/hostmemd|kvm-gmem|hostmemd_back_mem|hostmemd-test|^\/dev\/zero/.test(m.path)).length;
  return files + markedAnonMapsCount(pid);
}

/** Start of the one writable, file-backed mapping of exactly `size` bytes in `pid` (a memory
 *  backend: memfd, shm, guest_memfd or file; anonymous heap areas are not file-backed). */
export function backendMapping(pid: number, size: bigint | number, path?: string | RegExp): bigint {
  const m = findMappings(BigInt(size), path, pid).filter((e) => e.perms.startsWith('rw') && e.path !== '' && !e.path.startsWith('['));
  if (m.length !== 1) throw new Error(`expected one mapping of ${size} bytes in ${pid}, found ${JSON.stringify(m.map((x) => [x.start.toString(16), x.perms, x.path]))}`);
  return m[0].start;
}

/** Reads `len` bytes at `addr` of process `pid`'s memory (root, or ptrace rights, needed). */
export function readProcessMemory(pid: number, addr: bigint, len: number): Buffer {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, Number(addr));
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` at `addr` of process `pid`'s memory, as a guest would write its RAM. */
export function writeProcessMemory(pid: number, addr: bigint, data: Buffer): void {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, Number(addr));
  } finally {
    fs.closeSync(fd);
  }
}

/** A recognisable 4 KiB page for `tag` (writes and checks of backend memory). */
export function tagPage(tag: string): Buffer {
  return Buffer.from(`${tag}:`.repeat(4096).slice(0, 4096));
}

/** A 4 KiB page of bytes that depend on `tag` and on their position (no two tags alike). */
function patternPage(tag: string): Buffer {
  const b = Buffer.alloc(4096);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + tag.charCodeAt(i % tag.length)) & 0xff;
  return b;
}
/** Where a backend's pattern goes: its first, middle and last page. */
const patternOffsets = (size: bigint): bigint[] => [0n, size / 2n, size - 4096n];

/** Writes a backend's pattern into its one mapping of `size` bytes in `pid`, as a guest would. */
export function writeBackendPattern(pid: number, b: { id: string; size: bigint | number }): void {
  const size = BigInt(b.size);
  const at = backendMapping(pid, size);
  for (const off of patternOffsets(size)) writeProcessMemory(pid, at + off, patternPage(b.id + off));
}

/** True if the backend's mapping in `pid` holds the pattern writeBackendPattern wrote. */
export function backendPatternIntact(pid: number, b: { id: string; size: bigint | number }): boolean {
  const size = BigInt(b.size);
  const at = backendMapping(pid, size);
  return patternOffsets(size).every((off) => readProcessMemory(pid, at + off, 4096).equals(patternPage(b.id + off)));
}

/** `count()` once it equals `want`, or its last value after `ms` (bounded): fds a daemon closes
 *  just after its reply (a sent copy, a closed connection) come and go a moment late. */
export async function settledCount(count: () => number, want: number, ms = 3000): Promise<number> {
  const deadline = Date.now() + ms;
  while (count() !== want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return count();
}
