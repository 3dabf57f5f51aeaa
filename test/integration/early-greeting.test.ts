// A start greets before it has restored its objects (issue 16, src/daemon/early.ts): a client
// that connects at once is greeted while the journal is still being restored, and what it
// sends meanwhile is read and answered only once the daemon is ready, so its very first query
// already sees every restored object. The real daemon (dist/), under a minimal sd_notify
// manager that tells when READY=1 came.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { ROOT, tmpDir, waitConnectable } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';
import { NotifyServer } from '../../src/service/notify-server';

jest.setTimeout(120_000);

/** Enough file backends that restoring them takes a while (each is reopened and mapped). */
const N = 600;
const MiB = 1024 * 1024;

function start(dir: string, env: NodeJS.ProcessEnv = {}) {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'hostmemd'), '--state-dir', dir, '--log-level', 'warn'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, exited, stderr: () => err };
}

test('a client connected during the restore is greeted before READY; its first query sees every restored object', async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'qmp.sock');
  const first = start(dir);
  try {
    await waitConnectable(sock);
    const c = await RawQmpClient.negotiated(sock);
    for (let i = 0; i < N; i++) {
      const r = await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: `f${i}`, size: MiB, share: true, 'mem-path': path.join(dir, 'files', `f${i}`) });
      expect([i, r]).toEqual([i, { return: {} }]);
    }
    c.close();
  } finally {
    first.proc.kill('SIGTERM');
    expect(await first.exited).toBe(0);
  }

  let readyAt: bigint | undefined;
  const notify = new NotifyServer(path.join(dir, 'notify'), (text) => {
    if (/^READY=1$/m.test(text)) readyAt ??= process.hrtime.bigint();
  });
  fs.rmSync(sock, { force: true });
  const again = start(dir, { NOTIFY_SOCKET: notify.path });
  try {
    // Connect as soon as the socket accepts, then send everything at once.
    let s: net.Socket | undefined;
    while (!s) {
      if (again.proc.exitCode !== null) throw new Error(`hostmemd exited: ${again.stderr()}`);
      s = await new Promise<net.Socket | undefined>((resolve) => {
        const x = net.connect(sock);
        x.once('connect', () => resolve(x));
        x.once('error', () => resolve(undefined));
      });
      if (!s) await new Promise((r) => setTimeout(r, 2));
    }
    const c = RawQmpClient.over(s);
    const greeting = (await c.json(30000)) as { QMP?: unknown };
    const greetedAt = process.hrtime.bigint();
    expect(greeting.QMP).toBeDefined();
    c.send('{"execute":"qmp_capabilities"}{"execute":"query-memdev","id":1}');
    expect(await c.json(60000)).toEqual({ return: {} });
    const memdev = (await c.json(60000)) as { return: { id: string }[]; id: number };
    expect(memdev.id).toBe(1);
    expect(memdev.return.map((m) => m.id)).toEqual(Array.from({ length: N }, (_, i) => `f${i}`));
    expect(readyAt).toBeDefined();
    // Greeted while the objects were still coming back.
    expect(greetedAt < readyAt!).toBe(true);
    c.close();
  } finally {
    again.proc.kill('SIGTERM');
    await again.exited;
    await notify.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
