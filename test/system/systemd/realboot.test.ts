// systemd/hostmemd.{service,socket} under a real systemd 252 (Debian 12 in systemd-nspawn,
// booted by test/systemd/systemd-realboot.sh, the team's tool): socket activation, READY and
// STATUS, the fd store across `systemctl kill -s KILL` (same bytes after the restart), object-del
// leaving the store, the sandbox letting the daemon work (DeviceAllow=/dev/kvm, sysusers).
// Needs root, systemd-nspawn and debootstrap (the first prepare takes about a minute).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../../helpers/daemon';
import { RawQmpClient } from '../../helpers/qmp-client';
import { announceSkip } from '../../helpers/qemu';

const TOOL = path.join(__dirname, 'systemd-realboot.sh');
const NAME = `hmtest${process.pid}`;
const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const why =
  process.getuid?.() !== 0 ? 'not root' : !has('systemd-nspawn') ? 'systemd-nspawn is not installed (apt-get install systemd-container)' : !has('debootstrap') ? 'debootstrap is not installed' : undefined;
if (why) announceSkip('real systemd 252 tests of systemd/*.service,*.socket', why);
const maybe = why ? describe.skip : describe;

const tool = (...args: string[]): string => execFileSync(TOOL, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300000 });
/** The first `prepare` debootstraps a rootfs (minutes on a slow mirror), or waits (up to
 *  900 s) for another checkout's prepare to finish: it gets more time than the other steps. */
const PREPARE_MS = 1200000;
const inside = (...cmd: string[]): string => tool('exec', NAME, ...cmd).trim();
const show = (prop: string): string => inside('systemctl', 'show', '-p', prop, '--value', 'hostmemd.service');
/** `prop` once it equals `want` (systemd reads notifications on its own schedule), or after
 *  5 s whatever it is. */
const settled = async (prop: string, want: string): Promise<string> => {
  const deadline = Date.now() + 5000;
  let v = show(prop);
  while (v !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    v = show(prop);
  }
  return v;
};

/** Writes or checks a 4 KiB pattern in the daemon's mapping of `size` bytes, from inside the
 *  container (its pids are the container's), through /proc/PID/mem. */
const PROBE = `
import sys
pid, size, mode, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
m = [l.split() for l in open(f"/proc/{pid}/maps")]
m = [x for x in m if len(x) > 5 and x[1].startswith("rw") and not x[5].startswith("[")]
m = [x for x in m if int(x[0].split("-")[1], 16) - int(x[0].split("-")[0], 16) == size]
assert len(m) == 1, m
addr = int(m[0][0].split("-")[0], 16)
pat = (tag * 4096)[:4096]
with open(f"/proc/{pid}/mem", "r+b") as f:
    f.seek(addr)
    if mode == "write":
        f.write(pat)
    else:
        print("same" if f.read(4096) == pat else "different")
`;

/** A QMP client run inside the container (as some user): prints query-version's reply, or
 *  "refused: ERROR" when it cannot connect. */
const QMP_CLIENT = `
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("/run/hostmemd/qmp.sock")
except OSError as e:
    print("refused:", type(e).__name__); raise SystemExit(0)
f = s.makefile("rwb")
f.readline()
for cmd in (b'{"execute":"qmp_capabilities"}', b'{"execute":"query-version"}'):
    f.write(cmd + b"\\n"); f.flush(); line = f.readline()
print(line.decode().strip())
`;

/** GET of a web console route inside the container, with the daemon's token: the JSON body. */
const API_GET = `
import sys, urllib.request
tok = open("/var/lib/hostmemd/token").read().strip()
req = urllib.request.Request("http://127.0.0.1:4780" + sys.argv[1], headers={"Authorization": "Bearer " + tok})
print(urllib.request.urlopen(req, timeout=10).read().decode())
`;

const MiB = 1 << 20;
const KVM = fs.existsSync('/dev/kvm');
if (!why && !KVM) announceSkip('real systemd 252 tests: the memory-backend-guest-memfd cases', '/dev/kvm is not here');
const BACKENDS = [
  { id: 'mfd', size: 2 * MiB + 4096, args: { 'qom-type': 'memory-backend-memfd' } },
  { id: 'shm', size: 3 * MiB + 4096, args: { 'qom-type': 'memory-backend-shm' } },
  { id: 'ramsh', size: 4 * MiB + 4096, args: { 'qom-type': 'memory-backend-ram', share: true } },
  ...(KVM ? [{ id: 'gm', size: 5 * MiB, args: { 'qom-type': 'memory-backend-guest-memfd' } }] : []),
];

maybe('hostmemd under a real systemd 252', () => {
  let sock = '';
  /** Set when the container cannot be made (no Debian mirror, no overlayfs...): the tests then
   *  say so loudly instead of failing on the environment. */
  let unavailable: string | undefined;
  const skipped = (): boolean => {
    if (unavailable) announceSkip('real systemd 252 test', unavailable);
    return unavailable !== undefined;
  };
  jest.setTimeout(300000);

  beforeAll(() => {
    try {
      execFileSync(TOOL, ['prepare'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: PREPARE_MS });
    } catch (e) {
      const err = e as { stderr?: string; signal?: string; message?: string };
      const timedOut = err.signal === 'SIGTERM' ? ` (killed after ${PREPARE_MS / 1000} s)` : '';
      unavailable = `systemd-realboot prepare failed${timedOut}: ${err.stderr || err.message || String(e)}`;
      return;
    }
    tool('boot', NAME, `--bind-ro=${ROOT}:/opt/hostmemd`, `--bind-ro=${process.execPath}:/usr/bin/node`);
    const root = tool('root', NAME).trim();
    for (const f of ['hostmemd.service', 'hostmemd.socket']) fs.copyFileSync(path.join(ROOT, 'systemd', f), path.join(root, 'etc/systemd/system', f));
    fs.mkdirSync(path.join(root, 'etc/sysusers.d'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'systemd/hostmemd.sysusers.conf'), path.join(root, 'etc/sysusers.d/hostmemd.conf'));
    // /dev/kvm is bound in from the host with the host's kvm gid: give the container's kvm
    // group that gid (on a real host, udev and systemd agree on it already).
    if (KVM) fs.writeFileSync(path.join(root, 'etc/sysusers.d/00-kvm.conf'), `g kvm ${fs.statSync('/dev/kvm').gid}\n`);
    inside('systemd-sysusers');
    // A client that is not root: a member of group hostmemd (whom the socket lets in).
    inside('useradd', '--no-create-home', '-G', 'hostmemd', 'qmpuser');
    inside('systemctl', 'daemon-reload');
    inside('systemctl', 'start', 'hostmemd.socket');
    const leader = fs.readFileSync(path.join(process.env.SRB_DIR ?? '/var/tmp/systemd-realboot', 'run', NAME, 'leader.pid'), 'utf8').trim();
    sock = `/proc/${leader}/root/run/hostmemd/qmp.sock`;
  }, PREPARE_MS + 300000);

  afterAll(() => {
    if (unavailable) return;
    try {
      if (process.env.HOSTMEMD_REALBOOT_DEBUG) console.log(inside('journalctl', '-u', 'hostmemd', '--no-pager', '-o', 'cat'));
    } finally {
      tool('stop', NAME);
    }
  });

  const waitActive = async (notPid: string): Promise<string> => {
    const deadline = Date.now() + 20000;
    for (;;) {
      const pid = show('MainPID');
      if (pid !== '0' && pid !== notPid && show('ActiveState') === 'active') return pid;
      if (Date.now() > deadline) throw new Error(`hostmemd did not come back: ${inside('systemctl', 'status', '--no-pager', 'hostmemd.service')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  test('socket activation starts it as user hostmemd; SIGKILL keeps every backend with its bytes; object-del ends one', async () => {
    if (skipped()) return;
    expect(show('ActiveState')).toBe('inactive'); // not started until someone connects
    // Someone who is not in group hostmemd is refused, before and after the start.
    expect(inside('runuser', '-u', 'nobody', '--', 'python3', '-c', QMP_CLIENT)).toMatch(/^refused: PermissionError/);
    expect(show('ActiveState')).toBe('inactive');
    // The first connection, the one that starts the service, can come from a non-root member of
    // group hostmemd: /run/hostmemd (made by the socket unit, root's, before the service ever
    // ran) must let it through.
    expect(inside('runuser', '-u', 'qmpuser', '--', 'python3', '-c', QMP_CLIENT)).toMatch(/^\{"return": \{"qemu": .*"package": "hostmemd /);
    const pid1 = await waitActive('0');
    expect(inside('runuser', '-u', 'nobody', '--', 'python3', '-c', QMP_CLIENT)).toMatch(/^refused: PermissionError/);
    const c = await RawQmpClient.negotiated(sock);
    expect(await settled('StatusText', 'serving QMP on /run/hostmemd/qmp.sock; 0 objects')).toBe('serving QMP on /run/hostmemd/qmp.sock; 0 objects');
    expect(inside('ps', '-o', 'user=', '-p', pid1)).toBe('hostmemd');
    expect(show('WatchdogUSec')).toBe('20s');
    for (const b of BACKENDS) expect([b.id, await c.execute('object-add', { ...b.args, id: b.id, size: b.size })]).toEqual([b.id, { return: {} }]);
    for (const b of BACKENDS) inside('python3', '-c', PROBE, pid1, String(b.size), 'write', b.id);
    expect(await settled('NFileDescriptorStore', String(BACKENDS.length))).toBe(String(BACKENDS.length));
    c.close();

    inside('systemctl', 'kill', '-s', 'KILL', '--kill-who=main', 'hostmemd.service');
    const pid2 = await waitActive(pid1);
    expect(show('NRestarts')).toBe('1');
    const c2 = await RawQmpClient.negotiated(sock);
    const memdev = (await c2.execute('query-memdev')).return as { id: string; size: number }[];
    expect(memdev.map((m) => [m.id, m.size])).toEqual(BACKENDS.map((b) => [b.id, b.size]));
    for (const b of BACKENDS) expect([b.id, inside('python3', '-c', PROBE, pid2, String(b.size), 'check', b.id)]).toEqual([b.id, 'same']);
    const cpr = (await c2.execute('query-cpr')).return as { 'fd-store': boolean; objects: { id: string; origin: string }[]; problems: unknown[] };
    expect(cpr['fd-store']).toBe(true);
    expect(cpr.problems).toEqual([]);
    expect(cpr.objects.map((o) => o.origin)).toEqual(BACKENDS.map(() => 'reattached'));
    const status = `serving QMP on /run/hostmemd/qmp.sock; ${BACKENDS.length} objects`;
    expect(await settled('StatusText', status)).toBe(status);

    expect(await c2.execute('object-del', { id: 'mfd' })).toEqual({ return: {} });
    expect(await settled('NFileDescriptorStore', String(BACKENDS.length - 1))).toBe(String(BACKENDS.length - 1));
    c2.close();
    inside('systemctl', 'kill', '-s', 'KILL', '--kill-who=main', 'hostmemd.service');
    await waitActive(pid2);
    const c3 = await RawQmpClient.negotiated(sock);
    const ids = ((await c3.execute('query-memdev')).return as { id: string }[]).map((m) => m.id);
    expect(ids).toEqual(BACKENDS.filter((b) => b.id !== 'mfd').map((b) => b.id));
    c3.close();
  });

  test('systemctl stop is a clean stop (exit 0), the socket keeps listening, and the dropped store is reported', async () => {
    if (skipped()) return;
    inside('systemctl', 'stop', 'hostmemd.service');
    expect(show('ActiveState')).toBe('inactive');
    expect(show('Result')).toBe('success');
    expect(inside('systemctl', 'is-active', 'hostmemd.socket')).toBe('active');
    // The next client starts it again; the store is gone (systemd 252), so the objects are not
    // re-created empty: each is reported lost, its id free again.
    const c = await RawQmpClient.negotiated(sock);
    const cpr = (await c.execute('query-cpr')).return as { objects: unknown[]; lost: { id: string; reason: string; file?: string }[] };
    expect(cpr.objects).toEqual([]);
    expect(cpr.lost.length).toBeGreaterThan(0);
    for (const l of cpr.lost) expect(l).toMatchObject({ reason: expect.stringMatching(/^no preserved fd named/), file: expect.stringMatching(/\/objects\/lost\//) });
    const first = BACKENDS.find((b) => b.id === cpr.lost[0].id)!;
    expect(await c.execute('object-add', { ...first.args, id: first.id, size: first.size })).toEqual({ return: {} });
    c.close();
  });

  test('a hung daemon (SIGSTOP) misses its watchdog pings: systemd aborts and restarts it, memory kept', async () => {
    if (skipped()) return;
    const root = tool('root', NAME).trim();
    fs.mkdirSync(path.join(root, 'etc/systemd/system/hostmemd.service.d'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc/systemd/system/hostmemd.service.d/watchdog.conf'), '[Service]\nWatchdogSec=2s\n');
    inside('systemctl', 'daemon-reload');
    inside('systemctl', 'restart', 'hostmemd.service');
    const pid1 = await waitActive('0');
    expect(show('WatchdogUSec')).toBe('2s');
    const c = await RawQmpClient.negotiated(sock);
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'wd', size: 6 * MiB + 4096 })).toEqual({ return: {} });
    inside('python3', '-c', PROBE, pid1, String(6 * MiB + 4096), 'write', 'wd');
    c.close();
    inside('kill', '-STOP', pid1);
    const pid2 = await waitActive(pid1);
    expect(show('Result')).toBe('success'); // the new run; the journal has the watchdog line
    expect(inside('journalctl', '-u', 'hostmemd', '--no-pager', '-o', 'cat')).toMatch(/Watchdog timeout/);
    expect(inside('python3', '-c', PROBE, pid2, String(6 * MiB + 4096), 'check', 'wd')).toBe('same');
  });
  test('the system-call filter lets the daemon count resident pages (mincore), seen through /api/backends', async () => {
    if (skipped()) return;
    const root = tool('root', NAME).trim();
    // The console's routes report each backend's resident bytes, counted with mincore(2).
    fs.writeFileSync(path.join(root, 'etc/systemd/system/hostmemd.service.d/ws.conf'), '[Service]\nExecStart=\nExecStart=/usr/bin/node /opt/hostmemd/bin/hostmemd --ws 127.0.0.1:4780\n');
    inside('systemctl', 'daemon-reload');
    inside('systemctl', 'restart', 'hostmemd.service');
    await waitActive('0');
    const c = await RawQmpClient.negotiated(sock);
    // Pairs of the same size, one filled and one not: the smaps estimate the daemon falls back
    // to when mincore is refused cannot tell them apart (nor see guest_memfd pages at all).
    const made = [
      { id: 'res-idle', size: 1 * MiB + 4096, args: { 'qom-type': 'memory-backend-memfd' } },
      { id: 'res-mfd', size: 1 * MiB + 4096, args: { 'qom-type': 'memory-backend-memfd', prealloc: true } },
      ...(KVM
        ? [
            { id: 'res-gm', size: 3 * MiB, args: { 'qom-type': 'memory-backend-guest-memfd', prealloc: true } },
            { id: 'res-idle2', size: 3 * MiB, args: { 'qom-type': 'memory-backend-memfd' } },
          ]
        : []),
    ];
    for (const b of made) expect([b.id, await c.execute('object-add', { ...b.args, id: b.id, size: b.size })]).toEqual([b.id, { return: {} }]);
    c.close();
    let api = '';
    for (let i = 0; i < 50 && api === ''; i++) {
      try {
        api = inside('python3', '-c', API_GET, '/api/backends');
      } catch {
        await new Promise((r) => setTimeout(r, 100)); // the web server listens a moment after READY
      }
    }
    const rows = JSON.parse(api) as { id: string; resident: number }[];
    const resident = (id: string): number | undefined => rows.find((r) => r.id === id)?.resident;
    expect(made.map((b) => [b.id, resident(b.id)])).toEqual(made.map((b) => [b.id, b.id.startsWith('res-idle') ? 0 : b.size]));
    expect(inside('journalctl', '-u', 'hostmemd', '--no-pager', '-o', 'cat')).not.toMatch(/mincore/);
  });
  test('mem-path in the sandbox: a file in the state directory\'s files/ is made under the sandbox\'s system-call filter and UMask; /etc/passwd is refused', async () => {
    if (skipped()) return;
    const c = await RawQmpClient.negotiated(sock);
    const file = '/var/lib/hostmemd/files/guest.mem';
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'mp', size: MiB, share: true, 'mem-path': file })).toEqual({ return: {} });
    expect(inside('stat', '-c', '%s %U %a', file)).toBe(`${MiB} hostmemd 600`); // 0644 & ~UMask=0077
    expect(inside('stat', '-c', '%U %a', '/var/lib/hostmemd/files')).toBe('hostmemd 750');
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'mq', size: MiB, readonly: true, 'mem-path': '/etc/passwd' })).toEqual({
      error: { class: 'GenericError', desc: "mem-path '/etc/passwd' is not a regular file or directory inside an allowed directory (--mem-path-allow)" },
    });
    expect(await c.execute('object-del', { id: 'mp' })).toEqual({ return: {} });
    c.close();
  });
});
