// Continuous fuzzing (issue 13, item 4): raw bytes and schema-generated commands against a
// real daemon over its UNIX socket and WebSocket; it must answer every input, keep answering
// a probe client within FUZZ_MAX_PROBE_MS, and return to its fd/mapping baseline. Short mode
// (a few thousand inputs) runs with the integration tests; `npm run fuzz` sets FUZZ_LONG=1
// for the long run (1,000,000 raw + 200,000 schema inputs). Knobs: test/fuzz/README.md.
import * as os from 'node:os';
import { optionsFromEnv, runFuzz } from './driver';

const long = process.env.FUZZ_LONG === '1';
const opts = optionsFromEnv(long);
// A loaded shared machine (more runnable work than cores) delays the probe by scheduling
// alone; the short run then allows 3 s unless FUZZ_MAX_PROBE_MS says otherwise.
if (!long && process.env.FUZZ_MAX_PROBE_MS === undefined && os.loadavg()[0] > os.cpus().length) opts.maxProbeMs = 3000;

test(
  `fuzz (${long ? 'long' : 'short'}): ${opts.raw} raw + ${opts.schema} schema inputs, seed ${opts.seed}`,
  async () => {
    const log = (s: string): void => void process.stderr.write(`[fuzz] ${s}\n`);
    log(`seed ${opts.seed} (FUZZ_SEED=${opts.seed} repeats this run); ${JSON.stringify(opts)}`);
    const r = await runFuzz(opts, log);
    log(
      `done: ${r.raw} raw + ${r.schema} schema inputs in ${(r.ms / 1000).toFixed(1)} s (${r.batches} batches), ` +
        `${r.failures.length} failures, probe max ${r.maxProbeMs.toFixed(0)} ms over ${r.probeAnswers} answers, ` +
        `objects created and deleted ${r.objectsCreated}; fds baseline ${r.baseline.fds} end ${r.end.fds} peak ${r.peak.fds}; ` +
        `file maps baseline ${r.baseline.fileMaps} end ${r.end.fileMaps} peak ${r.peak.fileMaps}; ` +
        `marked anonymous maps baseline ${r.baseline.backendAnonMaps} end ${r.end.backendAnonMaps} peak ${r.peak.backendAnonMaps}; ` +
        `all maps (not compared) baseline ${r.baseline.maps} end ${r.end.maps} peak ${r.peak.maps}`,
    );
    log(`commands generated: ${JSON.stringify(r.commands)}`);
    for (const f of r.failures.slice(0, 20)) log(`FAILURE ${f.slice(0, 1000)}`);
    expect(r.failures).toEqual([]);
    // Every command of the schema (but those excluded) was generated at least once.
    if (opts.schema >= 1000) expect(Object.keys(r.commands).length).toBeGreaterThanOrEqual(15);
  },
  long ? Number(process.env.FUZZ_TIMEOUT_MIN ?? 90) * 60000 : 120000,
);
