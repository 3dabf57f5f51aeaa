// bench/guest-boot: how long a QEMU 7.2 TCG guest (-M pc, SeaBIOS, no disk) takes from the
// start of its command line until SeaBIOS has written the interrupt vector table (the first 16
// bytes of guest RAM become non-zero), with RAM from hostmemd through hostmemd-run, and with
// QEMU's own memory-backend-memfd, alternating in one run. Both are observed the same way:
// reading QEMU's RAM mapping through /proc/PID/mem (root, or ptrace rights, needed). Each
// repeat uses a fresh backend (object-add before, object-del after), as QEMU's memfd is fresh.
//
// Knobs (flags or environment):
//   --repeats N   (REPEATS, default 5)  runs of each variant; medians are reported
//   --json FILE   (JSON)                also write { bench, results: [...] } to FILE
// Run: npm run build && node bench/guest-boot.mjs [--repeats 9] [--json out.json]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { ROOT, startHostmemd, negotiatedClient, request, haveQemu, fmt, printTable } from './lib.mjs';

const QEMU = 'qemu-system-x86_64';
const SIZE = 64 * 1024 * 1024;
/** Give up on one boot after this long (a loaded host is slow; an idle one takes < 1 s). */
const BOOT_LIMIT_MS = 60000;
const POLL_MS = 1;

function flag(name, env, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  return process.env[env] ?? dflt;
}
const REPEATS = Number(flag('repeats', 'REPEATS', '5'));
const JSON_FILE = flag('json', 'JSON', undefined);
if (!Number.isInteger(REPEATS) || REPEATS < 1) throw new Error('--repeats must be a positive integer');

const ramArgs = (backend) => [
  ...['-M', 'pc', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-m', `${SIZE >> 20}M`],
  ...['-object', backend, '-machine', 'memory-backend=ram0'],
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Start of QEMU's shared RAM mapping (a memfd of SIZE bytes) in process `pid`, once it exists. */
function ramMapping(pid) {
  let maps;
  try {
    maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) rw-s \S+ \S+ \d+\s+(\/memfd:.*)$/.exec(line);
    if (m && BigInt('0x' + m[2]) - BigInt('0x' + m[1]) === BigInt(SIZE)) return BigInt('0x' + m[1]);
  }
  return undefined;
}

function comm(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Spawns `argv`, then measures: when the process became QEMU (exec), and when the IVT in its
 *  RAM became non-zero; kills it. Times in ms from the spawn. */
async function boot(argv) {
  const t0 = process.hrtime.bigint();
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => proc.once('exit', r));
  let execMs;
  let ivtMs;
  let mem;
  try {
    let addr;
    while (ivtMs === undefined) {
      if (proc.exitCode !== null) throw new Error(`${argv[0]} exited (${proc.exitCode}): ${err}`);
      if (ms() > BOOT_LIMIT_MS) throw new Error(`no IVT within ${BOOT_LIMIT_MS} ms`);
      if (execMs === undefined && comm(proc.pid).startsWith('qemu-system')) execMs = ms();
      if (addr === undefined) addr = ramMapping(proc.pid);
      if (addr !== undefined) {
        mem ??= fs.openSync(`/proc/${proc.pid}/mem`, 'r');
        const b = Buffer.alloc(16);
        fs.readSync(mem, b, 0, 16, Number(addr));
        if (b.some((x) => x !== 0)) ivtMs = ms();
      }
      if (ivtMs === undefined) await sleep(POLL_MS);
    }
  } finally {
    if (mem !== undefined) fs.closeSync(mem);
    proc.kill('SIGKILL');
    await exited;
  }
  return { execMs: execMs ?? 0, ivtMs };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  if (!haveQemu()) {
    console.log(`*** SKIPPED: ${QEMU} is not installed ***`);
    return;
  }
  const h = await startHostmemd();
  const c = await negotiatedClient(h.sock);
  const runs = { hostmemd: [], qemu: [] };
  try {
    for (let i = 0; i < REPEATS; i++) {
      // Alternate the order so a warming host favours neither side.
      for (const side of i % 2 ? ['qemu', 'hostmemd'] : ['hostmemd', 'qemu']) {
        if (side === 'hostmemd') {
          const id = `ram${i}`;
          const add = await request(c, 'object-add', { 'qom-type': 'memory-backend-memfd', id, size: SIZE, share: true });
          if (add.err) throw new Error(add.err);
          const argv = [process.execPath, path.join(ROOT, 'bin', 'hostmemd-run'), '--qmp', `unix:${h.sock}`, '--memdev', `${id}:3`, '--', QEMU,
            ...ramArgs(`memory-backend-file,id=ram0,mem-path=/proc/self/fd/3,share=on,size=${SIZE >> 20}M`)];
          runs.hostmemd.push(await boot(argv));
          const del = await request(c, 'object-del', { id });
          if (del.err) throw new Error(del.err);
        } else {
          runs.qemu.push(await boot([QEMU, ...ramArgs(`memory-backend-memfd,id=ram0,share=on,size=${SIZE >> 20}M`)]));
        }
      }
    }
  } finally {
    c.close();
    await h.stop();
  }
  const hm = { ivt: median(runs.hostmemd.map((r) => r.ivtMs)), exec: median(runs.hostmemd.map((r) => r.execMs)) };
  const hmAfterExec = median(runs.hostmemd.map((r) => r.ivtMs - r.execMs));
  const q = median(runs.qemu.map((r) => r.ivtMs));
  console.log(`guest boot to IVT written, ${REPEATS} runs each, medians (ms); host: ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}`);
  printTable([
    ['measure', 'hostmemd (hostmemd-run)', 'qemu (memory-backend-memfd)'],
    ['start -> IVT written', fmt(hm.ivt), fmt(q)],
    ['start -> QEMU exec\'d', fmt(hm.exec), '0 (QEMU is the command)'],
    ['QEMU exec -> IVT written', fmt(hmAfterExec), fmt(q)],
  ]);
  console.log(`all runs (ms to IVT): hostmemd ${runs.hostmemd.map((r) => fmt(r.ivtMs)).join(' ')}; qemu ${runs.qemu.map((r) => fmt(r.ivtMs)).join(' ')}`);
  if (JSON_FILE) {
    const results = [
      { name: 'guest-boot-to-ivt', unit: 'ms', hostmemd: hm.ivt, qemu: q, better: 'lower' },
      { name: 'launcher-to-exec', unit: 'ms', hostmemd: hm.exec, better: 'lower' },
      { name: 'guest-boot-to-ivt-after-exec', unit: 'ms', hostmemd: hmAfterExec, qemu: q, better: 'lower' },
    ];
    fs.writeFileSync(JSON_FILE, JSON.stringify({ bench: 'guest-boot', results }, null, 2) + '\n');
    console.log(`wrote ${JSON_FILE}`);
  }
}

await main();
