// bench/run: `npm run bench` — every benchmark, side by side with QEMU 7.2 (where installed) and
// the floors (the kernel's populate rate from bench/floor/populate.c, `node -e 0`, a plain echo
// server on a UNIX socket), one table of ratios, bench/results/<date>.json, and an SVG chart of
// the scale curves (object-add rate and query-memdev time vs object count, hostmemd vs QEMU).
// Each script runs as its own process with `--json FILE` (shape: bench/lib.mjs writeJson);
// scripts that are not there (yet) are listed as missing, one that fails is reported and the
// rest still run.
// Run: npm run bench [-- --quick] [-- --only a,b] [-- --final]
//   --quick  small sizes and few repeats in every script: checks that the scripts work, the
//            figures mean little; the files are named <date>-quick.*
//   --only   run only these scripts (names without .mjs)
//   --final  mark the results as final (a quiet machine, nothing else running); without it the
//            JSON says "final": false and the chart is titled as preliminary
//   --out DIR  where results go (default bench/results)
//   --chart-from FILE [--chart-out SVG]  only draw the chart again from a results file
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT, fmt, printTable } from './lib.mjs';

const SCRIPTS = ['qmp-protocol', 'websocket', 'backends', 'prealloc', 'scale', 'cold-query', 'restart', 'object-add', 'fd-export', 'guest-boot', 'vmm-upgrade', 'attacks'];

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const quick = argv.includes('--quick');
// --chart-from FILE: only draw the chart again from a results file this script wrote.
const chartFrom = opt('--chart-from');
const final = argv.includes('--final');
const only = opt('--only')?.split(',').map((s) => s.trim());
const outDir = path.resolve(opt('--out') ?? path.join(ROOT, 'bench', 'results'));
fs.mkdirSync(outDir, { recursive: true });
const date = new Date().toISOString().slice(0, 10);
const stem = `${date}${quick ? '-quick' : ''}`;
if (chartFrom) {
  const r = JSON.parse(fs.readFileSync(chartFrom, 'utf8'));
  const curves = r.benches.find((b) => b.name === 'scale')?.curves;
  if (!curves) throw new Error(`${chartFrom} has no scale curves`);
  const day = r.date.slice(0, 10);
  const out = opt('--chart-out') ?? path.join(outDir, `${day}${r.quick ? '-quick' : ''}-scale.svg`);
  fs.writeFileSync(out, scaleChart(curves, { title: chartTitle(day, r.final, r.quick) }));
  console.log(`chart: ${out}`);
  process.exit(0);
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-run-'));

function run(name) {
  const file = path.join(tmp, `${name}.json`);
  const args = [path.join(ROOT, 'bench', `${name}.mjs`), '--json', file, ...(quick ? ['--quick'] : [])];
  console.log(`\n===== bench/${name}.mjs =====`);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { stdio: 'inherit', cwd: ROOT });
    p.once('exit', (code, signal) => {
      let data;
      try {
        data = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch {
        /* no --json output: reported below */
      }
      resolve({ name, code, signal, secs: (Date.now() - t0) / 1000, ...(data ?? { results: [] }) });
    });
  });
}

const host = { node: process.version, cpus: os.cpus().length, loadBefore: os.loadavg(), totalMemGiB: os.totalmem() / 2 ** 30 };
const benches = [];
const missing = [];
for (const name of SCRIPTS) {
  if (only && !only.includes(name)) continue;
  if (!fs.existsSync(path.join(ROOT, 'bench', `${name}.mjs`))) {
    missing.push(name);
    continue;
  }
  benches.push(await run(name));
}
host.loadAfter = os.loadavg();
fs.rmSync(tmp, { recursive: true, force: true });

// ---- one table ----
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN);
/** ">= 1: hostmemd is better" whichever way the measure goes. */
const advantage = (r, other) => (r.better === 'higher' ? ratio(r.hostmemd, other) : ratio(other, r.hostmemd));
const rows = [['bench', 'measure', 'unit', 'hostmemd', 'qemu-7.2', 'floor', 'vs qemu', 'of floor']];
const num = (v) => (Number.isFinite(v) ? (Math.abs(v) >= 100 ? fmt(v, 0) : fmt(v, Math.abs(v) >= 10 ? 1 : 3)) : '-');
for (const b of benches) {
  if (b.code !== 0) rows.push([b.name, `*** exited with ${b.signal ?? b.code}: see its output above ***`, '', '', '', '', '', '']);
  for (const r of b.results) {
    const q = advantage(r, r.qemu);
    const f = advantage(r, r.floor);
    rows.push([b.name, r.name, r.unit, num(r.hostmemd), num(r.qemu), num(r.floor), Number.isFinite(q) ? `${fmt(q, 2)}x` : '', Number.isFinite(f) ? `${fmt(100 * f, 0)}%` : '']);
  }
}
console.log(`\n===== summary (${final ? 'final' : 'NOT final: the machine may have been loaded'}${quick ? ', --quick sizes' : ''}) =====`);
console.log('vs qemu: how many times better hostmemd is (>1: ahead of QEMU 7.2); of floor: hostmemd as a share of the floor (100%: at the floor)');
console.log(`load average before ${host.loadBefore.map((x) => fmt(x, 2)).join(' ')}, after ${host.loadAfter.map((x) => fmt(x, 2)).join(' ')} on ${host.cpus} CPUs`);
printTable(rows);
if (missing.length) console.log(`not present (skipped): ${missing.map((m) => `bench/${m}.mjs`).join(', ')}`);

const report = { date: new Date().toISOString(), final, quick, host, missing, benches };
const jsonFile = path.join(outDir, `${stem}.json`);
fs.writeFileSync(jsonFile, JSON.stringify(report, null, 1) + '\n');
console.log(`results: ${path.relative(ROOT, jsonFile)}`);

// ---- the scale chart ----
const curves = benches.find((b) => b.name === 'scale')?.curves;
if (curves?.hostmemd) {
  const svg = scaleChart(curves, { title: chartTitle(date, final, quick) });
  const svgFile = path.join(outDir, `${stem}-scale.svg`);
  fs.writeFileSync(svgFile, svg);
  // The README shows bench/results/scale.svg: only a final, full run replaces it.
  if (final && !quick) fs.writeFileSync(path.join(outDir, 'scale.svg'), svg);
  console.log(`chart: ${path.relative(ROOT, svgFile)}${final && !quick ? ' (and bench/results/scale.svg)' : ''}`);
}

function chartTitle(day, isFinal, isQuick) {
  return `hostmemd vs QEMU 7.2: scale (${day}${isFinal ? '' : ', PRELIMINARY: loaded machine'}${isQuick ? ', --quick sizes' : ''})`;
}

/** Two panels side by side: object-add rate and query-memdev time against the object count. */
function scaleChart(c, { title }) {
  const W = 900;
  const H = 400;
  const panels = [
    { key: 'addRate', label: 'object-add rate (objects/s, one client)', x: 60 },
    { key: 'queryMemdevMs', label: 'query-memdev time (ms, median of 5)', x: 510 },
  ];
  const colors = { hostmemd: '#1f6feb', qemu: '#d1242f' };
  const pw = 360;
  const ph = 260;
  const top = 60;
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">\n`;
  out += `<rect width="${W}" height="${H}" fill="white"/>\n<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(title)}</text>\n`;
  for (const p of panels) {
    const series = Object.entries(c).filter(([, v]) => v?.[p.key]?.length).map(([k, v]) => [k, v[p.key]]);
    const xs = series.flatMap(([, pts]) => pts.map((q) => q[0]));
    const ys = series.flatMap(([, pts]) => pts.map((q) => q[1]));
    const [xMax, xTicks] = nice(Math.max(...xs, 1));
    const [yMax, yTicks] = nice(Math.max(...ys, 1e-9));
    const X = (v) => p.x + (v / xMax) * pw;
    const Y = (v) => top + ph - (v / yMax) * ph;
    out += `<text x="${p.x + pw / 2}" y="${top - 12}" text-anchor="middle">${esc(p.label)}</text>\n`;
    out += `<rect x="${p.x}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>\n`;
    for (let i = 0; i <= xTicks; i++) {
      const xv = (xMax * i) / xTicks;
      out += `<line x1="${X(xv)}" y1="${top}" x2="${X(xv)}" y2="${top + ph}" stroke="#eee"/><text x="${X(xv)}" y="${top + ph + 16}" text-anchor="middle">${short(xv)}</text>\n`;
    }
    for (let i = 0; i <= yTicks; i++) {
      const yv = (yMax * i) / yTicks;
      out += `<line x1="${p.x}" y1="${Y(yv)}" x2="${p.x + pw}" y2="${Y(yv)}" stroke="#eee"/><text x="${p.x - 6}" y="${Y(yv) + 4}" text-anchor="end">${short(yv)}</text>\n`;
    }
    out += `<text x="${p.x + pw / 2}" y="${top + ph + 34}" text-anchor="middle">objects (1 MiB memfd backends)</text>\n`;
    for (const [name, pts] of series) {
      out += `<polyline fill="none" stroke="${colors[name] ?? '#555'}" stroke-width="2" points="${pts.map((q) => `${X(q[0]).toFixed(1)},${Y(q[1]).toFixed(1)}`).join(' ')}"/>\n`;
      for (const q of pts) out += `<circle cx="${X(q[0]).toFixed(1)}" cy="${Y(q[1]).toFixed(1)}" r="2.5" fill="${colors[name] ?? '#555'}"/>\n`;
    }
  }
  let lx = 60;
  for (const [name, color] of Object.entries(colors)) {
    if (!c[name]) continue;
    out += `<rect x="${lx}" y="${H - 22}" width="14" height="4" fill="${color}"/><text x="${lx + 20}" y="${H - 16}">${name === 'qemu' ? 'QEMU 7.2' : name}</text>\n`;
    lx += 120;
  }
  return out + '</svg>\n';
}

/** A round axis end at or above v, and how many ticks divide it into round steps. */
function nice(v) {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const [m, ticks] of [[1, 5], [2, 4], [2.5, 5], [5, 5], [10, 5]]) if (m * e >= v) return [m * e, ticks];
  return [10 * e, 5];
}
function short(v) {
  return v >= 1000 ? `${fmt(v / 1000, v % 1000 ? 1 : 0)}k` : v >= 10 || v === 0 ? fmt(v, 0) : fmt(v, 2);
}
function esc(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}
