// Differential test of the object commands against QEMU 7.2: the same object-add/object-del,
// query-memdev and qom-list/get/set requests go to both; errors must match in class and text,
// and results must match in value (qom-list as a set, without the guest-memfd property that
// hostmemd's memfd backend has beyond QEMU 7.2; both list the `<id>[0]` memory-region child).
import { RawQmpClient } from '../../helpers/qmp-client';
import { qemuAvailable, qemuAndHostmemd, announceSkip } from '../../helpers/qemu';

const REQUESTS: [string, Record<string, unknown>?][] = [
  ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'm1', size: 1048576 }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r1', size: 2097152, merge: false, dump: false }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r2', size: 4096, share: true, prealloc: true }],
  ['query-memdev'],
  ['qom-list', { path: '/objects' }],
  ['qom-list', { path: 'objects' }],
  ['qom-list', { path: '/objects/r1' }],
  ['qom-list', { path: '/nosuch' }],
  ['qom-get', { path: '/objects/m1', property: 'size' }],
  ['qom-get', { path: 'm1', property: 'share' }],
  ['qom-get', { path: 'r1', property: 'host-nodes' }],
  ['qom-get', { path: 'r1', property: 'policy' }],
  ['qom-get', { path: 'r1', property: 'type' }],
  ['qom-get', { path: 'r1', property: 'prealloc-context' }],
  ['qom-get', { path: '/objects', property: 'r1' }],
  ['qom-get', { path: 'r1', property: 'nosuch' }],
  ['qom-get', { path: '/nosuch', property: 'size' }],
  ['qom-set', { path: 'm1', property: 'size', value: 4096 }],
  ['qom-set', { path: 'm1', property: 'share', value: false }],
  ['qom-set', { path: 'm1', property: 'type', value: 'x' }],
  ['qom-set', { path: 'm1', property: 'merge', value: 'x' }],
  ['qom-set', { path: 'm1', property: 'prealloc-threads', value: 0 }],
  ['qom-set', { path: 'm1', property: 'dump', value: false }],
  ['qom-get', { path: 'm1', property: 'dump' }],
  ['qom-set', { path: 'm1', property: 'value' }],
  ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'm1', size: 1048576 }],
  ['object-add', { 'qom-type': 'memory-backend-memfd', id: '1bad', size: 1048576 }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', size: 0 }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', size: 4096, 'prealloc-threads': 0 }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', size: 4096, prealloc: true, reserve: false }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', size: 4096, 'host-nodes': [0] }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', size: 4096, policy: 'bind' }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', size: 4096, policy: 'bind', 'host-nodes': [5] }],
  ['object-add', { 'qom-type': 'memory-backend-memfd', id: 'r0', size: 4096, hugetlbsize: 0 }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', size: '1M' }],
  ['object-add', { 'qom-type': 'memory-backend-ram', id: 'r0', sized: 1 }],
  ['object-add', { 'qom-type': 'memory-backend', id: 'r0', size: 4096 }],
  ['object-add', { id: 'r0', size: 4096 }],
  ['object-add', { 'qom-type': 'memory-backend-ram', size: 4096 }],
  ['object-add', { 'qom-type': 'memory-backend-file', id: 'f0', size: 4096 }],
  ['object-add', { 'qom-type': 'memory-backend-file', id: 'f0', size: 4096, 'mem-path': '/nonexistent/x' }],
  ['object-del', { id: 'zz' }],
  ['object-del', { ida: 'zz' }],
  ['object-del', { id: 'm1' }],
  ['object-del', { id: 'm1' }],
  ['object-del', { id: 'r1' }],
  ['object-del', { id: 'r2' }],
  ['query-memdev'],
];

/** Order-insensitive comparison form: arrays of objects are sorted by their JSON. */
function canon(v: unknown, cmd: string): unknown {
  if (Array.isArray(v)) {
    let items = v.map((x) => canon(x, cmd));
    if (cmd === 'qom-list') items = items.filter((x) => !/guest-memfd/.test(JSON.stringify(x)));
    return items.map((x) => JSON.stringify(x)).sort();
  }
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) o[k] = canon((v as Record<string, unknown>)[k], cmd);
    return o;
  }
  return v;
}

const haveQemu = qemuAvailable();
if (!haveQemu) announceSkip('differential QOM tests against QEMU 7.2', 'qemu-system-x86_64 is not installed');
(haveQemu ? describe : describe.skip)('differential: object commands vs QEMU 7.2', () => {
  // QEMU opens any mem-path; hostmemd only beneath --mem-path-allow: allowing the missing
  // directory of the request above gives both the same failure (ENOENT).
  const both = qemuAndHostmemd(['--mem-path-allow', '/nonexistent']);

  test('every reply agrees', async () => {
    const [qc, hc] = [await RawQmpClient.negotiated(both.qemu.sock), await RawQmpClient.negotiated(both.hostmemd.sock)];
    const mismatches: string[] = [];
    for (const [cmd, args] of REQUESTS) {
      const [theirs, ours] = [await qc.execute(cmd, args), await hc.execute(cmd, args)];
      const [t, o] = [canon(theirs, cmd), canon(ours, cmd)];
      if (JSON.stringify(t) !== JSON.stringify(o)) mismatches.push(`${cmd} ${JSON.stringify(args)}\n  qemu:     ${JSON.stringify(theirs)}\n  hostmemd: ${JSON.stringify(ours)}`);
    }
    qc.close();
    hc.close();
    expect(mismatches).toEqual([]);
  });
});
