// memory-backend-file, memory-backend-shm and memory-backend-guest-memfd on the native fake:
// open flags, sizing, hugetlbfs page sizes, alignment and offset checks, readonly/rom, discard-data,
// shm_open+unlink, the KVM guest_memfd path, failures leaving nothing open, and the mem-path
// confinement (one refusal text for everything outside the allowed directories).
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fake from '../../fakes/native';
import { MiB, objectsFixture, qmpError, ObjectsFixture } from '../../fakes/objects';
import { SHM_NAME_ATTEMPTS } from '../../../src/backends/shm';

let fx: ObjectsFixture;
const DIR = '/nonexistent-hostmemd-fake';
beforeEach(() => {
  fake.reset();
  fake.addDir(DIR);
  fx = objectsFixture({ memPathAllow: [DIR, '/dev/hugepages'] });
});
afterEach(() => fx.close());

const clean = (): void => {
  expect(fake.counts()).toEqual({ fds: 0, mappings: 0 });
  expect(fx.fds.names()).toEqual([]);
};
const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

describe('memory-backend-file', () => {
  const T = 'memory-backend-file';
  const PATH = `${DIR}/guest.mem`;

  test('defaults and property list', async () => {
    expect(((await fx.run('qom-list-properties', { typename: T })) as { name: string }[]).map((p) => p.name).slice(-7)).toEqual([
      'mem-path', 'discard-data', 'align', 'offset', 'pmem', 'readonly', 'rom',
    ]);
    await fx.add(T, 'f', { size: MiB, 'mem-path': PATH });
    for (const [prop, value] of Object.entries({ share: false, 'discard-data': false, align: 0, offset: 0, pmem: false, readonly: false, rom: 'auto', 'mem-path': PATH })) {
      expect(await fx.run('qom-get', { path: 'f', property: prop })).toEqual(value);
    }
  });

  test('a new file: looked at O_PATH beneath the allowed dir, created O_RDWR|O_CREAT|O_EXCL 0644, sized to size+offset, mapped private', async () => {
    await fx.add(T, 'f', { size: MiB, 'mem-path': PATH });
    expect(fake.callsOf('openDirectory')).toEqual([[DIR]]);
    expect(fake.callsOf('openBeneath')).toEqual([
      [DIR, 'guest.mem', fake.O_PATH, 0],
      [DIR, 'guest.mem', fake.O_RDWR | fake.O_CREAT | fake.O_EXCL | fake.O_NONBLOCK, 0o644],
    ]);
    expect(fake.fileAt(PATH)!.mode).toBe(fake.S_IFREG | 0o644);
    expect(fake.fileAt(PATH)!.size).toBe(BigInt(MiB));
    expect(fake.callsOf('mmap')[0]).toEqual([BigInt(MiB), fake.PROT_READ | fake.PROT_WRITE, fake.MAP_PRIVATE, fake.openFds()[0], 0n]);
    await fx.add(T, 'g', { size: MiB, 'mem-path': `${PATH}2`, share: true, offset: 2 * 4096 });
    expect(fake.fileAt(`${PATH}2`)!.size).toBe(BigInt(MiB + 8192));
    expect(fake.callsOf('mmap')[1][2]).toBe(fake.MAP_SHARED);
    expect(fake.callsOf('mmap')[1][4]).toBe(8192n);
  });

  test('an existing file: its size is checked, not changed', async () => {
    fake.addFile(PATH, BigInt(MiB / 2));
    expect((await qmpError(fx.add(T, 'f', { size: MiB, 'mem-path': PATH }))).desc).toBe(`f backing store size ${hex(MiB / 2)} is too small for 'size' option ${hex(MiB)} plus 'offset' option 0x0`);
    clean();
    fake.fileAt(PATH)!.size = BigInt(2 * MiB);
    await fx.add(T, 'f', { size: MiB, 'mem-path': PATH });
    expect(fake.callsOf('ftruncate')).toEqual([]);
  });

  test('a directory: an unlinked O_EXCL 0600 temp file in it', async () => {
    fake.addDir(`${DIR}/sub`);
    await fx.add(T, 'f', { size: MiB, 'mem-path': `${DIR}/sub` });
    const [probe, [dir, name, flags, mode]] = fake.callsOf('openBeneath') as [string, string, number, number][];
    expect(probe).toEqual([DIR, 'sub', fake.O_PATH, 0]);
    expect(dir).toBe(`${DIR}/sub`);
    expect(name).toMatch(/^hostmemd_back_mem\.f\.[0-9a-f]{8}$/);
    expect([flags, mode]).toEqual([fake.O_RDWR | fake.O_CREAT | fake.O_EXCL, 0o600]);
    expect(fake.callsOf('unlinkAt')).toEqual([[`${DIR}/sub`, name]]);
    expect(fake.fileAt(`${DIR}/sub/${name}`)).toBeUndefined();
    // The allowed directory itself works the same way.
    await fx.add(T, 'g', { size: MiB, 'mem-path': DIR });
    expect(fake.callsOf('openBeneath')[2]).toEqual([DIR, '', fake.O_PATH, 0]);
  });

  test('readonly=on with a directory: refused as QEMU 7.2 does (ENODEV), no empty temp file mapped', async () => {
    expect((await qmpError(fx.add(T, 'f', { size: MiB, 'mem-path': DIR, readonly: true }))).desc).toBe('unable to map backing store for guest RAM: No such device');
    expect(fake.callsOf('mmap')).toEqual([]);
    clean();
  });

  test('a directory whose temp file cannot be unlinked: the error, and nothing left open', async () => {
    fake.failNext('unlinkAt', 'EACCES');
    expect((await qmpError(fx.add(T, 'f', { size: MiB, 'mem-path': DIR }))).desc).toBe(`can't open backing store ${DIR} for guest RAM: Permission denied`);
    clean();
  });

  test('refusals before any syscall', async () => {
    const e = async (props: Record<string, number | string | boolean>): Promise<string> => (await qmpError(fx.add(T, 'f', props))).desc;
    expect(await e({ 'mem-path': PATH })).toBe("can't create backend with size 0");
    expect(await e({ size: MiB })).toBe('mem-path property not set');
    expect(await e({ size: MiB, 'mem-path': PATH, rom: 'on' })).toBe("property 'rom' = 'on' is not supported with 'readonly' = 'off'");
    expect(await e({ size: MiB, 'mem-path': PATH, rom: 'off', readonly: true, share: true })).toBe("property 'rom' = 'off' is incompatible with 'readonly' = 'on' and 'share' = 'on'");
    expect(await e({ size: MiB, 'mem-path': PATH, pmem: true })).toBe("Lack of libpmem support while setting the 'pmem=on' of memory-backend-file. We can't ensure data persistence.");
    expect(await e({ size: MiB, 'mem-path': PATH, rom: 'maybe' })).toBe("Parameter 'rom' does not accept value 'maybe'");
    expect(fake.callsOf('openBeneath')).toEqual([]);
  });

  test('alignment, offset and size against the page size (hugetlbfs)', async () => {
    fake.mountHugetlbfs('/dev/hugepages', 2 * MiB);
    const e = async (props: Record<string, number>, p = '/dev/hugepages/g'): Promise<string> => (await qmpError(fx.add(T, 'f', { 'mem-path': p, ...props }))).desc;
    expect(await e({ size: 2 * MiB, align: MiB })).toBe(`alignment ${hex(MiB)} must be multiples of page size ${hex(2 * MiB)}`);
    expect(await e({ size: 2 * MiB, align: 6 * MiB })).toBe(`alignment ${hex(6 * MiB)} must be a power of two`);
    expect(await e({ size: 2 * MiB, offset: 4096 })).toBe(`offset 0x1000 must be multiples of page size ${hex(2 * MiB)}`);
    expect(await e({ size: MiB })).toBe(`memory size ${hex(MiB)} must be equal to or larger than page size ${hex(2 * MiB)}`);
    clean();
    // Not a multiple of the huge page: rounded up, as QEMU 7.2 does (9.1 refuses it).
    await fx.add(T, 'h', { 'mem-path': '/dev/hugepages/h', size: 3 * MiB });
    expect(fake.fileAt('/dev/hugepages/h')!.size).toBe(BigInt(4 * MiB));
    await fx.add(T, 'f', { 'mem-path': '/dev/hugepages/g', size: 4 * MiB, align: 4 * MiB });
    expect(fx.backend('f').pageSize).toBe(2 * MiB);
    expect(fake.fileAt('/dev/hugepages/g')!.size).toBe(BigInt(4 * MiB));
  });

  test('size not a multiple of the base page: rounded up to pages (QEMU 7.2)', async () => {
    fake.addFile(PATH, 8192n);
    await fx.add(T, 'f', { size: 4097, 'mem-path': PATH });
    expect(fake.callsOf('mmap')[0][0]).toBe(8192n);
    expect(fx.backend('f').size).toBe(4097n);
    await fx.add(T, 'g', { size: 1, 'mem-path': `${DIR}/one` });
    expect(fake.fileAt(`${DIR}/one`)!.size).toBe(4096n);
  });

  test('readonly: O_RDONLY, no ftruncate, PROT_READ (rom=auto follows readonly)', async () => {
    fake.addFile(PATH, BigInt(MiB));
    await fx.add(T, 'f', { size: MiB, 'mem-path': PATH, readonly: true });
    expect(fake.callsOf('openBeneath')[1].slice(1, 3)).toEqual(['guest.mem', fake.O_RDONLY | fake.O_NONBLOCK]);
    expect(fake.callsOf('mmap')[0][1]).toBe(fake.PROT_READ);
    // rom=off with readonly=on, share=off: writable private mapping of a read-only file.
    await fx.add(T, 'g', { size: MiB, 'mem-path': PATH, readonly: true, rom: 'off' });
    expect(fake.callsOf('mmap')[1].slice(1, 3)).toEqual([fake.PROT_READ | fake.PROT_WRITE, fake.MAP_PRIVATE]);
  });

  test.each([
    ['openBeneath', 'EACCES', `can't open backing store ${PATH} for guest RAM: Permission denied`],
    ['openDirectory', 'ENOENT', `can't open backing store ${PATH} for guest RAM: No such file or directory`],
    ['fdPageSize', 'EIO', 'fstatfs: Input/output error'],
    ['ftruncate', 'ENOSPC', 'ftruncate: No space left on device'],
    ['mmap', 'ENOMEM', 'unable to map backing store for guest RAM: Cannot allocate memory'],
    ['mbind', 'EINVAL', 'cannot bind memory to host NUMA nodes: Invalid argument'],
    ['preallocate', 'ENOMEM', 'qemu_prealloc_mem: preallocating memory failed: Cannot allocate memory'],
  ] as [string, fake.ErrnoName, string][])('%s failing (%s): the error, and nothing left open', async (step, code, desc) => {
    fake.failNext(step, code);
    expect(await qmpError(fx.add(T, 'f', { size: MiB, 'mem-path': PATH, prealloc: true, policy: 'bind', 'host-nodes': [0] }))).toEqual({ class: 'GenericError', desc });
    expect(fake.pendingFaults()).toEqual([]);
    clean();
  });

  test('a missing read-only file is not created', async () => {
    expect((await qmpError(fx.add(T, 'f', { size: MiB, 'mem-path': PATH, readonly: true }))).desc).toBe(`can't open backing store ${PATH} for guest RAM: No such file or directory`);
    expect(fake.fileAt(PATH)).toBeUndefined();
    clean();
  });

  test('after creation: mem-path/align/offset/readonly/rom/pmem frozen with their texts; discard-data punches a hole on delete', async () => {
    await fx.add(T, 'f', { size: MiB, 'mem-path': PATH, share: true });
    const err = async (property: string, value: number | string | boolean) => (await fx.error('qom-set', { path: 'f', property, value })).desc;
    expect(await err('mem-path', '/x')).toBe("cannot change property 'mem-path' of memory-backend-file");
    expect(await err('align', 4096)).toBe("cannot change property 'align' of memory-backend-file");
    expect(await err('offset', 0)).toBe("cannot change property 'offset' of memory-backend-file");
    expect(await err('readonly', true)).toBe("cannot change property 'readonly' of memory-backend-file.");
    expect(await err('rom', 'on')).toBe("cannot change property 'rom' of memory-backend-file.");
    expect(await err('pmem', false)).toBe("cannot change property 'pmem' of memory-backend-file.");
    await fx.run('qom-set', { path: 'f', property: 'discard-data', value: true });
    const fd = fake.openFds()[0];
    await fx.run('object-del', { id: 'f' });
    expect(fake.callsOf('fallocate')).toEqual([[fd, fake.FALLOC_FL_PUNCH_HOLE | fake.FALLOC_FL_KEEP_SIZE, 0n, BigInt(MiB)]]);
    clean();
  });

  test('discard-data: a failing punch is ignored and the fd still closed', async () => {
    await fx.add(T, 'f', { size: MiB, 'mem-path': PATH, share: true, 'discard-data': true });
    fake.failNext('fallocate', 'EOPNOTSUPP');
    await fx.run('object-del', { id: 'f' });
    clean();
  });

  // Reported (issue 13): share=off zeroed the file at object-del, and so did a failed
  // object-add. QEMU 7.2's MADV_REMOVE fails on a private mapping, and it discards only an
  // object it added.
  test('discard-data with share=off leaves the file intact at object-del', async () => {
    await fx.add(T, 'f', { size: MiB, 'mem-path': PATH, 'discard-data': true });
    await fx.run('object-del', { id: 'f' });
    expect(fake.callsOf('fallocate')).toEqual([]);
    clean();
  });

  test('discard-data: a failed object-add leaves the file intact', async () => {
    fake.failNext('preallocate', 'ENOMEM');
    await qmpError(fx.add(T, 'f', { size: MiB, 'mem-path': PATH, share: true, 'discard-data': true, prealloc: true }));
    expect(fake.callsOf('fallocate')).toEqual([]);
    clean();
  });
});

describe('memory-backend-file: mem-path confinement', () => {
  const T = 'memory-backend-file';
  const refusal = (p: string): string => `mem-path '${p}' is not a regular file or directory inside an allowed directory (--mem-path-allow)`;
  const refused = async (p: string, extra: Record<string, unknown> = {}): Promise<void> => {
    expect(await qmpError(fx.add(T, 'f', { size: MiB, 'mem-path': p, ...extra }))).toEqual({ class: 'GenericError', desc: refusal(p) });
    clean();
  };

  test.each([
    ['outside every allowed dir', '/etc/shadow'],
    ['outside, missing', '/root/new-file'],
    ['relative', 'guest.mem'],
    ['relative with the dir name', DIR.slice(1) + '/f'],
    ['a name that only starts like the dir', `${DIR}x/f`],
    ['.. before the dir', `/tmp/..${DIR}/f`],
    ['a NUL in it', `${DIR}/f\0/../../etc/shadow`],
  ])('%s: refused before any syscall', async (_name, p) => {
    fake.addFile('/etc/shadow', 0x2a8n);
    await refused(p);
    expect(fake.callsOf('openDirectory')).toEqual([]);
    expect(fake.callsOf('openBeneath')).toEqual([]);
    expect(fake.fileAt('/etc/shadow')!.size).toBe(0x2a8n);
  });

  test('.. out of the allowed dir (EXDEV) is refused; .. that stays inside is resolved by the kernel', async () => {
    fake.addDir(`${DIR}/a`);
    await refused(`${DIR}/../etc/shadow`);
    await refused(`${DIR}/a/../../x`);
    await fx.add(T, 'f', { size: MiB, 'mem-path': `${DIR}/a/../inside` });
    expect(fake.fileAt(`${DIR}/inside`)!.size).toBe(BigInt(MiB));
  });

  test('a symlink, as the last component or on the way: refused, readonly or not', async () => {
    fake.addFile('/etc/shadow', 0x2a8n);
    fake.addSymlink(`${DIR}/link`, '/etc/shadow');
    fake.addSymlink(`${DIR}/dirlink`, '/etc');
    await refused(`${DIR}/link`);
    await refused(`${DIR}/link`, { readonly: true });
    await refused(`${DIR}/dirlink/shadow`);
    await refused(`${DIR}/dirlink/new`);
    expect(fake.fileAt('/etc/shadow')!.size).toBe(0x2a8n);
    expect(fake.fileAt('/etc/new')).toBeUndefined();
  });

  test('a FIFO or a device inside: refused after an O_PATH look, never opened for I/O', async () => {
    fake.addFile(`${DIR}/fifo`).mode = 0o010644;
    fake.addFile(`${DIR}/dev`).mode = 0o020666;
    await refused(`${DIR}/fifo`);
    await refused(`${DIR}/dev`, { readonly: true });
    expect(fake.callsOf('openBeneath').map((c) => c[2])).toEqual([fake.O_PATH, fake.O_PATH]);
  });

  test('the longest allowed directory containing the path is resolved beneath', async () => {
    fake.addDir(`${DIR}/inner`);
    const inner = objectsFixture({ memPathAllow: [DIR, `${DIR}/inner/`] });
    try {
      await inner.add(T, 'f', { size: MiB, 'mem-path': `${DIR}/inner/f` });
      expect(fake.callsOf('openDirectory')).toEqual([[`${DIR}/inner`]]);
      expect(fake.callsOf('openBeneath')[0].slice(0, 2)).toEqual([`${DIR}/inner`, 'f']);
    } finally {
      inner.close();
    }
  });

  test('an empty allowed list refuses everything', async () => {
    const none = objectsFixture({ memPathAllow: [] });
    try {
      expect((await qmpError(none.add(T, 'f', { size: MiB, 'mem-path': `${DIR}/f` }))).desc).toBe(refusal(`${DIR}/f`));
    } finally {
      none.close();
    }
  });
});

describe('memory-backend-shm', () => {
  const T = 'memory-backend-shm';

  test('shm_open O_RDWR|O_CREAT|O_EXCL 0, unlinked at once, sized, mapped shared', async () => {
    await fx.add(T, 's', { size: 5000 });
    const [[name, oflag, mode]] = fake.callsOf('shmOpen') as [string, number, number][];
    expect(name).toMatch(/^\/hostmemd-shm-[0-9a-f]{32}$/);
    expect([oflag, mode]).toEqual([fake.O_RDWR | fake.O_CREAT | fake.O_EXCL, 0]);
    expect(fake.callsOf('shmUnlink')).toEqual([[name]]);
    expect(fake.fileAt(`/dev/shm${name}`)).toBeUndefined();
    expect(fake.callsOf('ftruncate')[0][1]).toBe(8192n);
    expect(fake.callsOf('mmap')[0][2]).toBe(fake.MAP_SHARED);
    expect(await fx.run('qom-get', { path: 's', property: 'share' })).toBe(true);
    await fx.run('object-del', { id: 's' });
    clean();
  });

  test('names are random, never the predictable QEMU-style PID-sequence ones', async () => {
    await fx.add(T, 'a', { size: MiB });
    await fx.add(T, 'b', { size: MiB });
    const names = fake.callsOf('shmOpen').map((c) => c[0] as string);
    expect(names).toHaveLength(2);
    expect(names[0]).not.toBe(names[1]);
    for (const n of names) expect(n).not.toContain(String(process.pid));
  });

  test('a squatted name (EEXIST) does not make object-add fail: another random name is tried', async () => {
    fake.failNext('shmOpen', 'EEXIST');
    fake.failNext('shmOpen', 'EEXIST');
    await fx.add(T, 's', { size: MiB });
    const names = fake.callsOf('shmOpen').map((c) => c[0] as string);
    expect(fake.pendingFaults()).toEqual([]);
    expect(new Set(names).size).toBe(names.length);
    expect(fake.callsOf('shmUnlink')).toEqual([[names[names.length - 1]]]);
    expect(fake.counts()).toEqual({ fds: 1, mappings: 1 });
    await fx.run('object-del', { id: 's' });
    clean();
  });

  test(`EEXIST on every one of SHM_NAME_ATTEMPTS (${SHM_NAME_ATTEMPTS}) names: QEMU's text, nothing left open`, async () => {
    for (let i = 0; i < SHM_NAME_ATTEMPTS; i++) fake.failNext('shmOpen', 'EEXIST');
    expect(await qmpError(fx.add(T, 's', { size: MiB }))).toEqual({ class: 'GenericError', desc: 'failed to create POSIX shared memory: File exists' });
    expect(fake.pendingFaults()).toEqual([]);
    clean();
    await fx.add(T, 's', { size: MiB }); // the next attempt is fine
  });

  test('another error of shm_open is not retried', async () => {
    fake.failNext('shmOpen', 'EACCES');
    expect((await qmpError(fx.add(T, 's', { size: MiB }))).desc).toBe('failed to create POSIX shared memory: Permission denied');
    expect(fake.callsOf('shmOpen')).toHaveLength(1);
    clean();
  });

  test('refusals: size 0 and share=off', async () => {
    expect((await qmpError(fx.add(T, 's', {}))).desc).toBe("can't create shm backend with size 0");
    expect((await qmpError(fx.add(T, 's', { size: MiB, share: false }))).desc).toBe("can't create shm backend with `share=off`");
    clean();
  });

  test.each([
    ['shmOpen', 'EMFILE', 'failed to create POSIX shared memory: Too many open files'],
    ['ftruncate', 'ENOSPC', `failed to resize POSIX shared memory to ${MiB}: No space left on device`],
    ['mmap', 'ENOMEM', 'unable to map backing store for guest RAM: Cannot allocate memory'],
  ] as [string, fake.ErrnoName, string][])('%s failing (%s)', async (step, code, desc) => {
    fake.failNext(step, code);
    expect(await qmpError(fx.add(T, 's', { size: MiB }))).toEqual({ class: 'GenericError', desc });
    clean();
  });

  // shm_unlink failing is not caught: the shm fd stays open (src/backends/shm.ts). Reported.
  test('shm_unlink failing: nothing left open', async () => {
    fake.failNext('shmUnlink', 'EACCES');
    await qmpError(fx.add(T, 's', { size: MiB }));
    clean();
  });
});

describe('memory-backend-guest-memfd', () => {
  const T = 'memory-backend-guest-memfd';

  test('without /dev/kvm: the accelerator says why, object-add gives the stub text', async () => {
    fx.close();
    fx = objectsFixture({ kvm: true });
    expect(fake.callsOf('kvmOpen')).toEqual([['/dev/kvm']]);
    expect(fx.kvm.facts).toEqual({ enabled: false, present: true, unavailable: 'cannot use /dev/kvm: open: No such file or directory' });
    expect(await qmpError(fx.add(T, 'g', { size: MiB }))).toEqual({ class: 'GenericError', desc: 'guest_memfd is not supported for this configuration' });
    clean();
  });

  describe('with KVM', () => {
    beforeEach(() => {
      fx.close();
      fake.reset();
      fake.kvmWithGuestMemfd();
      fx = objectsFixture({ kvm: true });
    });

    test('KVM_CREATE_GUEST_MEMFD with MMAP|INIT_SHARED, mapped shared; delete closes it', async () => {
      await fx.add(T, 'g', { size: 2 * MiB });
      const [[, size, flags]] = fake.callsOf('kvmCreateGuestMemfd');
      expect([size, flags]).toEqual([BigInt(2 * MiB), 3]);
      const gmem = fake.openFds().find((f) => fake.fileOf(f).kind === 'guest-memfd')!;
      expect(gmem.cloexec).toBe(false);
      expect(fake.callsOf('mmap')[0]).toEqual([BigInt(2 * MiB), fake.PROT_READ | fake.PROT_WRITE, fake.MAP_SHARED, gmem, 0n]);
      expect(fx.fds.names()).toEqual(['g']);
      await fx.run('object-del', { id: 'g' });
      expect(gmem.isOpen).toBe(false);
      expect(fake.counts()).toEqual({ fds: 2, mappings: 0 });
    });

    test('refusals: size 0, share=off, unaligned size (KVM says EINVAL)', async () => {
      expect((await qmpError(fx.add(T, 'g', {}))).desc).toBe("can't create backend with size 0");
      expect((await qmpError(fx.add(T, 'g', { size: MiB, share: false }))).desc).toBe("can't create backend with share=off");
      expect((await qmpError(fx.add(T, 'g', { size: 5000 }))).desc).toBe('Error creating KVM guest_memfd: Invalid argument');
      expect(fake.counts()).toEqual({ fds: 2, mappings: 0 });
    });

    test('KVM without the shared flags: the seed texts', async () => {
      fx.close();
      fake.reset();
      fake.kvmWithGuestMemfd();
      fake.kvm.caps.set(fake.KVM_CAP_GUEST_MEMFD_FLAGS, fake.GUEST_MEMFD_FLAG_MMAP);
      fx = objectsFixture({ kvm: true });
      expect(fx.kvm.facts.unavailable).toBe('KVM lacks GUEST_MEMFD_FLAG_MMAP or GUEST_MEMFD_FLAG_INIT_SHARED');
      expect((await qmpError(fx.add(T, 'g', { size: MiB }))).desc).toBe('KVM does not support using guest_memfd for shared memory');
    });

    test.each([
      ['kvmCreateGuestMemfd', 'ENOMEM', 'Error creating KVM guest_memfd: Cannot allocate memory'],
      ['mmap', 'ENOMEM', 'unable to map backing store for guest RAM: Cannot allocate memory'],
      ['preallocate', 'EFAULT', 'qemu_prealloc_mem: preallocating memory failed: Bad address'],
    ] as [string, fake.ErrnoName, string][])('%s failing (%s)', async (step, code, desc) => {
      fake.failNext(step, code);
      expect(await qmpError(fx.add(T, 'g', { size: MiB, prealloc: true }))).toEqual({ class: 'GenericError', desc });
      expect(fake.counts()).toEqual({ fds: 2, mappings: 0 });
      expect(fx.fds.names()).toEqual([]);
    });
  });
});
