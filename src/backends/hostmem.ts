// The abstract memory-backend type: QEMU's common properties with their defaults and
// after-creation rules (qemu-facts §5.2), and complete(): allocate (subclass), alignment
// check, madvise for merge/dump, mbind for policy/host-nodes, preallocation off the event
// loop (§5.3, §5.6). Subclasses only say how to get the fd and the mapping.
import { JsonValue } from '../json/value';
import { genericError, QmpError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';
import { PropertyDef, RegisteredType, SetPhase } from '../qom/object';
import { Keeping, ReleaseMode, RestoreSource, UserCreatable } from '../qom/user-creatable';
import { visitBool, visitEnum, visitStr, visitUint16List, visitUint64, visitUintN } from '../qom/visit';
import * as native from '../native';
import { sizeToStr } from './size-str';
import { FdRegistry } from '../fds/registry';
import { MemoryRegion, memoryRegionChildName } from './memory-region';

export const HOST_MEM_POLICIES = ['default', 'preferred', 'bind', 'interleave'] as const;
export type HostMemPolicy = (typeof HOST_MEM_POLICIES)[number];
/** MPOL_DEFAULT/PREFERRED/BIND/INTERLEAVE map 1:1 from the enum order (§5.7). */
const MPOL_MODE: Record<HostMemPolicy, number> = { default: 0, preferred: 1, bind: 2, interleave: 3 };
/** host-nodes of every backend that has none. */
const NO_HOST_NODES: readonly number[] = Object.freeze([]);
/** MAX_NODES in QEMU: host-nodes values must be below it. */
export const MAX_NODES = 128;
/** QEMU's MAX_MEM_PREALLOC_THREAD_COUNT. */
export const MAX_PREALLOC_THREADS = 16;
/** Sizes above this cannot be page-rounded or passed as off_t: refused instead of QEMU's abort. */
export const MAX_BACKEND_SIZE = (1n << 63n) - (1n << 30n);

/** What a subclass's alloc() produced. */
export interface Allocation {
  fd?: native.Fd;
  mapping: native.Mapping;
  /** Page size of the memory (huge page size for hugetlb). */
  pageSize: number;
}

/** Services backends use: the preallocation tracker (query-prealloc), object lookup, and the
 *  mem-path confinement. */
export interface BackendServices {
  preallocs: PreallocTracker;
  /** Named fds (cpr_find_fd / cpr_save_fd). */
  fds: FdRegistry;
  resolvePath(path: string): { typeName: string } | 'none' | 'ambiguous';
  cpuCount(): number;
  /** Absolute directories memory-backend-file's mem-path must lie in (--mem-path-allow). */
  memPathAllow: readonly string[];
  /** "/dev/fdset/N": a copy of an fd a client put in that set (add-fd) with this access mode;
   *  throws SysError ENOENT / EACCES as open(2) would. Absent: no fd sets. */
  openFdset?(path: string, accessMode: number): native.Fd;
  /** The memory-region type (registerBackendTypes sets it): a created backend shows its
   *  region as the child `<name>[0]`, as QEMU's do. Without it, no child is made. */
  memoryRegion?: RegisteredType;
}

export interface PreallocEntry {
  id: string;
  qomType: string;
  size: bigint;
  done: bigint;
  threads: number;
}

export class PreallocTracker {
  readonly running = new Map<HostMemoryBackend, PreallocEntry>();
  /** `onProgress` is called as bytes complete (metrics, console progress). */
  constructor(readonly onProgress?: (e: PreallocEntry) => void) {}
  list(): JsonValue[] {
    return [...this.running.values()].map((e) => ({ id: e.id, 'qom-type': e.qomType, size: e.size, done: e.done, threads: e.threads }));
  }
}

export abstract class HostMemoryBackend extends UserCreatable {
  size = 0n;
  merge = true;
  dump = true;
  prealloc = false;
  preallocThreads = 1;
  preallocContext = '';
  share = false;
  reserve = true;
  /** Sorted, without duplicates; one shared empty array until set (a Set per backend cost
   *  ~200 bytes each at 10,000 backends, issue 7). */
  hostNodes: readonly number[] = NO_HOST_NODES;
  policy: HostMemPolicy = 'default';
  useCanonicalPath = false;
  /** Set by file, memfd and guest-memfd: size must be a multiple of the page size. */
  protected aligned = false;

  fd?: native.Fd;
  mapping?: native.Mapping;
  /** memdev-export replies sent for this backend by this process. */
  exports = 0;
  /** Set by complete(): the memory came from a preserved fd (restart, handover). */
  reattached = false;
  /** The RAMBlock name, fixed when complete() starts. The fd registry, the fd store and the
   *  journal know the memory by it, so a later qom-set of x-use-canonical-path-for-ramblock-id
   *  (which QEMU accepts without renaming the RAMBlock) cannot part the backend from its fd. */
  private madeAs?: string;
  pageSize = native.pageSize();

  constructor(
    type: RegisteredType,
    id: string,
    readonly services: BackendServices,
  ) {
    super(type, id);
  }

  get created(): boolean {
    return this.mapping !== undefined;
  }

  /** The RAMBlock name QEMU would use: the id, or the canonical path on request; once
   *  creation has begun, the name it was made under. */
  get memName(): string {
    return this.madeAs ?? (this.useCanonicalPath ? `/objects/${this.name}` : this.name);
  }

  /** Creates the fd (if any) and the mapping. Must clean up after itself on failure. */
  protected abstract alloc(): Promise<Allocation> | Allocation;

  async complete(): Promise<void> {
    const name = (this.madeAs = this.memName);
    // A preserved fd (fd store, handover) holds memory already made and filled: it is mapped
    // again as it is, without preallocation (qemu-facts §6.5, cpr_find_fd).
    this.reattached = this.services.fds.isPreserved(name);
    let a: Allocation;
    try {
      a = await this.alloc();
    } catch (e) {
      // A preserved fd that could not be used is given up (alloc closed it if it touched it).
      this.services.fds.discardPreserved(name);
      throw e;
    }
    this.fd = a.fd;
    this.mapping = a.mapping;
    this.pageSize = a.pageSize;
    try {
      if (a.fd) {
        try {
          this.services.fds.save(name, a.fd, this.share);
        } catch (e) {
          throw failedWith(`cannot preserve the memory of '${name}'`, e);
        }
      }
      if (this.aligned && this.size % BigInt(a.pageSize) !== 0n) {
        throw genericError(`backend '${this.typeName}' memory size must be multiple of ${sizeToStr(a.pageSize)}`);
      }
      if (this.merge) a.mapping.madvise(native.MADV_MERGEABLE);
      if (!this.dump) a.mapping.madvise(native.MADV_DONTDUMP);
      this.applyPolicy();
      if (this.prealloc && !this.reattached) await this.preallocate();
    } catch (e) {
      this.release('failed');
      throw e;
    }
    this.addRegionChild(name);
  }

  /** The `<name>[0]` child, named after the RAMBlock; the tree indexes it when the backend
   *  joins /objects. */
  private addRegionChild(name: string): void {
    const type = this.services.memoryRegion;
    if (!type) return;
    const childName = memoryRegionChildName(name);
    if (this.children.has(childName)) return;
    const region = new MemoryRegion(type, childName, this);
    region.parent = this;
    this.addChild(region);
  }

  /** Whether the memory's contents outlive the process: only shared memory behind an fd does
   *  (a private mapping's pages belong to this process alone; QEMU's CPR needs share=on too). */
  get preservable(): boolean {
    return this.share && this.fd !== undefined;
  }

  override keeping(): Keeping {
    return {
      preservable: this.preservable,
      fdName: this.fd ? this.memName : undefined,
      source: this.reattached ? 'preserved-fd' : this.contentsInPath ? 'path' : 'new',
    };
  }

  override restoreSource(): RestoreSource {
    // Private pages belonged to the process that is gone, whatever fd or file was behind them.
    if (!this.share) return { from: 'private' };
    if (this.services.fds.isPreserved(this.memName)) return { from: 'preserved-fd' };
    return this.pathSource() ?? { from: 'new' };
  }

  /** Whether the memory's contents are still in a file reopened by path (memory-backend-file),
   *  looked at before allocation; undefined: not a file backend. */
  protected pathSource(): RestoreSource | undefined {
    return undefined;
  }

  /** The memory's contents live in a file reopened by path (memory-backend-file). */
  protected get contentsInPath(): boolean {
    return false;
  }

  /** mbind per policy and host-nodes with QEMU's checks (§5.3 step 4). */
  private applyPolicy(): void {
    const nodes = this.hostNodes;
    if (nodes.length > 0 && this.policy === 'default') {
      throw genericError('host-nodes must be empty for policy default, or you should explicitly specify a policy other than default');
    }
    if (nodes.length === 0 && this.policy !== 'default') throw genericError(`host-nodes must be set for policy ${this.policy}`);
    if (this.policy === 'default') return;
    const lastbit = nodes[nodes.length - 1];
    const maxnode = (lastbit + 1) % (MAX_NODES + 1);
    let mask = 0n;
    for (const n of nodes) mask |= 1n << BigInt(n);
    try {
      // maxnode + 1: QEMU's workaround for the kernel's off-by-one in mbind's nodemask size.
      this.mapping!.mbind(MPOL_MODE[this.policy], mask, maxnode + 1, native.MPOL_MF_STRICT | native.MPOL_MF_MOVE);
    } catch (e) {
      throw failedWith(`cannot bind memory to host NUMA nodes`, e);
    }
  }

  /** Thread count as QEMU computes it (§5.6): capped by CPUs, 16, pages and 64 MiB chunks. */
  preallocThreadCount(): number {
    const pages = Number((this.size + BigInt(this.pageSize) - 1n) / BigInt(this.pageSize));
    let n = Math.min(this.services.cpuCount(), MAX_PREALLOC_THREADS, this.preallocThreads);
    n = Math.min(n, pages);
    n = Math.min(n, Math.max(1, Number(this.size / (64n << 20n))));
    return Math.max(1, n);
  }

  /** Faults the whole mapping in, off the event loop, tracked for query-prealloc. */
  async preallocate(): Promise<void> {
    const threads = this.preallocThreadCount();
    const entry: PreallocEntry = { id: this.name, qomType: this.typeName, size: this.size, done: 0n, threads };
    const tracker = this.services.preallocs;
    tracker.running.set(this, entry);
    try {
      // Shares must start on this memory's page boundaries (huge pages for hugetlb).
      await native.preallocate(
        this.mapping!,
        threads,
        (done: bigint) => {
          entry.done = done;
          tracker.onProgress?.(entry);
        },
        { pageSize: this.pageSize },
      );
    } catch (e) {
      throw failedWith(`qemu_prealloc_mem: preallocating memory failed`, e);
    } finally {
      tracker.running.delete(this);
    }
    this.prealloc = true;
  }

  release(mode: ReleaseMode): void {
    this.mapping?.unmap();
    if (this.fd) {
      if (mode === 'deleted' || mode === 'failed') this.services.fds.drop(this.memName);
      else this.services.fds.letGo(this.memName);
      this.fd.close();
    }
    this.mapping = undefined;
    this.fd = undefined;
  }

  /** Bytes of this backend resident in RAM (mincore-free estimate: the mapping's own count). */
  residentBytes(): bigint | undefined {
    return this.mapping?.residentBytes?.();
  }

  override chargedBytes(): bigint {
    return this.size;
  }

  /** query-memdev's Memdev for this backend (schema member order). */
  memdev(): Record<string, JsonValue> {
    return {
      id: this.name,
      size: this.size,
      merge: this.merge,
      dump: this.dump,
      prealloc: this.prealloc,
      share: this.share,
      reserve: this.reserve,
      'host-nodes': [...this.hostNodes],
      policy: this.policy,
    };
  }
}

type B = HostMemoryBackend;
const frozen = (o: B, phase: SetPhase): boolean => phase === 'live' && o.created;
const intValue = (v: bigint): JsonValue => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

/** The common properties, in the order QEMU lists them (qom-list, qom-list-properties). */
export const MEMORY_BACKEND_PROPERTIES: PropertyDef<B>[] = [
  {
    name: 'share',
    type: 'bool',
    description: 'Map the memory shared (MAP_SHARED) instead of private',
    get: (o) => o.share,
    set: (o, v, phase) => {
      // QEMU 7.2 visits the value first: a wrong type is reported before "cannot change".
      const on = visitBool('share', v);
      if (frozen(o, phase)) throw genericError('cannot change property value');
      o.share = on;
    },
  },
  {
    name: 'size',
    type: 'int',
    description: 'Size of the memory in bytes',
    get: (o) => intValue(o.size),
    set: (o, v, phase) => {
      if (frozen(o, phase)) throw genericError(`cannot change property size of ${o.typeName} `);
      const size = visitUint64('size', v);
      if (size === 0n || size > MAX_BACKEND_SIZE) throw genericError(`property 'size' of ${o.typeName} doesn't take value '${size}'`);
      o.size = size;
    },
  },
  {
    name: 'dump',
    type: 'bool',
    description: 'Include the memory in core dumps',
    defaultValue: true,
    get: (o) => o.dump,
    set: (o, v, phase) => {
      const dump = visitBool('dump', v);
      if (phase === 'live' && o.created && dump !== o.dump) o.mapping!.madvise(dump ? native.MADV_DODUMP : native.MADV_DONTDUMP);
      o.dump = dump;
    },
  },
  {
    name: 'prealloc-threads',
    type: 'int',
    description: 'Number of threads sharing the preallocation',
    defaultValue: 1,
    get: (o) => o.preallocThreads,
    set: (o, v) => {
      const n = visitUintN('prealloc-threads', v, 32);
      if (n === 0) throw genericError(`property 'prealloc-threads' of ${o.typeName} doesn't take value '0'`);
      o.preallocThreads = n;
    },
  },
  {
    name: 'x-use-canonical-path-for-ramblock-id',
    type: 'bool',
    defaultValue: false,
    get: (o) => o.useCanonicalPath,
    // QEMU names the RAMBlock once: a later value is kept but renames nothing (memName).
    inertAfterCreation: true,
    set: (o, v) => {
      o.useCanonicalPath = visitBool('x-use-canonical-path-for-ramblock-id', v);
    },
  },
  {
    name: 'policy',
    type: 'HostMemPolicy',
    description: 'NUMA policy of the memory',
    defaultValue: 'default',
    // The memory was bound at creation; QEMU takes a later value without re-binding.
    inertAfterCreation: true,
    get: (o) => o.policy,
    set: (o, v) => {
      o.policy = visitEnum('policy', v, HOST_MEM_POLICIES);
    },
  },
  {
    name: 'prealloc-context',
    type: 'link<thread-context>',
    description: 'Thread context for the preallocation threads',
    get: (o) => o.preallocContext,
    set: (o, v) => {
      const path = visitStr('prealloc-context', v);
      if (path !== '') {
        const r = o.services.resolvePath(path);
        if (r === 'none') throw new QmpError('DeviceNotFound', `Device '${path}' not found`);
        if (r === 'ambiguous') throw genericError(`Path '${path}' does not uniquely identify an object`);
        throw genericError("Invalid parameter type for 'prealloc-context', expected: thread-context");
      }
      o.preallocContext = path;
    },
  },
  {
    name: 'prealloc',
    type: 'bool',
    description: 'Fault all of the memory in when created',
    defaultValue: false,
    get: (o) => o.prealloc,
    set: (o, v, phase) => {
      const on = visitBool('prealloc', v);
      if (on && !o.reserve) throw genericError("'prealloc=on' and 'reserve=off' are incompatible");
      if (phase === 'live' && o.created) {
        // Turning it on later preallocates now; turning it off later changes nothing (§5.2).
        if (on && !o.prealloc) return o.preallocate();
        return;
      }
      o.prealloc = on;
    },
  },
  {
    name: 'reserve',
    type: 'bool',
    description: 'Reserve swap space (or huge pages) for the memory',
    defaultValue: true,
    get: (o) => o.reserve,
    set: (o, v, phase) => {
      const on = visitBool('reserve', v); // type first, as QEMU 7.2
      if (frozen(o, phase)) throw genericError('cannot change property value');
      if (!on && o.prealloc) throw genericError("'prealloc=on' and 'reserve=off' are incompatible");
      o.reserve = on;
    },
  },
  {
    name: 'host-nodes',
    type: 'int',
    description: 'Host NUMA nodes the policy applies to',
    // Bound at creation, as policy; a restart re-binding to later nodes could fail (§5.3).
    inertAfterCreation: true,
    get: (o) => [...o.hostNodes],
    set: (o, v) => {
      // Like QEMU, values are ORed into the set (no guard after creation), and those before an
      // invalid one stay set.
      const nodes = new Set(o.hostNodes);
      try {
        for (const n of visitUint16List('host-nodes', v)) {
          if (n >= MAX_NODES) throw genericError(`Invalid host-nodes value: ${n}`);
          nodes.add(n);
        }
      } finally {
        if (nodes.size !== o.hostNodes.length) o.hostNodes = [...nodes].sort((x, y) => x - y);
      }
    },
  },
  {
    name: 'merge',
    type: 'bool',
    description: 'Let the kernel merge identical pages (KSM)',
    defaultValue: true,
    get: (o) => o.merge,
    set: (o, v, phase) => {
      const merge = visitBool('merge', v);
      if (phase === 'live' && o.created && merge !== o.merge) o.mapping!.madvise(merge ? native.MADV_MERGEABLE : native.MADV_UNMERGEABLE);
      o.merge = merge;
    },
  },
];
