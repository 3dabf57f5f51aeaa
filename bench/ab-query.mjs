// bench/ab-query: query-memdev and qom-list /objects of this checkout against another one
// (e.g. a worktree of an earlier commit), interleaved request by request so that load on the
// machine hits both alike. Both daemons get N 1 MiB memfd backends first.
// Run: npm run build (here and in OTHER), then node bench/ab-query.mjs OTHER_CHECKOUT [N]
// Prints the median of 30 interleaved calls each, and the ratio this / other.
import * as path from 'node:path';

const other = process.argv[2];
const N = Number(process.argv[3] ?? 10000);
if (!other) {
  console.error('usage: node bench/ab-query.mjs OTHER_CHECKOUT [N]');
  process.exit(2);
}
const here = await import('./lib.mjs');
const there = await import(path.resolve(other, 'bench', 'lib.mjs'));

async function setup(lib) {
  const d = await lib.startHostmemd([]);
  const c = await lib.negotiatedClient(d.sock);
  for (let i = 0; i < N; i++) {
    const r = await lib.request(c, 'object-add', { 'qom-type': 'memory-backend-memfd', id: `m${i}`, size: 1 << 20 });
    if (r.err) throw new Error(r.err);
  }
  return { d, c, lib };
}

const med = (v) => [...v].sort((p, q) => p - q)[v.length >> 1];
const a = await setup(there);
const b = await setup(here);
for (const [cmd, args] of [['query-memdev'], ['qom-list', { path: '/objects' }]]) {
  const t = { a: [], b: [] };
  for (let k = 0; k < 30; k++) {
    for (const [n, x] of [['a', a], ['b', b]]) {
      const s = process.hrtime.bigint();
      const r = await x.lib.request(x.c, cmd, args);
      if (r.err) throw new Error(r.err);
      t[n].push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  }
  console.log(`${cmd} at ${N} objects, median of 30 interleaved: other ${med(t.a).toFixed(1)} ms, this ${med(t.b).toFixed(1)} ms, ratio ${(med(t.b) / med(t.a)).toFixed(2)}`);
}
for (const x of [a, b]) {
  x.c.close();
  await x.d.stop();
}
