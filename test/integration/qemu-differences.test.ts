// The small differences from QEMU 7.2 that hostmemd keeps on purpose (README, "Where hostmemd
// differs from QEMU"), each as a user meets it: ids longer than the journal's file names allow
// are refused before anything is made, and device files as mem-path (/dev/zero, /dev/null)
// are refused by the mem-path confinement. Nothing is left behind by either refusal.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startWithClient, stopWithClient, InProcess } from '../helpers/daemon';
import { RawQmpClient } from '../helpers/qmp-client';
import { fdCount } from '../helpers/proc';

let f: { d?: InProcess; c?: RawQmpClient } = {};
beforeEach(async () => {
  f = await startWithClient(['--accel', 'none', '--mem-path-allow', '/dev']);
});
afterEach(async () => stopWithClient(f));

const objects = async (): Promise<string[]> =>
  ((await f.c!.execute('qom-list', { path: '/objects' })).return as { name: string; type: string }[]).filter((p) => p.type.startsWith('child<')).map((p) => p.name);

test('ids up to 246 characters are accepted; a longer one is refused and leaves nothing', async () => {
  const c = f.c!;
  const ok = 'a'.repeat(246);
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: ok, size: 4096 })).toEqual({ return: {} });
  const fds = fdCount();
  for (const id of ['b'.repeat(247), 'c'.repeat(300)]) {
    const r = await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id, size: 4096 });
    expect(r).toEqual({ error: { class: 'GenericError', desc: `cannot record object '${id}' in the state journal: File name too long` } });
  }
  expect(await objects()).toEqual([ok]);
  expect(fdCount()).toBe(fds);
  expect(fs.readdirSync(path.join(f.d!.dir, 'objects')).filter((n) => !n.startsWith('a'))).toEqual([]);
  expect(await c.execute('object-del', { id: ok })).toEqual({ return: {} });
});

test('/dev/zero and /dev/null as mem-path are refused, even inside an allowed directory', async () => {
  for (const p of ['/dev/zero', '/dev/null']) {
    for (const share of [false, true]) {
      const r = await f.c!.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': p, share });
      expect(r).toEqual({ error: { class: 'GenericError', desc: `mem-path '${p}' is not a regular file or directory inside an allowed directory (--mem-path-allow)` } });
    }
  }
  expect(await objects()).toEqual([]);
});
