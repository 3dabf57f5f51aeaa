// The Dockerfile, checked without a Docker engine (none runs here): every COPY source exists,
// the image runs as a non-root user, and the runtime stage's file set — laid out as the image
// lays it out, with only the packages `npm ci --omit=dev` installs reachable — starts the
// daemon with the image's ENTRYPOINT and CMD and answers QMP.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { ROOT, killAndWait, tmpDir, waitConnectable, waitForFile } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';

const text = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
const stages = text.split(/^FROM /m).slice(1);
const runtime = stages[stages.length - 1];
const jsonArray = (key: string): string[] => JSON.parse(new RegExp(`^${key} (\\[.*\\])$`, 'm').exec(runtime)![1]) as string[];

test('multi-stage on Node 20 / Debian 12; every COPY from the context exists; non-root user', () => {
  expect(stages.length).toBe(2);
  for (const s of stages) expect(s).toMatch(/^node:20-bookworm-slim/);
  for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
    for (const src of l.split(/\s+/).slice(1, -1)) {
      // Sources not in git (dist, web/dist) come only from the build stage.
      expect([src, fs.existsSync(path.join(ROOT, src))]).toEqual([src, true]);
    }
  }
  expect(runtime).toMatch(/^USER hostmemd$/m);
  expect(runtime).toMatch(/^RUN npm ci --omit=dev/m);
  expect(jsonArray('ENTRYPOINT')).toEqual(['node', '/opt/hostmemd/bin/hostmemd-supervise']);
  // .dockerignore keeps host builds out, so the image builds its own.
  const ignore = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n');
  for (const p of ['node_modules', 'dist', 'web/dist', 'run']) expect(ignore).toContain(p);
});

test("the runtime stage's files, with production dependencies only, start the daemon with the image's CMD", async () => {
  const image = tmpDir('hostmemd-image-');
  const copy = (rel: string): void => fs.cpSync(path.join(ROOT, rel), path.join(image, rel), { recursive: true });
  for (const rel of ['package.json', 'package-lock.json', 'bin', 'qapi', 'dist', 'web/dist']) copy(rel);
  // Only the packages `npm ci --omit=dev` would install: production dependencies and theirs.
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  for (const [p, info] of Object.entries(lock.packages)) {
    if (!p.startsWith('node_modules/') || info.dev) continue;
    const to = path.join(image, p);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    if (!fs.existsSync(to)) fs.symlinkSync(path.join(ROOT, p), to);
  }
  const cmd = jsonArray('CMD').map((a) => a.replace('/var/lib/hostmemd', path.join(image, 'state')).replace('/run/hostmemd', image));
  const sock = path.join(image, 'qmp.sock');
  const entry = jsonArray('ENTRYPOINT')[1].replace('/opt/hostmemd', image);
  const proc = spawn(process.execPath, [entry, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_ENV: 'production' } });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await waitForFile(sock, proc, () => err);
    await waitConnectable(sock);
    const c = await RawQmpClient.negotiated(sock);
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1 << 20 })).toEqual({ return: {} });
    expect(await c.execute('query-qmp-schema')).toHaveProperty('return');
    c.close();
  } finally {
    await killAndWait(proc, 'SIGTERM');
    fs.rmSync(image, { recursive: true, force: true });
  }
  expect(err).not.toMatch(/Cannot find module/);
});
