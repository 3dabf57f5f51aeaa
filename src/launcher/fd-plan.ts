// Which fd number each exported fd gets in the exec'd program: a memory fd goes where its
// --memdev said, else (like every other fd of an export, e.g. a guest-memfd's "kvm-vm") at the
// next free number from 3 that no --memdev asked for. Pure: the caller may say which numbers
// are taken besides.
export interface PlannedFd {
  id: string;
  /** The fd's name in the export ("memory", "kvm-vm"). */
  name: string;
  target: number;
}

export interface ExportShape {
  id: string;
  /** Fd names in the export's order. */
  names: readonly string[];
  /** Where --memdev put the "memory" fd, if it did. */
  fd?: number;
}

/** Plans every fd of `exports`; default numbers skip those in `taken`. */
export function planFds(exports: readonly ExportShape[], taken: readonly number[], first = 3): PlannedFd[] {
  const used = new Set<number>(taken);
  for (const e of exports) if (e.fd !== undefined) used.add(e.fd);
  let next = first;
  const free = (): number => {
    while (used.has(next)) next++;
    used.add(next);
    return next;
  };
  const out: PlannedFd[] = [];
  // Memory fds first, so `--memdev a --memdev b` gives 3 and 4 whatever else the exports carry.
  for (const e of exports) {
    if (e.names.includes('memory')) out.push({ id: e.id, name: 'memory', target: e.fd ?? free() });
  }
  for (const e of exports) {
    for (const name of e.names) if (name !== 'memory') out.push({ id: e.id, name, target: free() });
  }
  return out;
}

/** HOSTMEMD_FDS's value: "ID:NAME=FD" for each planned fd, comma-separated. */
export function fdsVariable(plan: readonly PlannedFd[]): string {
  return plan.map((p) => `${p.id}:${p.name}=${p.target}`).join(',');
}
