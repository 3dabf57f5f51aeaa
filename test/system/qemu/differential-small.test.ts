// Differential test of the small differences from QEMU 7.2 reported in issue 13 that hostmemd
// now answers like QEMU: file backends of any size (rounded up to pages), readonly=on with a
// directory as mem-path, hugetlbsize checked with hugetlb off, qom-set's type error before
// "cannot change", qom-list ''. Each request goes to both; errors must match in class and
// text, results in value. mem-path names a directory of each side's own ($DIR), which the
// replies name back as $DIR.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RawQmpClient } from '../../helpers/qmp-client';
import { tmpDir } from '../../helpers/daemon';
import { qemuAvailable, qemuAndHostmemd, announceSkip } from '../../helpers/qemu';

type Req = [string, Record<string, unknown>?];

const CASES: Record<string, Req[]> = {
  'memory-backend-file of size 1 and 1,000,000 (rounded up to pages)': [
    ['object-add', { 'qom-type': 'memory-backend-file', id: 's1', size: 1, 'mem-path': '$DIR/s1' }],
    ['object-add', { 'qom-type': 'memory-backend-file', id: 's2', size: 1000000, 'mem-path': '$DIR/s2' }],
    ['object-add', { 'qom-type': 'memory-backend-file', id: 's3', size: 5000, 'mem-path': '$DIR', share: true }],
    ['qom-get', { path: '/objects/s1', property: 'size' }],
    ['qom-get', { path: '/objects/s2', property: 'size' }],
    ['qom-get', { path: '/objects/s3', property: 'size' }],
    ['object-del', { id: 's1' }],
    ['object-del', { id: 's2' }],
    ['object-del', { id: 's3' }],
  ],
  'readonly=on with a directory as mem-path': [
    ['object-add', { 'qom-type': 'memory-backend-file', id: 'd1', size: 4096, 'mem-path': '$DIR', readonly: true }],
    ['object-add', { 'qom-type': 'memory-backend-file', id: 'd2', size: 4096, 'mem-path': '$DIR', readonly: true, share: true }],
    ['qom-list', { path: '/objects' }],
  ],
  'hugetlbsize checked whether or not hugetlb is on': [
    ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'h1', size: 4096, hugetlbsize: 6 }],
    ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'h2', size: 4096, hugetlbsize: 3000000 }],
    ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'h3', size: 4096, hugetlbsize: 3 }],
    ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'h4', size: 4096, hugetlbsize: 2097152 }],
    ['object-del', { id: 'h3' }],
    ['object-del', { id: 'h4' }],
  ],
  "qom-set on a live backend: the value's type is checked first": [
    ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'm1', size: 4096 }],
    ['object-add', { 'qom-type': 'memory-backend-file', id: 'f1', size: 4096, 'mem-path': '$DIR/f1' }],
    ['qom-set', { path: '/objects/m1', property: 'share', value: 'x' }],
    ['qom-set', { path: '/objects/m1', property: 'share', value: null }],
    ['qom-set', { path: '/objects/m1', property: 'share', value: true }],
    ['qom-set', { path: '/objects/m1', property: 'reserve', value: 1 }],
    ['qom-set', { path: '/objects/m1', property: 'reserve', value: true }],
    ['qom-set', { path: '/objects/f1', property: 'share', value: 'x' }],
    ['qom-set', { path: '/objects/f1', property: 'mem-path', value: 1 }],
    ['qom-set', { path: '/objects/f1', property: 'mem-path', value: '$DIR/other' }],
    ['qom-set', { path: '/objects/f1', property: 'readonly', value: 'x' }],
    ['qom-set', { path: '/objects/f1', property: 'readonly', value: true }],
    ['qom-set', { path: '/objects/f1', property: 'pmem', value: 'x' }],
    ['qom-set', { path: '/objects/f1', property: 'align', value: 'x' }],
    ['object-del', { id: 'm1' }],
    ['object-del', { id: 'f1' }],
  ],
  "qom-list and qom-get of the empty path": [
    ['qom-list', { path: '' }],
    ['qom-get', { path: '', property: 'type' }],
    ['qom-set', { path: '', property: 'type', value: 'x' }],
  ],
};

/** Sends each request in turn and collects the replies (events skipped), with `dir` put in
 *  for $DIR in the requests and taken out again in the replies. */
async function run(sock: string, reqs: Req[], dir: string): Promise<unknown[]> {
  const c = await RawQmpClient.negotiated(sock);
  try {
    const out: unknown[] = [];
    for (const [cmd, args] of reqs) {
      const text = args === undefined ? undefined : (JSON.parse(JSON.stringify(args).split('$DIR').join(dir)) as unknown);
      const r = await c.execute(cmd, text);
      out.push(JSON.parse(JSON.stringify(r).split(dir).join('$DIR')));
    }
    return out;
  } finally {
    c.close();
  }
}

const haveQemu = qemuAvailable();
if (!haveQemu) announceSkip('differential tests (small differences) against QEMU 7.2', 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
const maybe = haveQemu ? describe : describe.skip;

maybe('differential: small differences from QEMU 7.2 (issue 13)', () => {
  const dirs = { qemu: tmpDir('hostmemd-diff-q-'), ours: tmpDir('hostmemd-diff-h-') };
  const both = qemuAndHostmemd(['--mem-path-allow', dirs.ours]);
  afterAll(() => {
    for (const d of Object.values(dirs)) fs.rmSync(d, { recursive: true, force: true });
  });

  test.each(Object.keys(CASES))('%s: answered like QEMU', async (name) => {
    const theirs = await run(both.qemu.sock, CASES[name], dirs.qemu);
    const ours = await run(both.hostmemd.sock, CASES[name], dirs.ours);
    expect(ours).toEqual(theirs);
  });

  test('a file backend of 1,000,000 bytes makes a file of whole pages, as QEMU does', async () => {
    const c = await RawQmpClient.negotiated(both.hostmemd.sock);
    try {
      const file = path.join(dirs.ours, 'p1');
      expect(await c.execute('object-add', { 'qom-type': 'memory-backend-file', id: 'p1', size: 1000000, 'mem-path': file })).toEqual({ return: {} });
      expect(fs.statSync(file).size).toBe(Math.ceil(1000000 / 4096) * 4096);
      expect(await c.execute('object-del', { id: 'p1' })).toEqual({ return: {} });
    } finally {
      c.close();
    }
  });
});
