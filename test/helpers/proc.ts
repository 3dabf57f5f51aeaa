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

/** Mappings that belong to memory backends (memfd, POSIX shm, guest_memfd, backing files):
 *  the whole-process count also moves with the JS heap and malloc, which is not ours. */
export function backendMapsCount(pid: number | 'self' = 'self'): number {
  return fs
    .readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => /\/memfd:|\/dev\/shm\/hostmemd|kvm-gmem|hostmemd_back_mem|hostmemd-test/.test(l)).length;
}
