// The real daemon process (bin/hostmemd from dist/): socket file mode, greeting over the
// socket, several clients at once, client limit refusal, a client vanishing mid-message,
// quit, SIGTERM, stale-socket handling and CLI errors.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { RawQmpClient } from '../helpers/qmp-client';
import { spawnDaemon, ROOT, tmpDir, waitConnectable } from '../helpers/daemon';

const BIN = path.join(ROOT, 'bin', 'hostmemd');

describe('hostmemd as a process', () => {
  test('creates its socket 0660, greets, serves two clients at once and removes the socket on SIGTERM', async () => {
    const d = await spawnDaemon();
    try {
      expect(fs.statSync(d.sock).mode & 0o777).toBe(0o660);
      const a = await RawQmpClient.negotiated(d.sock);
      const b = await RawQmpClient.negotiated(d.sock);
      expect(await a.execute('query-version', undefined, 'a')).toMatchObject({ return: { package: 'hostmemd 0.1.0' }, id: 'a' });
      expect(await b.execute('query-kvm', undefined, 'b')).toMatchObject({ return: { present: true }, id: 'b' });
      // A client that disconnects in the middle of a message harms no one.
      const c = await RawQmpClient.negotiated(d.sock);
      c.send('{"execute":"query-ver');
      c.close();
      expect(await a.execute('query-version')).toHaveProperty('return');
      d.proc.kill('SIGTERM');
      const ev = await a.json();
      expect(ev).toMatchObject({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-signal' } });
      await a.waitClosed();
      expect(await d.exited).toBe(0);
      expect(fs.existsSync(d.sock)).toBe(false);
      a.close();
      b.close();
    } finally {
      await d.stop();
    }
  });

  test('quit sends SHUTDOWN, then the reply, then EOF, and the process exits 0', async () => {
    const d = await spawnDaemon();
    const a = await RawQmpClient.negotiated(d.sock);
    a.send('{"execute":"quit","id":12}');
    const ev = await a.json();
    expect(ev).toMatchObject({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    expect(ev.timestamp).toEqual({ seconds: expect.any(Number), microseconds: expect.any(Number) });
    expect(await a.line()).toBe('{"return": {}, "id": 12}');
    await a.waitClosed();
    expect(await d.exited).toBe(0);
    await d.stop();
  });

  test('a client over --max-clients gets a clear refusal, not a hang; the others keep working', async () => {
    const d = await spawnDaemon(['--max-clients', '2']);
    try {
      const a = await RawQmpClient.negotiated(d.sock);
      const b = await RawQmpClient.negotiated(d.sock);
      const c = await RawQmpClient.connect(d.sock);
      expect(await c.line()).toBe('{"error": {"class": "GenericError", "desc": "Too many QMP clients: the limit is 2"}}');
      await c.waitClosed();
      b.close();
      await new Promise((r) => setTimeout(r, 100));
      const e = await RawQmpClient.negotiated(d.sock);
      expect(await e.execute('query-version')).toHaveProperty('return');
      expect(await a.execute('query-version')).toHaveProperty('return');
      a.close();
      e.close();
    } finally {
      await d.stop();
    }
  });

  test('accepts QEMU spelling -qmp unix:PATH,server=on,wait=off and several sockets', async () => {
    const dir = tmpDir();
    const s1 = path.join(dir, 'one.sock');
    const s2 = path.join(dir, 'two.sock');
    const d = await spawnDaemon(['-qmp', `unix:${s1},server=on,wait=off`, '--qmp', `unix:${s2}`], {}, s2);
    try {
      await waitConnectable(s1);
      await waitConnectable(s2);
      for (const s of [s1, s2]) {
        const c = await RawQmpClient.negotiated(s);
        expect(await c.execute('query-version')).toHaveProperty('return');
        c.close();
      }
    } finally {
      await d.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('replaces a stale socket file but refuses to steal a live one', async () => {
    const d1 = await spawnDaemon();
    try {
      const r = spawnSync(process.execPath, [BIN, '--qmp', `unix:${d1.sock}`, '--state-dir', d1.dir], { encoding: 'utf8', timeout: 10000 });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('is in use by another server');
    } finally {
      d1.proc.kill('SIGKILL');
      await d1.exited; // its state dir stays: d2 below uses d1.sock in it
    }
    // d1 was SIGKILLed: its socket file is stale now, and a new daemon takes it over.
    expect(fs.existsSync(d1.sock)).toBe(true);
    const d2 = await spawnDaemon(['--qmp', `unix:${d1.sock}`], {}, d1.sock);
    try {
      await waitConnectable(d1.sock);
      const c = await RawQmpClient.negotiated(d1.sock);
      expect(await c.execute('query-version')).toHaveProperty('return');
      c.close();
    } finally {
      await d2.stop();
      await d1.stop();
    }
  });

  test.each([
    [['--bogus'], 'hostmemd: --bogus: invalid option'],
    [['--qmp', 'tcp:1.2.3.4:5'], 'hostmemd: --qmp tcp:1.2.3.4:5: a TCP monitor is unauthenticated: anyone who can connect to it controls hostmemd; pass --qmp-allow-tcp to allow one on a loopback address'],
    [['--qmp-allow-tcp', '--qmp', 'tcp:1.2.3.4:5'], "hostmemd: --qmp tcp:1.2.3.4:5: '1.2.3.4' is not a loopback address; pass --qmp-allow-remote as well to allow an unauthenticated monitor there"],
    [['--state-dir'], 'hostmemd: --state-dir: requires an argument'],
    [['--accel', 'tcg'], 'hostmemd: --accel tcg: expected kvm or none'],
    [['--max-clients', '0'], 'hostmemd: --max-clients 0: expected a positive integer'],
    [['--incoming-cpr', 'tcp:1.2.3.4:5'], 'hostmemd: --incoming-cpr tcp:1.2.3.4:5: must be unix:PATH'],
  ])('bad command line %j exits 1 with a clear message', (args, msg) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 10000 });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(msg);
  });

  test('--version and --help', () => {
    const v = spawnSync(process.execPath, [BIN, '--version'], { encoding: 'utf8' });
    expect(v.status).toBe(0);
    expect(v.stdout).toBe(`hostmemd ${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}\n`);
    const h = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('--qmp unix:PATH');
  });
});

test('an in-process daemon with a refused client still shuts down', async () => {
  const { startInProcess } = await import('../helpers/daemon');
  const d = await startInProcess(['--max-clients', '1']);
  const a = await RawQmpClient.negotiated(d.sock);
  const b = await RawQmpClient.connect(d.sock);
  expect(await b.line()).toBe('{"error": {"class": "GenericError", "desc": "Too many QMP clients: the limit is 1"}}');
  await b.waitClosed();
  await d.stop();
  await a.waitClosed();
});
