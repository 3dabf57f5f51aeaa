// Differential test of the human monitor, query-status and the backends' `<id>[0]`
// memory-region children against QEMU 7.2: the same human-monitor-command lines and QMP
// requests go to both, on objects created the same way. Outputs must be equal byte for byte,
// except where hostmemd differs by design (README "Where hostmemd differs from QEMU"):
// info version's micro and package, info memdev's order (QEMU's follows a hash table), the
// help texts (hostmemd's own words; names and synopses are compared), and info qom-tree
// without a path (QEMU shows /machine, which hostmemd does not have).
import { RawQmpClient } from '../../helpers/qmp-client';
import { qemuAvailable, qemuAndHostmemd, announceSkip } from '../../helpers/qemu';

/** Lines whose output must be identical. */
const SAME: string[] = [
  'object_add memory-backend-ram,id=r1,size=1M',
  'object_add memory-backend-memfd,id=m1,size=2M,share=on,dump=off',
  'object_add memory-backend-ram,id=r2,size=4096,host-nodes.0=0,policy=bind,merge=no',
  'object_add {"qom-type":"memory-backend-ram","id":"j1","size":8192}',
  'object_add memory-backend-ram,id=c1,size=4096,x-use-canonical-path-for-ramblock-id=on',
  'object_add memory-backend-file,id=f1,size=4096,mem-path=/nonexistent/x',
  'object_add memory-backend-memfd,id=m3,size=4096,hugetlb=on,hugetlbsize=x',
  'info status',
  'info qom-tree /objects/c1',
  'qom-list c1',
  'qom-get m1 seal',
  'qom-set m1 seal off',
  'qom-set m1 hugetlb on',
  'info qom-tree /objects',
  'info qom-tree objects',
  'info qom-tree /objects/r1',
  'info qom-tree r1[0]',
  'info qom-tree /nosuch',
  // object_add errors
  'object_add',
  'object_add memory-backend-ram',
  'object_add memory-backend-ram,id=r1',
  'object_add memory-backend-ram,id=r1,size=1M',
  'object_add memory-backend-ram,id=x1,size=1x',
  'object_add memory-backend-ram,id=x1,size=1M,dump=maybe',
  'object_add memory-backend-ram,id=x1,size=1M,foo=1',
  'object_add memory-backend-ram,id=x1,size=1M,prealloc-threads=x',
  'object_add memory-backend-ram,id=x1,size=1M,prealloc-threads=-1',
  'object_add memory-backend-ram,id=x1,size=1M,prealloc-threads=99999999999999999999',
  'object_add memory-backend-ram,id=x1,size=1M,host-nodes=0',
  'object_add memory-backend-ram,id=x1,size=4096,host-nodes.1=0',
  'object_add memory-backend-ram,id=x1,size=4096,a.b=1',
  'object_add memory-backend-ram,id=x1,size=1M,policy=foo',
  'object_add nosuch,id=x1',
  'object_add memory-backend,id=x1,size=1M',
  'object_add id=x1,size=1M',
  'object_add memory-backend-ram,id=1x,size=1M',
  'object_add memory-backend-ram,id=,size=4096',
  'object_add memory-backend-ram,id=x1,size=1M,dump',
  'object_add memory-backend-ram,,id=x1',
  'object_add memory-backend-ram,id=x1,size=0',
  'object_add memory-backend-ram,id=x1,size=1M x',
  'object_add {bad',
  'object_add memory-backend-ram,id=x2,size=4096,size=8192,prealloc-threads=0x10',
  'object_add qom-type=memory-backend-ram,id=x3,size=1.5k',
  'object_add id=x4,qom-type=memory-backend-ram,size=4096,prealloc-threads=010',
  'qom-get x2 size',
  'qom-get x2 prealloc-threads',
  'qom-get x4 prealloc-threads',
  'qom-get x3 size',
  // object_del
  'object_del',
  'object_del zz',
  'object_del x2 x',
  'object_del x2',
  'object_del x2',
  // qom-list
  'qom-list',
  'qom-list /objects/r1',
  'qom-list r1',
  'qom-list /objects/r1/r1[0]',
  'qom-list /nosuch',
  'qom-list a b',
  // qom-get
  'qom-get /objects/r1 size',
  'qom-get r1 host-nodes',
  'qom-get r2 host-nodes',
  'qom-get r1 policy',
  'qom-get r1 type',
  'qom-get r1 prealloc-context',
  'qom-get r1 nosuch',
  'qom-get /nosuch size',
  'qom-get r1',
  'qom-get /objects r1',
  'qom-get r1 r1[0]',
  'qom-get r1[0] size',
  'qom-get /objects/m1/m1[0] size',
  'qom-get r1[0] type',
  'qom-get r1[0] container',
  'qom-get "r1" "dump"',
  'qom-get r1 x y',
  // qom-set
  'qom-set r1 dump off',
  'qom-get r1 dump',
  'qom-set r1 dump true',
  'qom-set r1 dump maybe',
  'qom-set r1 dump true extra',
  'qom-set r1 size 2M',
  'qom-set r1 prealloc-threads 3',
  'qom-get r1 prealloc-threads',
  'qom-set r1 prealloc-threads 0x4',
  'qom-set r1 prealloc-threads x',
  'qom-set r1 prealloc-threads -1',
  'qom-set r1 prealloc-threads 2k',
  'qom-set r1 policy foo',
  'qom-set r1 reserve off',
  'qom-set r1 host-nodes 0-2',
  'qom-get r1 host-nodes',
  'qom-set r1 host-nodes x',
  'qom-set r1 host-nodes 2-1',
  'qom-set r1 nosuch 1',
  'qom-set /nosuch dump 1',
  'qom-set /objects r1 1',
  'qom-set r1 r1[0] 1',
  'qom-set r1[0] size 1',
  'qom-set r1 prealloc-context x',
  'qom-set -j r1 prealloc-threads 4',
  'qom-get r1 prealloc-threads',
  'qom-set -j r1 dump 5',
  'qom-set -j r1 dump {',
  'qom-set -j /nosuch dump {',
  'qom-set -j /nosuch dump true',
  'qom-set /nosuch dump {',
  'qom-set -x r1 dump on',
  'qom-set r1 dump',
  // the monitor itself
  '',
  '   ',
  'foo',
  '  foo bar',
  'info foo',
  'info status x',
  '  info   status x',
  'info version x',
  'help nosuch',
  'help info nosuch',
];

/** QMP requests whose replies must be identical (query-status and the [0] children). */
const QMP: [string, Record<string, unknown>?][] = [
  ['query-status'],
  ['qom-list', { path: '/objects/r1' }],
  ['qom-list', { path: '/objects/r1/r1[0]' }],
  ['qom-list', { path: 'm1[0]' }],
  ['qom-get', { path: '/objects/r1/r1[0]', property: 'size' }],
  ['qom-get', { path: '/objects/m1/m1[0]', property: 'size' }],
  ['qom-get', { path: '/objects/r1', property: 'r1[0]' }],
  ['qom-get', { path: '/objects/c1/\\x2fobjects\\x2fc1[0]', property: 'size' }],
  ['qom-get', { path: '/objects/c1', property: '\\x2fobjects\\x2fc1[0]' }],
  ['qom-get', { path: 'r1[0]', property: 'type' }],
  ['qom-get', { path: 'r1[0]', property: 'container' }],
  ['qom-get', { path: 'r1[0]', property: 'addr' }],
  ['qom-get', { path: 'r1[0]', property: 'priority' }],
  ['qom-set', { path: '/objects/r1/r1[0]', property: 'size', value: 5 }],
  ['qom-set', { path: 'r1[0]', property: 'container', value: '' }],
  ['qom-set', { path: '/objects/r1', property: 'r1[0]', value: 1 }],
  ['human-monitor-command', { 'command-line': 'info status', 'cpu-index': 0 }],
  ['human-monitor-command', {}],
];

/** QEMU's `help` line of a command: its name and synopsis (the text after ` -- ` is not
 *  compared: hostmemd's help is in its own words). */
function synopses(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const m = /^(\S+(?: \S+)?) (.*?) -- /.exec(line);
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

const haveQemu = qemuAvailable();
if (!haveQemu) announceSkip('differential HMP tests against QEMU 7.2', 'qemu-system-x86_64 is not installed');
(haveQemu ? describe : describe.skip)('differential: human monitor, query-status, memory-region children vs QEMU 7.2', () => {
  // QEMU opens any mem-path; hostmemd only beneath --mem-path-allow: allowing the missing
  // directory gives both the same failure (ENOENT).
  const both = qemuAndHostmemd(['--mem-path-allow', '/nonexistent']);
  let qc: RawQmpClient;
  let hc: RawQmpClient;
  beforeAll(async () => {
    [qc, hc] = [await RawQmpClient.negotiated(both.qemu.sock), await RawQmpClient.negotiated(both.hostmemd.sock)];
  });
  afterAll(() => {
    qc?.close();
    hc?.close();
  });
  const hmp = async (c: RawQmpClient, line: string): Promise<unknown> => c.execute('human-monitor-command', { 'command-line': line });
  const out = async (c: RawQmpClient, line: string): Promise<string> => (await hmp(c, line) as { return: string }).return;

  test('HMP output is the same, line by line', async () => {
    const mismatches: string[] = [];
    for (const line of SAME) {
      const [theirs, ours] = [await hmp(qc, line), await hmp(hc, line)];
      if (JSON.stringify(theirs) !== JSON.stringify(ours)) mismatches.push(`${JSON.stringify(line)}\n  qemu:     ${JSON.stringify(theirs)}\n  hostmemd: ${JSON.stringify(ours)}`);
    }
    expect(mismatches).toEqual([]);
  });

  test('query-status and the <id>[0] memory-region children answer the same', async () => {
    const mismatches: string[] = [];
    for (const [cmd, args] of QMP) {
      const [theirs, ours] = [await qc.execute(cmd, args), await hc.execute(cmd, args)];
      if (JSON.stringify(theirs) !== JSON.stringify(ours)) mismatches.push(`${cmd} ${JSON.stringify(args)}\n  qemu:     ${JSON.stringify(theirs)}\n  hostmemd: ${JSON.stringify(ours)}`);
    }
    expect(mismatches).toEqual([]);
  });

  test('info memdev: the same block per backend (QEMU orders them by hash)', async () => {
    const blocks = (t: string): string[] => {
      expect(t.endsWith('\r\n\r\n')).toBe(true);
      return t.slice(0, -2).split(/(?=memory backend: )/).sort();
    };
    const [theirs, ours] = [await out(qc, 'info memdev'), await out(hc, 'info memdev')];
    expect(blocks(ours)).toEqual(blocks(theirs));
    expect(blocks(ours).length).toBeGreaterThanOrEqual(4);
  });

  test('info version: QEMU level major.minor and the package, in QEMU\'s format', async () => {
    const [theirs, ours] = [await out(qc, 'info version'), await out(hc, 'info version')];
    const re = /^(\d+)\.(\d+)\.(\d+)(.+)\r\n$/;
    expect(theirs).toMatch(re);
    const [t, o] = [re.exec(theirs)!, re.exec(ours)!];
    expect(o.slice(1, 3)).toEqual(t.slice(1, 3));
    expect(o[4]).toMatch(/^hostmemd \d+\.\d+\.\d+$/);
  });

  test('help: every hostmemd command and info sub-command is QEMU\'s, with QEMU\'s synopsis', async () => {
    for (const line of ['help', 'info', 'help info']) {
      const [theirs, ours] = [synopses(await out(qc, line)), synopses(await out(hc, line))];
      expect(ours.size).toBeGreaterThan(3);
      for (const [name, params] of ours) {
        if (name === 'info cpr') continue; // hostmemd's own
        expect([name, theirs.get(name)]).toEqual([name, params]);
      }
    }
    for (const line of ['help qom-get', 'help object_add', 'help info memdev', 'help help']) {
      expect([...synopses(await out(hc, line))]).toEqual([...synopses(await out(qc, line))]);
    }
  });

  test('object_add help lists the creatable memory backends; TYPE,help their options', async () => {
    const types = await out(hc, 'object_add help');
    expect(types.startsWith('List of user creatable objects:\r\n')).toBe(true);
    const theirs = await out(qc, 'object_add help');
    for (const t of ['memory-backend-ram', 'memory-backend-memfd', 'memory-backend-file']) {
      expect(types).toContain(`\r\n  ${t}\r\n`);
      expect(theirs).toContain(`\r\n  ${t}\r\n`);
    }
    const names = (t: string): string[] => t.split('\r\n').slice(1).map((l) => /^ {2}([^=]+)=/.exec(l)?.[1]).filter((n): n is string => n !== undefined);
    const [q, h] = [await out(qc, 'object_add memory-backend-ram,help'), await out(hc, 'object_add memory-backend-ram,help')];
    expect(h.split('\r\n')[0]).toBe(q.split('\r\n')[0]);
    // hostmemd's options are QEMU's (prealloc-context included).
    expect(names(h)).toEqual(names(q));
  });

  test('info qom-tree without a path: the /objects part is QEMU\'s', async () => {
    const [theirs, ours] = [await out(qc, 'info qom-tree /'), await out(hc, 'info qom-tree')];
    const objectsPart = (t: string): string => t.slice(t.indexOf('  /objects (container)'));
    expect(ours.startsWith('/ (container)\r\n')).toBe(true);
    expect(objectsPart(ours)).toBe(objectsPart(theirs));
  });
});
