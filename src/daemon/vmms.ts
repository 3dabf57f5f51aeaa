// Which processes run on hostmemd memory: every process that received a backend's fd through
// memdev-export (a VMM started by hostmemd-run, an upgrade's successor, any other receiver) is
// remembered by pid and start time (a reused pid is another process), and at query time its
// /proc/PID/maps tells which backends it really maps. Upgrades reported by hostmemd-upgrade are
// kept as a short history. Nothing here is journaled: after a daemon restart a VMM is known
// again when it (or its successor) next receives an fd.
import * as fs from 'node:fs';
import type { VmmUpgradeReport } from '../commands/vmm';

/** An upgrade as recorded: the report and when it came. */
export type VmmUpgrade = VmmUpgradeReport & { time: string };

export interface VmmInfo {
  pid: number;
  uid: number;
  command: string;
  since: string;
  /** Backends exported to it, and of these the ones it maps now. */
  memdevs: string[];
  mapped: string[];
  'upgraded-from'?: number;
}

interface Holder {
  pid: number;
  uid: number;
  start: string;
  since: string;
  memdevs: Set<string>;
  upgradedFrom?: number;
}

/** Holders and upgrades remembered at most (oldest forgotten first). */
const MAX_HOLDERS = 4096;
const MAX_UPGRADES = 100;
/** Longest command line shown. */
const MAX_COMMAND = 1024;

/** Field 22 of /proc/PID/stat (start time in clock ticks), after the parenthesised comm. */
function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function commandLine(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, MAX_COMMAND);
  } catch {
    return '';
  }
}

/** "major:minor inode" keys of the files /proc/PID/maps shows mapped. */
function mappedFiles(pid: number): Set<string> {
  const keys = new Set<string>();
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/maps`, 'latin1');
  } catch {
    return keys;
  }
  for (const line of text.split('\n')) {
    const f = line.split(/\s+/);
    if (f.length < 5 || f[4] === '0') continue;
    const [maj, min] = f[3].split(':').map((h) => parseInt(h, 16));
    keys.add(`${maj}:${min} ${f[4]}`);
  }
  return keys;
}

/** glibc's dev_t split into major and minor, as /proc/PID/maps prints them. */
export function fileKey(dev: bigint, ino: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor} ${ino}`;
}

export class VmmRegistry {
  private readonly holders = new Map<number, Holder>();
  private readonly history: VmmUpgrade[] = [];

  /** A backend's fd went to process `pid` (from SO_PEERCRED, not from the client's word). */
  exported(peer: { pid: number; uid: number }, memdev: string): void {
    const start = startTime(peer.pid);
    if (start === undefined) return;
    let h = this.holders.get(peer.pid);
    if (!h || h.start !== start) {
      h = { pid: peer.pid, uid: peer.uid, start, since: new Date().toISOString(), memdevs: new Set() };
      this.holders.delete(peer.pid);
      this.holders.set(peer.pid, h);
      if (this.holders.size > MAX_HOLDERS) this.holders.delete(this.holders.keys().next().value as number);
    }
    h.memdevs.add(memdev);
  }

  /** Live holders; `fileOf` gives a backend's "major:minor inode" key (fileKey) if it exists. */
  list(fileOf: (memdev: string) => string | undefined): VmmInfo[] {
    const out: VmmInfo[] = [];
    for (const h of [...this.holders.values()]) {
      if (startTime(h.pid) !== h.start) {
        this.holders.delete(h.pid);
        continue;
      }
      const maps = mappedFiles(h.pid);
      const memdevs = [...h.memdevs];
      const info: VmmInfo = {
        pid: h.pid,
        uid: h.uid,
        command: commandLine(h.pid),
        since: h.since,
        memdevs,
        mapped: memdevs.filter((m) => {
          const key = fileOf(m);
          return key !== undefined && maps.has(key);
        }),
      };
      if (h.upgradedFrom !== undefined) info['upgraded-from'] = h.upgradedFrom;
      out.push(info);
    }
    return out;
  }

  recordUpgrade(u: VmmUpgradeReport): void {
    this.history.push({ time: new Date().toISOString(), ...u });
    if (this.history.length > MAX_UPGRADES) this.history.shift();
    const h = this.holders.get(u['new-pid']);
    if (u.status === 'completed' && h) h.upgradedFrom = u['old-pid'];
  }

  upgrades(): readonly VmmUpgrade[] {
    return this.history;
  }
}
