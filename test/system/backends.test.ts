// Memory backends on real syscalls, checked by their effects in /proc/self (the daemon runs
// in this process): mapping size and sharing, residency after prealloc, VmFlags for dump and
// merge, NUMA binding, release on object-del, no fd or mapping leaked over many cycles, and
// QEMU's error texts for every refused configuration.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RawQmpClient } from '../helpers/qmp-client';
import { LOG_NAME } from '../../src/journal/journal';
import { startWithClient, stopWithClient, InProcess, tmpDir } from '../helpers/daemon';
import { smaps, findMappings, numaPolicy, fdCount, backendMapsCount as mapsCount, fdTargets } from '../helpers/proc';

const MiB = 1n << 20n;
let d: InProcess;
let c: RawQmpClient;
/** The file backends' directory, allowed for mem-path (--mem-path-allow). */
const ALLOWED = tmpDir('hostmemd-allowed-');

// No backend-bytes cap: the refusals below are the kernel's and QEMU's texts (the default cap
// is tested in test/unit/daemon/backend-cap.test.ts, explicit caps in test/integration/caps.test.ts).
beforeAll(async () => {
  ({ d, c } = await startWithClient(['--mem-path-allow', ALLOWED, '--max-backend-bytes', 'none']));
  // The journal's log is opened at the first change and stays open: before any fd count.
  expect(await c.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'warm', size: 1048576 })).toEqual({ return: {} });
  expect(await c.execute('object-del', { id: 'warm' })).toEqual({ return: {} });
});
afterAll(async () => {
  await stopWithClient({ d, c });
  fs.rmSync(ALLOWED, { recursive: true, force: true });
});

/** Resolves once the journal's checkpoint has emptied its log. It runs 1 s after the last
 *  change and opens entry files meanwhile, so the fd counts below start after it (bounded). */
async function journalCheckpointed(): Promise<void> {
  const log = path.join(d.dir, LOG_NAME);
  const deadline = Date.now() + 5000;
  while (fs.existsSync(log) && fs.statSync(log).size > 0) {
    if (Date.now() > deadline) throw new Error('the journal did not checkpoint within 5 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function add(args: Record<string, unknown>): Promise<Record<string, unknown>> {
  return c.execute('object-add', args);
}
async function del(id: string): Promise<Record<string, unknown>> {
  return c.execute('object-del', { id });
}
async function expectError(args: Record<string, unknown>, desc: string, cmd = 'object-add'): Promise<void> {
  expect(await c.execute(cmd, args)).toEqual({ error: { class: 'GenericError', desc } });
}

test('memfd: shared mapping of the right size backed by a memfd; object-del removes mapping and fd', async () => {
  const size = 3n * MiB;
  const fdsBefore = fdCount();
  expect(await add({ 'qom-type': 'memory-backend-memfd', id: 'mfd1', size: Number(size) })).toEqual({ return: {} });
  const [m] = findMappings(size, '/memfd:memory-backend-memfd (deleted)');
  expect(m).toBeDefined();
  expect(m.perms).toBe('rw-s');
  expect(fdCount()).toBe(fdsBefore + 1);
  expect(await c.execute('qom-get', { path: '/objects/mfd1', property: 'size' })).toEqual({ return: Number(size) });
  expect(await del('mfd1')).toEqual({ return: {} });
  expect(findMappings(size, '/memfd:memory-backend-memfd (deleted)')).toHaveLength(0);
  expect(fdCount()).toBe(fdsBefore);
});

test('ram: private anonymous by default, memfd-backed shared with share=on', async () => {
  const size = 5n * MiB;
  await add({ 'qom-type': 'memory-backend-ram', id: 'ram1', size: Number(size) });
  const priv = findMappings(size).filter((m) => m.path === '' && m.perms === 'rw-p');
  expect(priv.length).toBeGreaterThanOrEqual(1);
  await add({ 'qom-type': 'memory-backend-ram', id: 'ram2', size: Number(size), share: true });
  const [shared] = findMappings(size, '/memfd:ram2 (deleted)');
  expect(shared.perms).toBe('rw-s');
  await del('ram1');
  await del('ram2');
  expect(findMappings(size, '/memfd:ram2 (deleted)')).toHaveLength(0);
});

test('prealloc makes the memory resident; bytes written through it read back', async () => {
  const size = 64n * MiB;
  await add({ 'qom-type': 'memory-backend-memfd', id: 'pre', size: Number(size), prealloc: true, 'prealloc-threads': 2 });
  const [m] = findMappings(size, '/memfd:memory-backend-memfd (deleted)');
  expect(m.rssKb * 1024).toBe(Number(size));
  expect(await c.execute('query-memdev')).toMatchObject({ return: expect.arrayContaining([expect.objectContaining({ id: 'pre', prealloc: true, share: true })]) });
  await del('pre');
});

test('prealloc can be switched on later with qom-set', async () => {
  const size = 6n * MiB;
  await add({ 'qom-type': 'memory-backend-memfd', id: 'late', size: Number(size) });
  expect(findMappings(size, /memfd/)[0].rssKb).toBe(0);
  expect(await c.execute('qom-set', { path: 'late', property: 'prealloc', value: true })).toEqual({ return: {} });
  expect(findMappings(size, /memfd/)[0].rssKb * 1024).toBe(Number(size));
  expect(await c.execute('qom-get', { path: 'late', property: 'prealloc' })).toEqual({ return: true });
  await del('late');
});

test('dump=off shows in smaps VmFlags and changes live', async () => {
  const size = 7n * MiB;
  await add({ 'qom-type': 'memory-backend-memfd', id: 'flags', size: Number(size), dump: false });
  let [m] = findMappings(size, /memfd/);
  expect(m.vmFlags).toContain('dd');
  expect(await c.execute('query-memdev')).toMatchObject({ return: [expect.objectContaining({ id: 'flags', dump: false })] });
  await c.execute('qom-set', { path: '/objects/flags', property: 'dump', value: true });
  [m] = findMappings(size, /memfd/);
  expect(m.vmFlags).not.toContain('dd');
  // query-memdev reflects the change (its per-backend encoding is cached until a property changes).
  expect(await c.execute('query-memdev')).toMatchObject({ return: [expect.objectContaining({ id: 'flags', dump: true })] });
  await del('flags');
});

test('merge marks private memory mergeable (mg) and can be turned off live', async () => {
  // KSM only merges private anonymous memory: on shared mappings merge has no effect, as in QEMU.
  const size = 13n * MiB;
  await add({ 'qom-type': 'memory-backend-ram', id: 'ksm', size: Number(size), merge: true });
  let [m] = findMappings(size).filter((x) => x.perms === 'rw-p' && x.vmFlags.includes('mg'));
  expect(m).toBeDefined();
  await c.execute('qom-set', { path: '/objects/ksm', property: 'merge', value: false });
  // Without the flag the kernel may merge the VMA with a neighbour: look it up by address.
  const start = m.start;
  [m] = smaps().filter((x) => x.start <= start && start < x.end);
  expect(m.vmFlags).not.toContain('mg');
  await del('ksm');
});

test('policy bind to host node 0 shows in numa_maps', async () => {
  const size = 9n * MiB;
  await add({ 'qom-type': 'memory-backend-ram', id: 'numa', size: Number(size), policy: 'bind', 'host-nodes': [0] });
  const [m] = findMappings(size).filter((x) => x.perms === 'rw-p');
  expect(numaPolicy(m.start)).toBe('bind:0');
  expect(await c.execute('qom-get', { path: 'numa', property: 'host-nodes' })).toEqual({ return: [0] });
  await del('numa');
});

test('shm and file backends map shared memory of the right size', async () => {
  const size = 11n * MiB;
  await add({ 'qom-type': 'memory-backend-shm', id: 'shm1', size: Number(size) });
  expect(findMappings(size, /^\/dev\/shm\/hostmemd-shm-[0-9a-f]{32} \(deleted\)$/)[0].perms).toBe('rw-s');
  await del('shm1');
  const dir = fs.mkdtempSync(path.join(ALLOWED, 'd-'));
  const file = path.join(dir, 'backing');
  await add({ 'qom-type': 'memory-backend-file', id: 'file1', size: Number(size), 'mem-path': file, share: true });
  expect(findMappings(size, file)[0].perms).toBe('rw-s');
  expect(fs.statSync(file).size).toBe(Number(size));
  await add({ 'qom-type': 'memory-backend-file', id: 'file2', size: Number(size), 'mem-path': dir });
  expect(findMappings(size, /hostmemd_back_mem\.file2\.[0-9a-f]+ \(deleted\)$/)).toHaveLength(1);
  await del('file1');
  await del('file2');
  expect(findMappings(size, file)).toHaveLength(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('names squatted in /dev/shm (any local user can create them) do not break memory-backend-shm', async () => {
  // The predictable names of old (`hostmemd-PID-shm-N`, for this very daemon's pid) and a spread
  // of others under the prefix, owned by us and left in place while the backends are created.
  const squatted: string[] = [];
  for (let i = 0; i < 256; i++) squatted.push(`/dev/shm/hostmemd-${process.pid}-shm-${i}`);
  for (let i = 0; i < 256; i++) squatted.push(`/dev/shm/hostmemd-shm-${i.toString(16).padStart(32, '0')}`);
  try {
    for (const f of squatted) fs.writeFileSync(f, '', { flag: 'wx', mode: 0o600 });
    for (let i = 0; i < 8; i++) expect(await add({ 'qom-type': 'memory-backend-shm', id: `sq${i}`, size: 1048576 })).toEqual({ return: {} });
    expect(findMappings(MiB, /^\/dev\/shm\/hostmemd-shm-[0-9a-f]{32} \(deleted\)$/).length).toBeGreaterThanOrEqual(8);
    // The squatters' files are untouched (never opened, truncated or unlinked by the daemon).
    for (const f of squatted) expect(fs.statSync(f).size).toBe(0);
    for (let i = 0; i < 8; i++) expect(await del(`sq${i}`)).toEqual({ return: {} });
  } finally {
    for (const f of squatted) fs.rmSync(f, { force: true });
  }
});

test('hundreds of add/del cycles leak no fd and no mapping', async () => {
  const types = ['memory-backend-memfd', 'memory-backend-ram', 'memory-backend-shm'];
  await journalCheckpointed();
  const fds = fdCount();
  const maps = mapsCount();
  for (let i = 0; i < 300; i++) {
    const qomType = types[i % types.length];
    expect(await add({ 'qom-type': qomType, id: `cyc${i}`, size: 1 << 20, share: true })).toEqual({ return: {} });
    expect(await del(`cyc${i}`)).toEqual({ return: {} });
  }
  expect(fdCount()).toBe(fds);
  expect(mapsCount()).toBe(maps);
});

describe('refusals with QEMU texts leave nothing behind', () => {
  // Refusals journal nothing: once the earlier tests' checkpoint is over, nothing else opens fds.
  beforeAll(journalCheckpointed);
  // mem-path names the test's own allowed directory (ALLOWED), or names inside it.
  const cases: [string, Record<string, unknown>, string][] = [
    ['bad id', { 'qom-type': 'memory-backend-ram', id: '1bad', size: 4096 }, "Parameter 'id' expects an identifier"],
    ['size 0', { 'qom-type': 'memory-backend-ram', id: 'z', size: 0 }, "property 'size' of memory-backend-ram doesn't take value '0'"],
    ['size 2^64-1', { 'qom-type': 'memory-backend-ram', id: 'z', size: -1 }, "property 'size' of memory-backend-ram doesn't take value '18446744073709551615'"],
    ['prealloc-threads 0', { 'qom-type': 'memory-backend-ram', id: 'z', size: 4096, 'prealloc-threads': 0 }, "property 'prealloc-threads' of memory-backend-ram doesn't take value '0'"],
    ['prealloc with reserve off', { 'qom-type': 'memory-backend-ram', id: 'z', size: 4096, prealloc: true, reserve: false }, "'prealloc=on' and 'reserve=off' are incompatible"],
    ['host-nodes 128', { 'qom-type': 'memory-backend-ram', id: 'z', size: 4096, 'host-nodes': [128], policy: 'bind' }, 'Invalid host-nodes value: 128'],
    ['nodes with default policy', { 'qom-type': 'memory-backend-ram', id: 'z', size: 4096, 'host-nodes': [0] }, 'host-nodes must be empty for policy default, or you should explicitly specify a policy other than default'],
    ['policy without nodes', { 'qom-type': 'memory-backend-ram', id: 'z', size: 4096, policy: 'interleave' }, 'host-nodes must be set for policy interleave'],
    ['bind to an absent node', { 'qom-type': 'memory-backend-ram', id: 'z', size: 4096, policy: 'bind', 'host-nodes': [5] }, 'cannot bind memory to host NUMA nodes: Invalid argument'],
    ['shm share=off', { 'qom-type': 'memory-backend-shm', id: 'z', size: 4096, share: false }, "can't create shm backend with `share=off`"],
    ['hugetlbsize 0', { 'qom-type': 'memory-backend-memfd', id: 'z', size: 4096, hugetlbsize: 0 }, "Property 'memory-backend-memfd.hugetlbsize' doesn't take value '0'"],
    ['hugetlbsize not a power of 2', { 'qom-type': 'memory-backend-memfd', id: 'z', size: 4096, hugetlb: true, hugetlbsize: 6 << 20 }, 'Hugepage size must be a power of 2'],
    ['memfd size not page aligned', { 'qom-type': 'memory-backend-memfd', id: 'z', size: 4097 }, "z backing store size 0x1001 is too small for 'size' option 0x2000 plus 'offset' option 0x0"],
    ['memfd guest-memfd without share', { 'qom-type': 'memory-backend-memfd', id: 'z', size: 4096, 'guest-memfd': true, share: false }, 'Guest-memfd=on must be used with share=on'],
    ['file rom=on without readonly', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': ALLOWED, rom: 'on' }, "property 'rom' = 'on' is not supported with 'readonly' = 'off'"],
    ['file rom=off readonly shared', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': ALLOWED, rom: 'off', readonly: true, share: true }, "property 'rom' = 'off' is incompatible with 'readonly' = 'on' and 'share' = 'on'"],
    ['file unopenable', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': `${ALLOWED}/nonexistent/f` }, `can't open backing store ${ALLOWED}/nonexistent/f for guest RAM: No such file or directory`],
    ['file outside the allowed directories', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': '/tmp' }, "mem-path '/tmp' is not a regular file or directory inside an allowed directory (--mem-path-allow)"],
    ['file align not power of 2', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': ALLOWED, align: 3 * 4096 }, 'alignment 0x3000 must be a power of two'],
    ['file offset not page multiple', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': ALLOWED, offset: 100 }, 'offset 0x64 must be multiples of page size 0x1000'],
    ['file pmem', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': ALLOWED, pmem: true }, "Lack of libpmem support while setting the 'pmem=on' of memory-backend-file. We can't ensure data persistence."],
    ['file align below the page size', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': ALLOWED, align: 2048 }, 'alignment 0x800 must be multiples of page size 0x1000'],
    ['file readonly and missing', { 'qom-type': 'memory-backend-file', id: 'z', size: 4096, 'mem-path': `${ALLOWED}/no-such-file`, readonly: true }, `can't open backing store ${ALLOWED}/no-such-file for guest RAM: No such file or directory`],
    ['hugetlb memfd of one small page', { 'qom-type': 'memory-backend-memfd', id: 'z', size: 4096, hugetlb: true }, 'failed to resize memfd to 4096: Invalid argument'],
    ['prealloc-context to nothing', { 'qom-type': 'memory-backend-ram', id: 'z', size: 4096, 'prealloc-context': '/objects/nothing' }, "Device '/objects/nothing' not found"],
    ['ram huge size', { 'qom-type': 'memory-backend-ram', id: 'z', size: 2 ** 52 }, "cannot set up guest memory 'z': Cannot allocate memory"],
  ];
  test.each(cases)('%s', async (_name, args, desc) => {
    const fds = fdCount();
    const maps = mapsCount();
    const cls = desc.startsWith('Device ') ? 'DeviceNotFound' : 'GenericError';
    expect(await c.execute('object-add', args)).toEqual({ error: { class: cls, desc } });
    expect(fdCount()).toBe(fds);
    expect(mapsCount()).toBe(maps);
    expect(await c.execute('qom-list', { path: '/objects' })).toEqual({ return: [{ name: 'type', type: 'string' }] });
  });
});

test('object-add of an existing id, object-del of a missing one; the first object survives', async () => {
  await add({ 'qom-type': 'memory-backend-memfd', id: 'dup', size: 1 << 20 });
  await expectError({ 'qom-type': 'memory-backend-ram', id: 'dup', size: 4096 }, "attempt to add duplicate property 'dup' to object (type 'container')");
  await expectError({ id: 'nope' }, "object 'nope' not found", 'object-del');
  expect(await c.execute('query-memdev')).toMatchObject({ return: [expect.objectContaining({ id: 'dup', size: 1 << 20 })] });
  await del('dup');
  await expectError({ id: 'dup' }, "object 'dup' not found", 'object-del');
});

test('concurrent object-adds of one id from two clients: exactly one wins', async () => {
  const other = await RawQmpClient.negotiated(d.sock);
  const args = { 'qom-type': 'memory-backend-memfd', id: 'race', size: 64 << 20, prealloc: true };
  const [a, b] = await Promise.all([c.execute('object-add', args), other.execute('object-add', args)]);
  const wins = [a, b].filter((r) => 'return' in r);
  expect(wins).toHaveLength(1);
  expect([a, b].find((r) => 'error' in r)).toEqual({ error: { class: 'GenericError', desc: "attempt to add duplicate property 'race' to object (type 'container')" } });
  await del('race');
  other.close();
});

test('a file smaller than size+offset is refused; frozen file properties keep QEMU\'s texts', async () => {
  const dir = fs.mkdtempSync(path.join(ALLOWED, 'd-'));
  const file = path.join(dir, 'small');
  fs.writeFileSync(file, Buffer.alloc(4096));
  await expectError({ 'qom-type': 'memory-backend-file', id: 'small', size: 8192, 'mem-path': file }, "small backing store size 0x1000 is too small for 'size' option 0x2000 plus 'offset' option 0x0");
  await add({ 'qom-type': 'memory-backend-file', id: 'fb', size: 4096, 'mem-path': file });
  const set = (property: string, value: unknown) => c.execute('qom-set', { path: 'fb', property, value });
  expect(await set('mem-path', '/x')).toEqual({ error: { class: 'GenericError', desc: "cannot change property 'mem-path' of memory-backend-file" } });
  expect(await set('align', 8192)).toEqual({ error: { class: 'GenericError', desc: "cannot change property 'align' of memory-backend-file" } });
  expect(await set('readonly', true)).toEqual({ error: { class: 'GenericError', desc: "cannot change property 'readonly' of memory-backend-file." } });
  expect(await set('rom', 'on')).toEqual({ error: { class: 'GenericError', desc: "cannot change property 'rom' of memory-backend-file." } });
  expect(await set('discard-data', true)).toEqual({ return: {} });
  // An existing object is not a thread-context.
  expect(await set('prealloc-context', '/objects/fb')).toEqual({ error: { class: 'GenericError', desc: "Invalid parameter type for 'prealloc-context', expected: thread-context" } });
  await del('fb');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('after-creation rules of qom-set', async () => {
  await add({ 'qom-type': 'memory-backend-memfd', id: 'live', size: 1 << 20 });
  const set = (property: string, value: unknown) => c.execute('qom-set', { path: '/objects/live', property, value });
  expect(await set('size', 4096)).toEqual({ error: { class: 'GenericError', desc: 'cannot change property size of memory-backend-memfd ' } });
  expect(await set('share', false)).toEqual({ error: { class: 'GenericError', desc: 'cannot change property value' } });
  expect(await set('reserve', false)).toEqual({ error: { class: 'GenericError', desc: 'cannot change property value' } });
  expect(await set('type', 'x')).toEqual({ error: { class: 'GenericError', desc: "Property 'memory-backend-memfd.type' is not writable" } });
  expect(await set('merge', 'x')).toEqual({ error: { class: 'GenericError', desc: "Invalid parameter type for 'merge', expected: boolean" } });
  expect(await set('prealloc-threads', 0)).toEqual({ error: { class: 'GenericError', desc: "property 'prealloc-threads' of memory-backend-memfd doesn't take value '0'" } });
  expect(await set('nosuch', 1)).toEqual({ error: { class: 'GenericError', desc: "Property 'memory-backend-memfd.nosuch' not found" } });
  expect(await set('policy', 'bind')).toEqual({ return: {} });
  expect(await c.execute('qom-set', { path: '/nosuch', property: 'x', value: 1 })).toEqual({ error: { class: 'DeviceNotFound', desc: "Device '/nosuch' not found" } });
  expect(fdTargets().filter((t) => t.startsWith('/memfd:memory-backend-memfd')).length).toBeGreaterThanOrEqual(1);
  await del('live');
});
