// Fuzz driver: runs raw-byte inputs and schema-generated commands against a daemon child in
// batches (inputs of a batch spread over fresh UNIX-socket and WebSocket connections, each
// input followed by a sync request), and after each batch checks: every sync answered in time
// and every counted reply there, no malformed line, no connection closed, the daemon alive,
// the probe's largest query-version round trip, then (objects deleted, connections closed)
// fds and file mappings back at the baseline. Batches draw from fast-check with seed+batch,
// so a failure names the seed and batch that reproduce it.
import fc from 'fast-check';
import { FuzzConn, Transport } from './conn';
import { rawInput, RawInput } from './raw';
import { SchemaFuzz, SchemaInfo } from './schema-args';
import { startTarget, Target, resources, settle, deleteAllObjects, Resources } from './target';
import { RawQmpClient } from '../helpers/qmp-client';

export interface FuzzOptions {
  raw: number;
  schema: number;
  seed: number;
  /** Inputs per batch (spread over the connections). */
  batch: number;
  unixConns: number;
  wsConns: number;
  /** Outstanding syncs per connection. */
  window: number;
  /** Inputs sent per sync (each followed by a reset byte unless its reply count is known). */
  group: number;
  syncTimeoutMs: number;
  /** Largest tolerated probe round trip. */
  maxProbeMs: number;
  maxString: number;
  maxDepth: number;
  /** Progress lines every so many ms (0: none). */
  progressMs: number;
}

export interface FuzzReport {
  seed: number;
  raw: number;
  schema: number;
  ms: number;
  batches: number;
  failures: string[];
  maxProbeMs: number;
  probeAnswers: number;
  baseline: Resources;
  end: Resources;
  /** Largest readings seen after a batch had settled. */
  peak: Resources;
  /** Commands generated, by name (schema phase). */
  commands: Record<string, number>;
  /** Objects the schema inputs created (OBJECT_ADDED events; all deleted by their batch's end). */
  objectsCreated: number;
}

/** Knobs from the environment (the table in test/fuzz/README.md). */
export function optionsFromEnv(long: boolean, env: NodeJS.ProcessEnv = process.env): FuzzOptions {
  const num = (k: string, d: number): number => (env[k] !== undefined && env[k] !== '' ? Number(env[k]) : d);
  return {
    raw: num('FUZZ_RAW', long ? 1_000_000 : 3000),
    schema: num('FUZZ_SCHEMA', long ? 200_000 : 2000),
    seed: num('FUZZ_SEED', Date.now() % 2 ** 31),
    batch: num('FUZZ_BATCH', long ? 4000 : 500),
    unixConns: num('FUZZ_UNIX_CONNS', 3),
    wsConns: num('FUZZ_WS_CONNS', 1),
    window: num('FUZZ_WINDOW', long ? 16 : 32),
    group: num('FUZZ_GROUP', long ? 16 : 1),
    syncTimeoutMs: num('FUZZ_SYNC_TIMEOUT_MS', long ? 30000 : 10000),
    maxProbeMs: num('FUZZ_MAX_PROBE_MS', 1000),
    maxString: num('FUZZ_MAX_STRING', 64 << 10),
    maxDepth: num('FUZZ_MAX_DEPTH', 1100),
    progressMs: num('FUZZ_PROGRESS_MS', long ? 15000 : 0),
  };
}

const show = (b: Buffer): string => {
  const head = b.subarray(0, 160).toString('latin1');
  return JSON.stringify(head) + (b.length > 160 ? `... (${b.length} bytes)` : '');
};

/** Opens the batch's connections: unix ones first, then WebSockets. */
async function openConns(t: Target, o: FuzzOptions): Promise<FuzzConn[]> {
  const kinds: Transport[] = [...Array<Transport>(o.unixConns).fill('unix'), ...Array<Transport>(o.wsConns).fill('ws')];
  return Promise.all(kinds.map((k) => FuzzConn.open(k, t)));
}

const RESET = Buffer.from([0xff]);

interface Item {
  chunks: Buffer[];
  expect?: number;
  label: string;
}

/** Sends the items over one connection, `window` syncs outstanding at most; failures are
 *  pushed, and the first that leaves the connection unusable ends its share of the batch. */
async function drive(conn: FuzzConn, items: Item[], o: FuzzOptions, failures: string[]): Promise<void> {
  const outstanding: Promise<void>[] = [];
  for (let g = 0; g < items.length; g += o.group) {
    if (conn.closed) break;
    const group = items.slice(g, g + o.group);
    let expect: number | undefined = 0;
    group.forEach((x, i) => {
      conn.send(x.chunks);
      if (x.expect === undefined) expect = undefined;
      else if (expect !== undefined) expect += x.expect;
      // A reset byte after an input of unknown effect, so that the next starts afresh.
      if (x.expect === undefined && i < group.length - 1) conn.send([RESET]);
    });
    const it = { expect, label: group.map((x) => x.label).join(' ; ') };
    const p = conn.sync(o.syncTimeoutMs, it.expect === undefined).then(
      (n) => {
        if (it.expect !== undefined && n !== it.expect) failures.push(`${conn.transport}: ${it.expect} complete messages got ${n} replies: ${it.label}`);
      },
      (e: Error) => {
        failures.push(`${e.message}; input: ${it.label}`);
      },
    );
    outstanding.push(p);
    if (outstanding.length >= o.window) await outstanding.shift();
  }
  await Promise.all(outstanding);
  for (const v of conn.violations) failures.push(`${conn.transport}: ${v}`);
}

export async function runFuzz(o: FuzzOptions, log: (s: string) => void = () => undefined): Promise<FuzzReport> {
  const t = await startTarget();
  const failures: string[] = [];
  const started = Date.now();
  let lastProgress = started;
  let maxProbeMs = 0;
  let probeAnswers = 0;
  let batches = 0;
  let objectsCreated = 0;
  const commands: Record<string, number> = {};
  try {
    // The schema and the property names, read once from the daemon itself.
    const c = await RawQmpClient.negotiated(t.sock);
    const schema = (await c.execute('query-qmp-schema')).return as SchemaInfo[];
    const types = ((await c.execute('qom-list-types', { implements: 'memory-backend' })).return as { name: string }[]).map((x) => x.name);
    const props = new Set<string>(['type', 'size']);
    for (const ty of types) for (const p of (await c.execute('qom-list-properties', { typename: ty })).return as { name: string }[]) props.add(p.name);
    // The journal's log is opened at the first change and stays open: before the baseline.
    await c.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'fuzz-warm-up', size: 1 << 20 });
    await c.execute('object-del', { id: 'fuzz-warm-up' });
    c.close();
    const gen = new SchemaFuzz(schema, { filesDir: t.filesDir, propertyNames: [...props], maxString: o.maxString });
    const rawArb = rawInput({ maxString: o.maxString, maxDepth: o.maxDepth });
    const schemaArb = gen.input();

    await new Promise((r) => setTimeout(r, 200));
    const baseline = await waitQuiet(t);
    let peak = { ...baseline };

    const batch = async (phase: 'raw' | 'schema', index: number, size: number): Promise<void> => {
      const seed = o.seed + (phase === 'raw' ? 0 : 1_000_003) + index;
      let items: Item[];
      if (phase === 'raw') {
        items = fc.sample(rawArb, { numRuns: size, seed }).map((r: RawInput, i) => ({ chunks: r.chunks, expect: r.expect, label: `raw seed ${seed} #${i} ${r.kind} ${show(Buffer.concat(r.chunks))}` }));
      } else {
        items = fc.sample(schemaArb, { numRuns: size, seed }).map((s, i) => {
          commands[s.command] = (commands[s.command] ?? 0) + 1;
          return { chunks: [Buffer.from(s.text)], expect: 1, label: `schema seed ${seed} #${i} ${show(Buffer.from(s.text))}` };
        });
      }
      const dbg = (m: string): void => void (process.env.FUZZ_DEBUG && log(`debug ${phase} ${index}: ${m}`));
      dbg('open');
      const conns = await openConns(t, o);
      dbg('drive');
      const shares: Item[][] = conns.map(() => []);
      items.forEach((it, i) => shares[i % conns.length].push(it));
      const before = failures.length;
      await Promise.all(conns.map((cn, i) => drive(cn, shares[i], o, failures)));
      for (const cn of conns) if (cn.closed) failures.push(`${cn.transport}: connection closed by the daemon: ${cn.closed} (batch ${phase} seed ${seed})`);
      conns.forEach((cn) => cn.close());
      dbg('closed');
      if (t.child.proc.exitCode !== null || t.child.proc.signalCode !== null) {
        failures.push(`daemon died (${t.child.proc.exitCode ?? t.child.proc.signalCode}) in batch ${phase} seed ${seed}: ${t.child.stderr().slice(-2000)}`);
        throw new Error('daemon died');
      }
      if (phase === 'schema') {
        objectsCreated += conns[0].objectsAdded;
        await deleteAllObjects(t.sock);
      }
      dbg('probe');
      const probe = await t.probe.report();
      dbg('settle');
      maxProbeMs = Math.max(maxProbeMs, probe.max);
      probeAnswers += probe.n;
      if (probe.max > o.maxProbeMs) failures.push(`probe waited ${probe.max.toFixed(0)} ms for query-version during batch ${phase} seed ${seed}`);
      const s = await settle(t, baseline);
      peak = {
        fds: Math.max(peak.fds, s.now.fds),
        maps: Math.max(peak.maps, s.now.maps),
        fileMaps: Math.max(peak.fileMaps, s.now.fileMaps),
        backendAnonMaps: Math.max(peak.backendAnonMaps, s.now.backendAnonMaps),
      };
      if (!s.ok) failures.push(`after batch ${phase} seed ${seed}: resources ${JSON.stringify(s.now)} not back to baseline ${JSON.stringify(baseline)} (maps are not compared)`);
      batches++;
      if (failures.length > before) log(`batch ${phase} seed ${seed}: ${failures.length - before} failure(s), first: ${failures[before].slice(0, 300)}`);
      if (o.progressMs && Date.now() - lastProgress > o.progressMs) {
        lastProgress = Date.now();
        log(`${phase} batch ${index} (${(index + 1) * o.batch} inputs): ${((Date.now() - started) / 1000).toFixed(0)} s, probe max ${maxProbeMs.toFixed(0)} ms, fds ${s.now.fds}/${baseline.fds}, backend maps ${s.now.fileMaps + s.now.backendAnonMaps}/${baseline.fileMaps + baseline.backendAnonMaps}, all maps ${s.now.maps}/${baseline.maps}, failures ${failures.length}`);
      }
    };

    try {
      let index = 0;
      for (let done = 0; done < o.raw; done += o.batch) await batch('raw', index++, Math.min(o.batch, o.raw - done));
      index = 0;
      for (let done = 0; done < o.schema; done += o.batch) await batch('schema', index++, Math.min(o.batch, o.schema - done));
    } catch (e) {
      failures.push(`fuzzing stopped: ${String(e)}`); // the daemon died, or a client could not connect
    }

    const end = (await settle(t, baseline)).now;
    return { seed: o.seed, raw: o.raw, schema: o.schema, ms: Date.now() - started, batches, failures, maxProbeMs, probeAnswers, baseline, end, peak, commands, objectsCreated };
  } finally {
    await t.stop();
  }
}

/** The resources once two readings 200 ms apart agree (start-up work has finished). */
async function waitQuiet(t: Target): Promise<Resources> {
  let prev = resources(t);
  for (let i = 0; i < 25; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const now = resources(t);
    if (now.fds === prev.fds && now.fileMaps === prev.fileMaps && now.backendAnonMaps === prev.backendAnonMaps) return now;
    prev = now;
  }
  return prev;
}
