// Resident memory of backends, read at scrape time: each backend's own count (mincore on its
// mapping) when it has one, otherwise an estimate from /proc/self/smaps (a mapping of the
// backend's exact size, preferring one whose name carries the backend's id). Read-only.
import * as fs from 'node:fs';

/** What the web layer needs to know about a memory backend (HostMemoryBackend fits). */
export interface BackendView {
  readonly name: string;
  readonly typeName: string;
  readonly size: bigint;
  readonly share?: boolean;
  readonly prealloc?: boolean;
  readonly policy?: string;
  /** memdev-export replies sent for it by this process. */
  readonly exports?: number;
  residentBytes?(): bigint | undefined;
}

interface SmapsEntry {
  name: string;
  size: bigint;
  rss: bigint;
  claimed: boolean;
}

/** Parses /proc/self/smaps: one entry per mapping with its name, size and Rss. */
export function parseSmaps(text: string): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
    if (head) {
      cur = { name: head[3], size: BigInt('0x' + head[2]) - BigInt('0x' + head[1]), rss: 0n, claimed: false };
      out.push(cur);
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && cur) cur.rss = BigInt(rss[1]) * 1024n;
  }
  return out;
}

/** Resident bytes per backend, in the order given. smaps is read at most once per call and
 *  only if some backend cannot count for itself. */
export function residentOf(backends: readonly BackendView[], readSmaps: () => string = () => fs.readFileSync('/proc/self/smaps', 'utf8')): bigint[] {
  const own = backends.map((b) => {
    try {
      return b.residentBytes?.();
    } catch {
      return undefined; // unmapped meanwhile, or the count failed: fall back below
    }
  });
  if (own.every((v) => v !== undefined)) return own as bigint[];
  let smaps: SmapsEntry[] = [];
  try {
    smaps = parseSmaps(readSmaps());
  } catch {
    /* no /proc: report 0 rather than fail the scrape */
  }
  return own.map((v, i) => {
    if (v !== undefined) return v;
    const b = backends[i];
    if (b.size === 0n) return 0n;
    const candidates = smaps.filter((e) => !e.claimed && e.size === b.size);
    const pick = candidates.find((e) => e.name.includes(b.name)) ?? candidates.find((e) => e.name !== '') ?? candidates[0];
    if (!pick) return 0n;
    pick.claimed = true;
    return pick.rss;
  });
}
