// Prometheus metrics (prom-client), all named hostmemd_*: backends and their memory (computed
// at scrape time from the live objects), commands by name and outcome with latency,
// connected clients by transport, preallocation throughput, the state journal's health.
// main.ts calls the small record functions from its hooks; the web server only renders the
// registry.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BackendView, residentOf } from './resident';

export interface MetricsSources {
  /** The memory backends now in the tree. */
  backends(): Iterable<BackendView>;
  /** Names of the schema's commands: anything else is counted as "unknown", so that a client
   *  sending random names cannot grow the label set without bound. */
  commands: readonly string[];
  /** Preallocations in progress. */
  preallocsRunning(): number;
  /** Configured caps (absent: no cap). */
  limits?(): { objects?: number; backendBytes?: bigint; clients?: number };
  /** Whether the state journal cannot record changes (a full or read-only state directory). */
  journalDegraded?(): boolean;
}

/** One preallocation's progress as the backends report it (PreallocEntry fits). */
export interface PreallocProgress {
  id: string;
  qomType: string;
  size: bigint;
  done: bigint;
}

const PREFIX = 'hostmemd_';

interface Snapshot {
  list: BackendView[];
  resident: bigint[];
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly known: Set<string>;
  private readonly commands: Counter<'command' | 'outcome'>;
  private readonly latency: Histogram<'command'>;
  private readonly clients: Gauge<'transport'>;
  private readonly refused: Counter<'transport'>;
  private readonly disconnects: Counter<'transport' | 'reason'>;
  private readonly added: Counter<'type'>;
  private readonly exports: Counter<'type'>;
  private readonly deleted: Counter<'type'>;
  private readonly preallocBytes: Counter<'type'>;
  private readonly preallocRate: Histogram<'type'>;
  /** The backends as of the scrape being rendered. */
  private snapshot: Snapshot | undefined;
  /** Per running preallocation: bytes already counted, and its first report. */
  private readonly seen = new WeakMap<PreallocProgress, { done: bigint; firstDone: bigint; firstNs: bigint }>();

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    this.known = new Set(sources.commands);
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });

    // One snapshot serves all backend gauges of a scrape (render() takes it), so that the
    // families agree with each other and smaps is read at most once.
    const current = (): Snapshot => this.snapshot ?? this.takeSnapshot();
    const byType = (pick: (b: BackendView, resident: bigint) => bigint): Map<string, number> => {
      const { list, resident } = current();
      const m = new Map<string, number>();
      list.forEach((b, i) => m.set(b.typeName, (m.get(b.typeName) ?? 0) + Number(pick(b, resident[i]))));
      return m;
    };
    new Gauge({
      name: `${PREFIX}limit`,
      help: 'Configured caps: objects (--max-objects), backend_bytes (--max-backend-bytes), clients (--max-clients); absent when not capped',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        const l = sources.limits?.() ?? {};
        if (l.objects !== undefined) this.set({ kind: 'objects' }, l.objects);
        if (l.backendBytes !== undefined) this.set({ kind: 'backend_bytes' }, Number(l.backendBytes));
        if (l.clients !== undefined) this.set({ kind: 'clients' }, l.clients);
      },
    });
    new Gauge({
      name: `${PREFIX}backends`,
      help: 'Memory backends in the object tree, by QOM type',
      labelNames: ['type'],
      registers,
      collect() {
        this.reset();
        for (const [type, n] of byType(() => 1n)) this.set({ type }, n);
      },
    });
    new Gauge({
      name: `${PREFIX}allocated_bytes`,
      help: 'Guest memory allocated by backends (their size), by QOM type',
      labelNames: ['type'],
      registers,
      collect() {
        this.reset();
        for (const [type, n] of byType((b) => b.size)) this.set({ type }, n);
      },
    });
    new Gauge({
      name: `${PREFIX}resident_bytes`,
      help: 'Guest memory of backends resident in host RAM, by QOM type',
      labelNames: ['type'],
      registers,
      collect() {
        this.reset();
        for (const [type, n] of byType((_b, r) => r)) this.set({ type }, n);
      },
    });
    new Gauge({
      name: `${PREFIX}backend_size_bytes`,
      help: 'Size of each memory backend',
      labelNames: ['id', 'type'],
      registers,
      collect() {
        this.reset();
        for (const b of current().list) this.set({ id: b.name, type: b.typeName }, Number(b.size));
      },
    });
    new Gauge({
      name: `${PREFIX}backend_resident_bytes`,
      help: 'Resident bytes of each memory backend',
      labelNames: ['id', 'type'],
      registers,
      collect() {
        this.reset();
        const { list, resident } = current();
        list.forEach((b, i) => this.set({ id: b.name, type: b.typeName }, Number(resident[i])));
      },
    });
    new Gauge({
      name: `${PREFIX}backend_exports`,
      help: 'memdev-export replies sent for each memory backend by this process (backends never exported: absent)',
      labelNames: ['id', 'type'],
      registers,
      collect() {
        this.reset();
        for (const b of current().list) if ((b.exports ?? 0) > 0) this.set({ id: b.name, type: b.typeName }, b.exports ?? 0);
      },
    });
    this.exports = new Counter({ name: `${PREFIX}memdev_exports_total`, help: 'memdev-export replies sent (fds given to clients), by QOM type', labelNames: ['type'], registers });
    this.commands = new Counter({ name: `${PREFIX}commands_total`, help: 'QMP commands executed, by command and outcome (ok or the error class)', labelNames: ['command', 'outcome'], registers });
    this.latency = new Histogram({
      name: `${PREFIX}command_duration_seconds`,
      help: 'QMP command latency from dispatch to reply, by command',
      labelNames: ['command'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25, 1, 5, 30],
      registers,
    });
    this.clients = new Gauge({ name: `${PREFIX}clients`, help: 'Connected QMP clients, by transport', labelNames: ['transport'], registers });
    // Both transports appear from the start, so dashboards see 0 rather than no series.
    for (const t of ['unix', 'websocket']) this.clients.set({ transport: t }, 0);
    this.refused = new Counter({ name: `${PREFIX}clients_refused_total`, help: 'Connections refused (client limit, authentication, origin), by transport', labelNames: ['transport'], registers });
    this.disconnects = new Counter({
      name: `${PREFIX}client_disconnects_total`,
      help: 'Clients cut off by the daemon, by transport and reason (slow-reader, rate-limit, too-large)',
      labelNames: ['transport', 'reason'],
      registers,
    });
    this.added = new Counter({ name: `${PREFIX}objects_added_total`, help: 'Objects added (object-add, -object), by QOM type', labelNames: ['type'], registers });
    this.deleted = new Counter({ name: `${PREFIX}objects_deleted_total`, help: 'Objects deleted, by QOM type', labelNames: ['type'], registers });
    this.preallocBytes = new Counter({ name: `${PREFIX}prealloc_bytes_total`, help: 'Bytes faulted in by preallocation (rate() gives throughput), by QOM type', labelNames: ['type'], registers });
    this.preallocRate = new Histogram({
      name: `${PREFIX}prealloc_throughput_bytes_per_second`,
      help: 'Throughput of each completed preallocation, by QOM type',
      labelNames: ['type'],
      buckets: [64e6, 256e6, 1e9, 2e9, 4e9, 8e9, 16e9, 32e9],
      registers,
    });
    new Gauge({
      name: `${PREFIX}journal_degraded`,
      help: 'Whether the state journal cannot record changes (full or read-only state directory; query-cpr says why): 1 while new objects are refused, else 0',
      registers,
      collect() {
        this.set(sources.journalDegraded?.() ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}preallocs_running`,
      help: 'Preallocations in progress',
      registers,
      collect() {
        this.set(sources.preallocsRunning());
      },
    });
  }

  /** Dispatcher observer: one finished command. */
  commandDone(command: string, errorClass: string | undefined, startNs: bigint): void {
    const name = this.known.has(command) ? command : 'unknown';
    this.commands.inc({ command: name, outcome: errorClass ?? 'ok' });
    this.latency.observe({ command: name }, Number(process.hrtime.bigint() - startNs) / 1e9);
  }

  clientConnected(transport: string): void {
    this.clients.inc({ transport });
  }

  clientDisconnected(transport: string): void {
    this.clients.dec({ transport });
  }

  clientRefused(transport: string): void {
    this.refused.inc({ transport });
  }

  clientCutOff(transport: string, reason: 'slow-reader' | 'rate-limit' | 'too-large'): void {
    this.disconnects.inc({ transport, reason });
  }

  objectAdded(type: string): void {
    this.added.inc({ type });
  }

  memdevExported(type: string): void {
    this.exports.inc({ type });
  }

  objectDeleted(type: string): void {
    this.deleted.inc({ type });
  }

  /** PreallocTracker.onProgress: counts the bytes done since the last report of this entry.
   *  Reports come per finished chunk (native PREALLOC_CHUNK), the first one after the first
   *  chunk: a completed preallocation's throughput is measured from that first report on, so
   *  one that finished in a single report has no figure (its bytes still count). */
  preallocProgress(e: PreallocProgress): void {
    const now = process.hrtime.bigint();
    let s = this.seen.get(e);
    if (!s) {
      s = { done: 0n, firstDone: e.done, firstNs: now };
      this.seen.set(e, s);
    }
    if (e.done > s.done) {
      this.preallocBytes.inc({ type: e.qomType }, Number(e.done - s.done));
      s.done = e.done;
    }
    if (e.done >= e.size) {
      const secs = Number(now - s.firstNs) / 1e9;
      if (secs > 0 && e.size > s.firstDone) this.preallocRate.observe({ type: e.qomType }, Number(e.size - s.firstDone) / secs);
      this.seen.delete(e);
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private takeSnapshot(): Snapshot {
    const list = [...this.sources.backends()];
    return { list, resident: residentOf(list) };
  }

  async render(): Promise<string> {
    this.snapshot = this.takeSnapshot();
    try {
      return await this.registry.metrics();
    } finally {
      this.snapshot = undefined;
    }
  }
}

export function createMetrics(sources: MetricsSources): DaemonMetrics {
  return new DaemonMetrics(sources);
}
