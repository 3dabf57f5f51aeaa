// bench/ab-start: start-up of this checkout against another one (e.g. a worktree of an earlier
// commit), alternating start by start so that load on the machine hits both alike, with
// `node -e 0` measured in the same rounds. Each start: spawn bin/hostmemd on a fresh state dir,
// wait for its socket (1 ms polls), read the greeting, send qmp_capabilities and query-version,
// read both answers.
// Run: npm run build (here and in OTHER), then node bench/ab-start.mjs OTHER_CHECKOUT [ROUNDS]
// Prints medians (spawn to greeting, spawn to the first answer), each over `node -e 0`.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { ROOT, median, nodeStartMs, fmt, printTable } from './lib.mjs';

const other = process.argv[2];
const ROUNDS = Number(process.argv[3] ?? 15);
if (!other) {
  console.error('usage: node bench/ab-start.mjs OTHER_CHECKOUT [ROUNDS]');
  process.exit(2);
}

/** One start of `root`'s daemon: [ms to the greeting, ms to the query-version answer]. */
async function startOnce(root) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-ab-start-'));
  const sock = path.join(dir, 'qmp.sock');
  const t0 = performance.now();
  const proc = spawn(process.execPath, [path.join(root, 'bin', 'hostmemd'), '--state-dir', dir, '--log-level', 'warn'], { stdio: 'ignore' });
  try {
    const deadline = Date.now() + 10000;
    while (!fs.existsSync(sock)) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`${root}: no socket within 10 s`);
      await new Promise((r) => setTimeout(r, 1));
    }
    const c = net.connect(sock);
    let text = '';
    let greeting;
    const answered = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${root}: no answer within 10 s`)), 10000);
      c.on('error', reject);
      c.on('data', (d) => {
        text += d;
        const lines = text.split('\n').length - 1;
        if (lines >= 1 && greeting === undefined) {
          greeting = performance.now() - t0;
          c.write('{"execute":"qmp_capabilities"}{"execute":"query-version"}');
        }
        if (lines >= 3) {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        }
      });
    });
    c.destroy();
    return [greeting, answered];
  } finally {
    proc.kill('SIGKILL');
    if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const roots = [path.resolve(other), ROOT];
const times = roots.map(() => ({ greeting: [], answered: [] }));
const floor = [];
for (let i = 0; i < ROUNDS; i++) {
  for (let k = 0; k < roots.length; k++) {
    const [g, a] = await startOnce(roots[k]);
    times[k].greeting.push(g);
    times[k].answered.push(a);
  }
  floor.push(await nodeStartMs(1));
}
const nodeMs = median(floor);
const rows = [['checkout', `greeting ms (median of ${ROUNDS})`, 'greeting / node -e 0', 'first answer ms', 'first answer / node -e 0']];
for (const [k, root] of roots.entries()) {
  const g = median(times[k].greeting);
  const a = median(times[k].answered);
  rows.push([k === 1 ? `${root} (this)` : root, fmt(g), fmt(g / nodeMs, 2), fmt(a), fmt(a / nodeMs, 2)]);
}
rows.push(['node -e 0', fmt(nodeMs), '', '', '']);
printTable(rows);
