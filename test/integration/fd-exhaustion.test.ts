// Running out of file descriptors: with a hard limit of 64 open files, object-adds eventually
// fail with a clear GenericError (EMFILE), nothing is left half-made, the daemon keeps serving,
// and deleting everything brings the fd count back.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { RawQmpClient } from '../helpers/qmp-client';
import { ROOT, killAndWait, tmpDir, waitConnectable } from '../helpers/daemon';

test('EMFILE on object-add is a clean GenericError and the daemon lives on', async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'qmp.sock');
  const proc = spawn('bash', ['-c', `ulimit -n 64 && exec "${process.execPath}" "${path.join(ROOT, 'bin', 'hostmemd')}" --state-dir "${dir}" --accel none`], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 500 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
    await waitConnectable(sock);
    const c = await RawQmpClient.negotiated(sock);
    // The journal's log is opened at the first change and stays open: made before the count.
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'warm', size: 1 << 20 })).toEqual({ return: {} });
    expect(await c.execute('object-del', { id: 'warm' })).toEqual({ return: {} });
    const fdsAtStart = fs.readdirSync(`/proc/${proc.pid}/fd`).length;
    const made: string[] = [];
    let failure: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !failure; i++) {
      const r = await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: `f${i}`, size: 1 << 20 });
      if ('error' in r) failure = r;
      else made.push(`f${i}`);
    }
    expect(made.length).toBeGreaterThan(10);
    // The first open(2) to fail is the memfd's or the journal's temp file: either way a clear
    // error and nothing left behind.
    expect(failure).toEqual({ error: { class: 'GenericError', desc: expect.stringMatching(/^(failed to create memfd with flags 0x3: Too many open files|cannot record object 'f\d+' in the state journal: Too many open files)$/) } });
    expect(((await c.execute('query-memdev')).return as unknown[]).length).toBe(made.length);
    for (const id of made) expect(await c.execute('object-del', { id })).toEqual({ return: {} });
    expect(fs.readdirSync(`/proc/${proc.pid}/fd`).length).toBe(fdsAtStart);
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'again', size: 1 << 20 })).toEqual({ return: {} });
    c.close();
  } finally {
    await killAndWait(proc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the daemon raises its open-file soft limit to the hard limit at start', async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'qmp.sock');
  const proc = spawn('bash', ['-c', `ulimit -S -n 256 && exec "${process.execPath}" "${path.join(ROOT, 'bin', 'hostmemd')}" --state-dir "${dir}" --accel none`], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 500 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 20));
    await waitConnectable(sock);
    const line = fs.readFileSync(`/proc/${proc.pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files')) as string;
    const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/);
    expect(soft).toBe(hard);
    expect(soft).not.toBe('256');
  } finally {
    await killAndWait(proc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
