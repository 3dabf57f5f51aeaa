// Upgrading a running QEMU 7.2 guest whose RAM is hostmemd memory, without copying that RAM
// (hostmemd-upgrade, src/vmm/). The guest is the counter boot sector (src/vmm/counter-guest.ts):
// a counter at 0x7e00 that only grows while the guest runs, so "the successor continues from
// where the old one stood" and "the old one runs on after a failed upgrade" are both visible.
// Each VMM is started through hostmemd-run with backend ram0 at fd 3, as an operator would.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { ROOT, tmpDir, waitConnectable, waitForFile } from '../../helpers/daemon';
import { RawQmpClient } from '../../helpers/qmp-client';
import { fdCount } from '../../helpers/proc';
import { QEMU_BIN, qemuAvailable, announceSkip } from '../../helpers/qemu';
import { QemuMonitor } from '../../../src/vmm/qemu-monitor';
import { upgradeVmm, UpgradeError } from '../../../src/vmm/upgrade';
import { counterBootSector, parseCounter, COUNTER_ADDRESS } from '../../../src/vmm/counter-guest';

jest.setTimeout(120000);

const LAUNCHER = path.join(ROOT, 'bin', 'hostmemd-run');
const UPGRADE = path.join(ROOT, 'bin', 'hostmemd-upgrade');
const MIB = 1024 * 1024;
const have = qemuAvailable() && fs.existsSync(LAUNCHER);
if (!have) announceSkip('VMM upgrade on hostmemd memory', qemuAvailable() ? 'bin/hostmemd-run is missing' : `${QEMU_BIN} is not installed`);
const maybe = have ? describe : describe.skip;

let dir: string;
let sock: string;
let sup: ChildProcess;
let image: string;
const vmms: ChildProcess[] = [];
const pids = new Set<number>();

/** The daemon's pid: the supervisor's child. */
function daemonPid(): number {
  const kids = fs.readFileSync(`/proc/${sup.pid}/task/${sup.pid}/children`, 'utf8').trim();
  if (!kids) throw new Error('no daemon under the supervisor');
  return Number(kids.split(/\s+/)[0]);
}

async function hostmemd(cmd: string, args?: Record<string, unknown>): Promise<unknown> {
  const c = await RawQmpClient.negotiated(sock);
  try {
    return await c.execute(cmd, args);
  } finally {
    c.close();
  }
}

function qemuArgs(vmSock: string, mib: number): string[] {
  return [QEMU_BIN, '-M', 'pc', '-m', `${mib}M`, '-nodefaults', '-display', 'none',
    '-object', `memory-backend-file,id=ram0,mem-path=/proc/self/fd/3,share=on,size=${mib}M`, '-machine', 'memory-backend=ram0',
    '-drive', `file=${image},format=raw,if=ide`, '-qmp', `unix:${vmSock},server=on,wait=off`];
}

/** A successor's command: the same VMM through the launcher. */
const launched = (vmSock: string, mib = 64): string[] => [process.execPath, LAUNCHER, '--qmp', `unix:${sock}`, '--memdev', 'ram0:3', '--', ...qemuArgs(vmSock, mib)];

/** Starts a VMM on ram0 through hostmemd-run and waits until its guest counts. */
async function startVmm(vmSock: string): Promise<{ proc: ChildProcess; mon: QemuMonitor }> {
  const argv = launched(vmSock);
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
  vmms.push(proc);
  const mon = await QemuMonitor.connect(vmSock, 30000, () => proc.exitCode === null);
  pids.add(proc.pid!);
  await counting(mon);
  return { proc, mon };
}

const counter = async (mon: QemuMonitor): Promise<number> => parseCounter(await mon.hmp(`xp /1wx ${COUNTER_ADDRESS}`));

/** Waits until the guest's counter grows (SeaBIOS has booted the sector). */
async function counting(mon: QemuMonitor): Promise<number> {
  const deadline = Date.now() + 20000;
  let last = await counter(mon);
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await counter(mon);
    if (now > last && last > 0) return now;
    if (Date.now() > deadline) throw new Error(`the guest does not count (${last} -> ${now})`);
    last = now;
  }
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

async function gone(pid: number): Promise<boolean> {
  const deadline = Date.now() + 10000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return !alive(pid);
}

maybe('hostmemd-upgrade', () => {
  beforeAll(() => {
    const d = tmpDir('hostmemd-guest-');
    image = path.join(d, 'counter.img');
    fs.writeFileSync(image, counterBootSector());
  });

  beforeEach(async () => {
    dir = tmpDir('hostmemd-upgrade-');
    sock = path.join(dir, 'qmp.sock');
    sup = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd-supervise'), '--state-dir', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitForFile(sock, sup);
    await waitConnectable(sock);
    expect(await hostmemd('object-add', { 'qom-type': 'memory-backend-memfd', id: 'ram0', size: 64 * MIB, share: true })).toEqual({ return: {} });
  });

  afterEach(async () => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    pids.clear();
    vmms.length = 0;
    const exited = new Promise((r) => sup.once('exit', r));
    sup.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the guest continues in the successor from where it stood; the old VMM is gone; hostmemd still holds the memory and leaks no fd', async () => {
    const vmSock = path.join(dir, 'vm.sock');
    const { proc, mon } = await startVmm(vmSock);
    const fdsBefore = fdCount(daemonPid());
    const before = await counter(mon);
    mon.close();
    const r = spawnSync(process.execPath, [UPGRADE, '--vmm-qmp', `unix:${vmSock}`, '--qmp', `unix:${sock}`, '--memdev', 'ram0:3', '--json', '--', ...qemuArgs(vmSock, 64)], { encoding: 'utf8', timeout: 60000 });
    expect(r.stderr).not.toMatch(/failed/);
    expect(r.status).toBe(0);
    const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as { oldPid: number; newPid: number; totalTimeMs: number };
    pids.add(result.newPid);
    expect(result.oldPid).toBe(proc.pid);
    expect(await gone(proc.pid!)).toBe(true);
    // The successor serves the same socket path and runs the same guest, continuing the count.
    const succ = await QemuMonitor.connect(vmSock, 5000);
    const after = await counter(succ);
    expect(after).toBeGreaterThanOrEqual(before);
    expect(await counting(succ)).toBeGreaterThan(after);
    expect(((await succ.execute('query-status')) as { status: string }).status).toBe('running');
    succ.close();
    // hostmemd still holds the backend, and lists the successor and the upgrade.
    const memdevs = (await hostmemd('query-memdev')) as { return: { id: string; size: number }[] };
    expect(memdevs.return.map((m) => [m.id, m.size])).toEqual([['ram0', 64 * MIB]]);
    const info = (await hostmemd('query-vmms')) as { return: { vmms: { pid: number; mapped: string[]; 'upgraded-from'?: number }[]; upgrades: { status: string; 'old-pid': number; 'new-pid': number }[] } };
    expect(info.return.vmms).toEqual([expect.objectContaining({ pid: result.newPid, mapped: ['ram0'], 'upgraded-from': proc.pid })]);
    expect(info.return.upgrades).toEqual([expect.objectContaining({ status: 'completed', 'old-pid': proc.pid, 'new-pid': result.newPid })]);
    // The daemon notices the last client's close a moment later.
    const deadline = Date.now() + 3000;
    while (fdCount(daemonPid()) !== fdsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(fdCount(daemonPid())).toBe(fdsBefore);
  });

  test('a successor with a different RAM size fails the migration; the old VMM runs on', async () => {
    const vmSock = path.join(dir, 'vm.sock');
    const { proc, mon } = await startVmm(vmSock);
    // QEMU serves one client per monitor: while one is connected the tool cannot get in, and
    // says so without touching anything.
    const busy = await upgradeVmm({ vmmQmp: vmSock, command: launched(vmSock) }).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(UpgradeError);
    expect((busy as UpgradeError).message).toMatch(/one client per QMP monitor/);
    mon.close();
    const err = await upgradeVmm({ vmmQmp: vmSock, command: launched(vmSock, 32) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpgradeError);
    expect((err as UpgradeError).message).toMatch(/the migration failed/);
    // QEMU's own words on the refusal come with the error.
    expect((err as UpgradeError).message).toMatch(/the successor said:[\s\S]*mismatch/i);
    expect((err as UpgradeError).oldResumed).toBe(true);
    expect(alive(proc.pid!)).toBe(true);
    // Its socket is still its own: a new client reaches the old VMM, whose guest counts on.
    const again = await QemuMonitor.connect(vmSock, 5000);
    expect(((await again.execute('query-status')) as { status: string }).status).toBe('running');
    await counting(again);
    again.close();
  });

  test('a successor killed during the migration: the old VMM runs on, its counter still growing', async () => {
    const vmSock = path.join(dir, 'vm.sock');
    const { proc, mon } = await startVmm(vmSock);
    mon.close();
    let killed = 0;
    const err = await upgradeVmm({
      vmmQmp: vmSock,
      command: launched(vmSock),
      afterMigrateStarted: (pid) => {
        killed = pid;
        process.kill(pid, 'SIGKILL');
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpgradeError);
    expect((err as UpgradeError).oldResumed).toBe(true);
    expect(await gone(killed)).toBe(true);
    expect(alive(proc.pid!)).toBe(true);
    const again = await QemuMonitor.connect(vmSock, 5000);
    expect(((await again.execute('query-status')) as { status: string }).status).toBe('running');
    await counting(again);
    again.close();
  });

  test('hostmemd is SIGKILLed and restored under its keeper while the VMM runs; an upgrade afterwards still works', async () => {
    const vmSock = path.join(dir, 'vm.sock');
    const { proc, mon } = await startVmm(vmSock);
    const first = daemonPid();
    process.kill(first, 'SIGKILL');
    const deadline = Date.now() + 20000;
    for (;;) {
      let p: number | undefined;
      try {
        p = daemonPid();
      } catch {
        p = undefined;
      }
      if (p !== undefined && p !== first) {
        try {
          const q = (await hostmemd('query-cpr')) as { return: { objects: { id: string; origin: string }[] } };
          if (q.return.objects.some((o) => o.id === 'ram0')) {
            expect(q.return.objects).toEqual([expect.objectContaining({ id: 'ram0', origin: 'reattached' })]);
            break;
          }
        } catch {
          // not serving yet
        }
      }
      if (Date.now() > deadline) throw new Error('hostmemd did not come back');
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = await counting(mon);
    mon.close();
    const r = await upgradeVmm({ vmmQmp: vmSock, command: launched(vmSock) });
    pids.add(r.newPid);
    expect(await gone(proc.pid!)).toBe(true);
    const succ = await QemuMonitor.connect(vmSock, 5000);
    expect(await counter(succ)).toBeGreaterThanOrEqual(before);
    await counting(succ);
    succ.close();
  });
});
