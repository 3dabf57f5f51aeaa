// The unit files pass `systemd-analyze verify` (and keep the settings the daemon relies on), and
// the daemon works under `systemd-socket-activate`: the first connection starts it on the passed
// socket, it binds no socket of its own, and answers QMP.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tmpDir } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';
import { announceSkip } from '../helpers/qemu';

const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const UNITS = ['hostmemd.service', 'hostmemd.socket'].map((u) => path.join(ROOT, 'systemd', u));

const verifyWhy = has('systemd-analyze') ? undefined : 'systemd-analyze is not installed';
if (verifyWhy) announceSkip('systemd-analyze verify of systemd/*', verifyWhy);
(verifyWhy ? test.skip : test)('systemd-analyze verify passes on both units with no warning', () => {
  const r = spawnSync('systemd-analyze', ['verify', ...UNITS], { encoding: 'utf8' });
  expect({ status: r.status, out: r.stdout + r.stderr }).toEqual({ status: 0, out: '' });
});

test('the service keeps what the daemon relies on', () => {
  const unit = fs.readFileSync(UNITS[0], 'utf8');
  for (const line of [
    'Type=notify',
    'NotifyAccess=main',
    'FileDescriptorStoreMax=65536',
    'Restart=on-failure',
    'StateDirectory=hostmemd',
    'RuntimeDirectory=hostmemd',
    'RuntimeDirectoryPreserve=yes',
    'DeviceAllow=/dev/kvm rw',
    'DevicePolicy=closed',
    'ProtectSystem=strict',
    'NoNewPrivileges=yes',
    'CapabilityBoundingSet=',
    'User=hostmemd',
    'SupplementaryGroups=kvm',
  ]) {
    expect(unit.split('\n')).toContain(line);
  }
  expect(unit).toMatch(/^WatchdogSec=\d+s$/m);
  // V8's JIT needs W+X memory: this would kill the daemon at start.
  expect(unit).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
  const socket = fs.readFileSync(UNITS[1], 'utf8');
  expect(socket).toMatch(/^ListenStream=\/run\/hostmemd\/qmp\.sock$/m);
  expect(socket).toMatch(/^FileDescriptorName=qmp$/m);
});

const saWhy = has('systemd-socket-activate') ? undefined : 'systemd-socket-activate is not installed';
if (saWhy) announceSkip('socket activation with systemd-socket-activate', saWhy);
(saWhy ? test.skip : test)('systemd-socket-activate: the first connect starts the daemon on the passed socket', async () => {
  const dir = tmpDir('hostmemd-sa-');
  const sock = path.join(dir, 'activated.sock');
  const sa = spawn('systemd-socket-activate', ['-l', sock, '--fdname=qmp', process.execPath, path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  sa.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    const deadline = Date.now() + 10000;
    while (!fs.existsSync(sock)) {
      if (Date.now() > deadline) throw new Error(`no socket: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // Nothing runs yet: the connection itself starts hostmemd, which greets on it.
    const c = await RawQmpClient.negotiated(sock);
    expect(await c.execute('query-version')).toMatchObject({ return: { package: expect.stringMatching(/^hostmemd /) } });
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1 << 20 })).toEqual({ return: {} });
    const c2 = await RawQmpClient.negotiated(sock);
    expect(await c2.execute('query-memdev')).toMatchObject({ return: [{ id: 'm' }] });
    // It used the passed socket and made none of its own.
    expect(fs.existsSync(path.join(dir, 'qmp.sock'))).toBe(false);
    expect(err).toMatch(/"sockets":\[".*activated\.sock"\]/);
    c.close();
    c2.close();
  } finally {
    sa.kill('SIGTERM');
    await new Promise((r) => sa.once('exit', r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
