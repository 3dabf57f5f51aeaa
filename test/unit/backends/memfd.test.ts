// memory-backend-memfd on the native fake: QEMU's defaults, the memfd_create/ftruncate/seal/mmap
// sequence with its flags, hugetlb page sizes, guest-memfd=on, and each step failing cleanly.
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fake from '../../fakes/native';
import { MiB, objectsFixture, qmpError, ObjectsFixture } from '../../fakes/objects';

let fx: ObjectsFixture;
beforeEach(() => {
  fake.reset();
  fx = objectsFixture();
});
afterEach(() => fx.close());

const T = 'memory-backend-memfd';
const clean = (): void => {
  expect(fake.counts()).toEqual({ fds: 0, mappings: 0 });
  expect(fx.objects.usage).toEqual({ objects: 0, bytes: 0n });
  expect(fx.fds.names()).toEqual([]);
};

test('the module under test gets the fake', () => {
  expect(jest.requireMock<typeof fake>('../../../src/native').memfdCreate).toBe(fake.memfdCreate);
});

test('defaults: share=on, seal=on, hugetlb=off; qom-get reads them', async () => {
  await fx.add(T, 'm', { size: MiB });
  for (const [prop, value] of Object.entries({ share: true, seal: true, hugetlb: false, hugetlbsize: 0, 'guest-memfd': false, merge: true, dump: true, prealloc: false, reserve: true, policy: 'default', 'prealloc-threads': 1 })) {
    expect(await fx.run('qom-get', { path: '/objects/m', property: prop })).toEqual(value);
  }
  expect(await fx.run('qom-get', { path: 'm', property: 'size' })).toBe(MiB);
  expect(await fx.run('qom-get', { path: 'm', property: 'host-nodes' })).toEqual([]);
});

test('memfd_create with MFD_CLOEXEC|MFD_ALLOW_SEALING, size, seals, shared mapping, KSM', async () => {
  await fx.add(T, 'm', { size: 4 * MiB });
  expect(fake.callsOf('memfdCreate')).toEqual([['memory-backend-memfd', 0x3]]);
  const [fd] = fake.openFds();
  expect(fake.callsOf('ftruncate')).toEqual([[fd, BigInt(4 * MiB)]]);
  expect(fake.callsOf('addSeals')).toEqual([[fd, fake.F_SEAL_GROW | fake.F_SEAL_SHRINK | fake.F_SEAL_SEAL]]);
  expect(fake.fileOf(fd).seals).toBe(0x7);
  const [len, prot, flags, mappedFd, offset] = fake.callsOf('mmap')[0];
  expect([len, prot, flags, mappedFd, offset]).toEqual([BigInt(4 * MiB), fake.PROT_READ | fake.PROT_WRITE, fake.MAP_SHARED, fd, 0n]);
  const [m] = fake.liveMappings();
  expect(m.advice).toEqual([fake.MADV_MERGEABLE]);
  expect(m.policies).toEqual([]);
  expect(fake.callsOf('preallocate')).toEqual([]);
  expect(fx.fds.names()).toEqual(['m']);
  expect(fx.events).toEqual(['added:m']);
});

test('seal=off: no MFD_ALLOW_SEALING and no F_ADD_SEALS', async () => {
  await fx.add(T, 'm', { size: MiB, seal: false });
  expect(fake.callsOf('memfdCreate')).toEqual([['memory-backend-memfd', fake.MFD_CLOEXEC]]);
  expect(fake.callsOf('addSeals')).toEqual([]);
});

test('share=off maps the memfd MAP_PRIVATE; reserve=off adds MAP_NORESERVE; dump=off and merge=off advise', async () => {
  await fx.add(T, 'm', { size: MiB, share: false, reserve: false, dump: false, merge: false });
  expect(fake.callsOf('mmap')[0][2]).toBe(fake.MAP_PRIVATE | fake.MAP_NORESERVE);
  expect(fake.liveMappings()[0].advice).toEqual([fake.MADV_DONTDUMP]);
});

test('hugetlb: MFD_HUGETLB with the size code from hugetlbsize, page size from st_blksize', async () => {
  await fx.add(T, 'h', { size: 4 * MiB, hugetlb: true, hugetlbsize: 2 * MiB });
  expect(fake.callsOf('memfdCreate')[0][1]).toBe(0x3 | fake.MFD_HUGETLB | (21 << fake.MFD_HUGE_SHIFT));
  expect(fake.callsOf('fstatBlockSize')).toHaveLength(1);
  expect(fx.backend('h').pageSize).toBe(2 * MiB);
  await fx.add(T, 'g', { size: 1 << 30, hugetlb: true, hugetlbsize: 1 << 30, seal: false });
  expect(fake.callsOf('memfdCreate')[1][1]).toBe(fake.MFD_CLOEXEC | fake.MFD_HUGETLB | fake.MFD_HUGE_1GB);
  // Without hugetlbsize: the default huge page size (no size code).
  await fx.add(T, 'd', { size: 2 * MiB, hugetlb: true });
  expect(fake.callsOf('memfdCreate')[2][1]).toBe(0x3 | fake.MFD_HUGETLB);
});

test('hugetlb: a size that is not a multiple of the huge page fails at ftruncate, as on Linux', async () => {
  expect(await qmpError(fx.add(T, 'h', { size: 3 * MiB, hugetlb: true }))).toEqual({ class: 'GenericError', desc: `failed to resize memfd to ${3 * MiB}: Invalid argument` });
  clean();
});

test('hugetlbsize: not a power of 2, 0, and a size the kernel lacks', async () => {
  expect((await qmpError(fx.add(T, 'h', { size: 2 * MiB, hugetlb: true, hugetlbsize: 3 * MiB }))).desc).toBe('Hugepage size must be a power of 2');
  expect((await qmpError(fx.add(T, 'h', { size: 2 * MiB, hugetlbsize: 0 }))).desc).toBe("Property 'memory-backend-memfd.hugetlbsize' doesn't take value '0'");
  expect((await qmpError(fx.add(T, 'h', { size: 2 * MiB, hugetlb: true, hugetlbsize: 4 * MiB }))).desc).toBe(`failed to create memfd with flags 0x${(0x3 | 4 | (22 << 26)).toString(16)}: Invalid argument`);
  clean();
});

test('size 0 and a size not a multiple of the page size are refused', async () => {
  expect((await qmpError(fx.add(T, 'm', {}))).desc).toBe("can't create backend with size 0");
  expect((await qmpError(fx.add(T, 'm', { size: 0 }))).desc).toBe("property 'size' of memory-backend-memfd doesn't take value '0'");
  // ftruncate makes the memfd exactly `size` long, so the fd-size check (page-rounded size)
  // refuses it before the alignment check is reached.
  expect((await qmpError(fx.add(T, 'm', { size: 4097 }))).desc).toBe("m backing store size 0x1001 is too small for 'size' option 0x2000 plus 'offset' option 0x0");
  clean();
});

describe('a failure at each step leaves no fd and no mapping', () => {
  const cases: [string, fake.ErrnoName, string][] = [
    ['memfdCreate', 'EMFILE', 'failed to create memfd with flags 0x3: Too many open files'],
    ['ftruncate', 'ENOSPC', `failed to resize memfd to ${MiB}: No space left on device`],
    ['addSeals', 'EPERM', 'failed to add seals 0x7: Operation not permitted'],
    ['mmap', 'ENOMEM', 'unable to map backing store for guest RAM: Cannot allocate memory'],
    ['mbind', 'EINVAL', 'cannot bind memory to host NUMA nodes: Invalid argument'],
    ['preallocate', 'ENOMEM', 'qemu_prealloc_mem: preallocating memory failed: Cannot allocate memory'],
  ];
  test.each(cases)('%s fails with %s', async (step, code, desc) => {
    fake.failNext(step, code);
    const body = await qmpError(fx.add(T, 'm', { size: MiB, prealloc: true, policy: 'bind', 'host-nodes': [0] }));
    expect(fake.pendingFaults()).toEqual([]);
    expect(body).toEqual({ class: 'GenericError', desc });
    clean();
    expect(fx.events).toEqual([]);
    // The id is free again.
    await fx.add(T, 'm', { size: MiB });
  });
});

// QEMU ignores qemu_madvise's result for merge and dump; here a failing madvise fails object-add
// with the native layer's bare SysError, which the QMP funnel reports as an internal error.
// What matters here: nothing is left behind.
test('madvise failing names the call (no QEMU text), and cleans up', async () => {
  fake.failNext('madvise', 'EINVAL');
  expect(await qmpError(fx.add(T, 'm', { size: MiB }))).toEqual({ class: 'GenericError', desc: 'madvise: Invalid argument' });
  clean();
});

// A failing fstat, in checkFdSize (map.ts) or for the hugetlb page size, closes the new memfd.
test('fstat failing in checkFdSize closes the memfd', async () => {
  fake.failNext('fstat', 'EACCES');
  expect(await qmpError(fx.add(T, 'm', { size: MiB }))).toEqual({ class: 'GenericError', desc: 'fstat: Permission denied' });
  clean();
});
test('fstat failing for the hugetlb page size closes the memfd', async () => {
  fake.failNext('fstatBlockSize', 'EACCES');
  await qmpError(fx.add(T, 'm', { size: 2 * MiB, hugetlb: true }));
  clean();
});

test('guest-memfd=on takes the fd from KVM; without KVM the stub text', async () => {
  expect((await qmpError(fx.add(T, 'g', { size: MiB, 'guest-memfd': true }))).desc).toBe('guest_memfd is not supported for this configuration');
  expect((await qmpError(fx.add(T, 'g', { size: MiB, 'guest-memfd': true, share: false }))).desc).toBe('Guest-memfd=on must be used with share=on');
  clean();
  fx.close();
  fake.reset();
  fake.kvmWithGuestMemfd();
  fx = objectsFixture({ kvm: true });
  expect(fake.counts().fds).toBe(2); // /dev/kvm and the VM
  await fx.add(T, 'g', { size: MiB, 'guest-memfd': true });
  expect(fake.callsOf('memfdCreate')).toEqual([]);
  const [, size, flags] = fake.callsOf('kvmCreateGuestMemfd')[0];
  expect([size, flags]).toEqual([BigInt(MiB), fake.GUEST_MEMFD_FLAG_MMAP | fake.GUEST_MEMFD_FLAG_INIT_SHARED]);
  expect(fake.callsOf('mmap')[0][2]).toBe(fake.MAP_SHARED);
  await fx.run('object-del', { id: 'g' });
  expect(fake.counts()).toEqual({ fds: 2, mappings: 0 });
  fake.failNext('kvmCreateGuestMemfd', 'ENOMEM');
  expect((await qmpError(fx.add(T, 'g', { size: MiB, 'guest-memfd': true }))).desc).toBe('Error creating KVM guest_memfd: Cannot allocate memory');
  expect(fake.counts()).toEqual({ fds: 2, mappings: 0 });
});

test('after creation: hugetlbsize and guest-memfd are frozen, seal/hugetlb may be set (no effect)', async () => {
  await fx.add(T, 'm', { size: MiB });
  expect((await fx.error('qom-set', { path: 'm', property: 'hugetlbsize', value: 2 * MiB })).desc).toBe('cannot change property value');
  expect((await fx.error('qom-set', { path: 'm', property: 'guest-memfd', value: true })).desc).toBe('cannot change property value');
  await fx.run('qom-set', { path: 'm', property: 'seal', value: false });
  expect(await fx.run('qom-get', { path: 'm', property: 'seal' })).toBe(false);
  expect(fake.callsOf('memfdCreate')).toHaveLength(1);
});

test('object-del closes the fd and unmaps', async () => {
  await fx.add(T, 'a', { size: MiB });
  await fx.add(T, 'b', { size: 2 * MiB });
  expect(fake.counts()).toEqual({ fds: 2, mappings: 2 });
  const [ma] = fake.liveMappings();
  await fx.run('object-del', { id: 'a' });
  expect(ma.isMapped).toBe(false);
  expect(fake.counts()).toEqual({ fds: 1, mappings: 1 });
  expect(fx.fds.names()).toEqual(['b']);
  await fx.run('object-del', { id: 'b' });
  clean();
  expect(fx.events).toEqual(['added:a', 'added:b', 'deleted:a', 'deleted:b']);
});
