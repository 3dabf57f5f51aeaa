// bench/vmm-upgrade: how long it takes to move a running QEMU 7.2 guest (the counter boot
// sector, TCG, -M pc) to a successor QEMU process with hostmemd-upgrade, for guests of 1, 4 and
// 16 GiB whose RAM is a hostmemd memfd backend (started through hostmemd-run; x-ignore-shared:
// RAM is not copied), and for 1 GiB of QEMU's own memory (memory-backend-ram: RAM copied) as
// the reference. Reported per size: QEMU's migration total-time and downtime (query-migrate),
// the switch (from `migrate` to the successor confirmed running) and the whole operation's wall
// time (including the successor's start). Each guest is checked to keep counting afterwards.
// Run: npm run bench:upgrade -- [--json FILE] [--quick]   (or node bench/vmm-upgrade.mjs after a build)
//   SIZES_GIB="1,4,16" (hostmemd sizes), REFERENCE_GIB=1 (0 skips the reference), REPEATS=1.
/* global setInterval, clearInterval */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { ROOT, startHostmemd, haveQemu, negotiatedClient, request, fmt, printTable, writeJson } from './lib.mjs';

const require = createRequire(import.meta.url);
const { upgradeVmm } = require(path.join(ROOT, 'dist', 'vmm', 'upgrade.js'));
const { QemuMonitor } = require(path.join(ROOT, 'dist', 'vmm', 'qemu-monitor.js'));
const { counterBootSector, parseCounter, COUNTER_ADDRESS } = require(path.join(ROOT, 'dist', 'vmm', 'counter-guest.js'));

// --quick (npm run bench -- --quick): one 1 GiB guest, no reference.
const quick = process.argv.includes('--quick');
const SIZES = (process.env.SIZES_GIB ?? (quick ? '1' : '1,4,16')).split(',').map(Number).filter((n) => n > 0);
const REFERENCE = Number(process.env.REFERENCE_GIB ?? (quick ? 0 : 1));
const REPEATS = Number(process.env.REPEATS ?? 1);
const jsonAt = process.argv.indexOf('--json');
const jsonFile = jsonAt > 0 ? process.argv[jsonAt + 1] : undefined;
const GiB = 1024 ** 3;

if (!haveQemu()) {
  console.log('vmm-upgrade: qemu-system-x86_64 is not installed; nothing to measure');
  process.exit(0);
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-bench-upgrade-'));
const image = path.join(work, 'counter.img');
fs.writeFileSync(image, counterBootSector());
const LAUNCHER = path.join(ROOT, 'bin', 'hostmemd-run');

function qemuArgs(vmSock, gib, memory) {
  return ['qemu-system-x86_64', '-M', 'pc', '-m', `${gib}G`, '-nodefaults', '-display', 'none', '-object', memory, '-machine', 'memory-backend=ram0',
    '-drive', `file=${image},format=raw,if=ide`, '-qmp', `unix:${vmSock},server=on,wait=off`];
}

const counter = async (mon) => parseCounter(await mon.hmp(`xp /1wx ${COUNTER_ADDRESS}`));
async function counting(mon) {
  const deadline = Date.now() + 30000;
  let last = await counter(mon);
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await counter(mon);
    if (now > last && last > 0) return now;
    if (Date.now() > deadline) throw new Error('the guest does not count');
    last = now;
  }
}

/** One upgrade of a guest of `gib` GiB; `command(vmSock)` starts a VMM. */
async function measure(label, gib, command) {
  const vmSock = path.join(work, `vm-${label}.sock`);
  const argv = command(vmSock);
  const first = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  const mon = await QemuMonitor.connect(vmSock, 30000, () => first.exitCode === null);
  const before = await counting(mon);
  mon.close();
  const r = await upgradeVmm({ vmmQmp: vmSock, command: command(vmSock), migrateTimeoutMs: 600000 });
  const succ = await QemuMonitor.connect(vmSock, 5000);
  const after = await counting(succ);
  if (after < before) throw new Error(`${label}: the counter went back (${before} -> ${after})`);
  try {
    await succ.execute('quit');
  } catch {
    // the connection closes with quit
  }
  succ.close();
  await new Promise((res) => {
    const t = setInterval(() => {
      try {
        process.kill(r.newPid, 0);
      } catch {
        clearInterval(t);
        res();
      }
    }, 20);
  });
  return r;
}

const rows = [['guest', 'RAM', 'migration total-time', 'downtime', 'switch', 'whole upgrade', 'sent']];
const results = [];
function add(label, gib, r) {
  rows.push([label, `${gib} GiB`, `${r.totalTimeMs} ms`, `${r.downtimeMs} ms`, `${fmt(r.switchMs)} ms`, `${fmt(r.wallMs, 0)} ms`, `${(r.transferredBytes / 1024).toFixed(0)} KiB`]);
}

const d = await startHostmemd(['--max-backend-bytes', String(64 * GiB)]);
try {
  const c = await negotiatedClient(d.sock);
  for (const gib of SIZES) {
    await request(c, 'object-add', { 'qom-type': 'memory-backend-memfd', id: 'ram0', size: gib * GiB, share: true });
    for (let i = 0; i < REPEATS; i++) {
      const r = await measure(`hostmemd-${gib}`, gib, (vmSock) => [process.execPath, LAUNCHER, '--qmp', `unix:${d.sock}`, '--memdev', 'ram0:3', '--', ...qemuArgs(vmSock, gib, `memory-backend-file,id=ram0,mem-path=/proc/self/fd/3,share=on,size=${gib}G`)]);
      add('hostmemd memfd', gib, r);
      results.push({ name: `upgrade ${gib} GiB on hostmemd: migration total-time`, unit: 'ms', hostmemd: r.totalTimeMs, better: 'lower' });
      results.push({ name: `upgrade ${gib} GiB on hostmemd: whole operation`, unit: 'ms', hostmemd: r.wallMs, better: 'lower' });
    }
    await request(c, 'object-del', { id: 'ram0' });
  }
  c.close();
} finally {
  await d.stop();
}
if (REFERENCE > 0) {
  for (let i = 0; i < REPEATS; i++) {
    const r = await measure('qemu-own', REFERENCE, (vmSock) => qemuArgs(vmSock, REFERENCE, `memory-backend-ram,id=ram0,size=${REFERENCE}G`));
    add("QEMU's own RAM", REFERENCE, r);
    // Side by side with the same size on hostmemd memory, where there is one.
    const same = results.find((x) => x.name === `upgrade ${REFERENCE} GiB on hostmemd: migration total-time`);
    if (same) same.qemu = r.totalTimeMs;
  }
}
fs.rmSync(work, { recursive: true, force: true });
printTable(rows);
writeJson(jsonFile, 'vmm-upgrade', results);
