// memory-backend-guest-memfd on the real /dev/kvm (skipped loudly without it): creation with
// the default share=on, the anon_inode:[kvm-gmem] mapping of the right size, prealloc making it
// resident, object-del releasing mapping and fd, the seed's error texts, --accel none's stub
// text, and a probed flag mask without INIT_SHARED (injected through the accelerator's probe).
import { RawQmpClient } from '../helpers/qmp-client';
import { startInProcess, startWithClient, stopWithClient, InProcess } from '../helpers/daemon';
import { findMappings, fdCount, backendMapsCount, fdTargets } from '../helpers/proc';
import { announceSkip } from '../helpers/qemu';
import { KvmAccelerator } from '../../src/accel/kvm';
import * as native from '../../src/native';
import { kvmUsable } from '../helpers/native';

const MiB = 1n << 20n;
const haveKvm = kvmUsable();
if (!haveKvm) announceSkip('guest_memfd system tests', '/dev/kvm is not usable here');
const kvmDescribe = haveKvm ? describe : describe.skip;

kvmDescribe('memory-backend-guest-memfd on KVM', () => {
  let d: InProcess;
  let c: RawQmpClient;
  beforeAll(async () => ({ d, c } = await startWithClient()));
  afterAll(() => stopWithClient({ d, c }));

  test('query-kvm and the probed facts', async () => {
    expect(await c.execute('query-kvm')).toEqual({ return: { enabled: true, present: true } });
    const r = (await c.execute('query-kvm-guest-memfd')).return as Record<string, unknown>;
    expect(r).toMatchObject({ enabled: true, 'api-version': 12, 'guest-memfd': true });
    expect((r['guest-memfd-flags'] as number) & 3).toBe(3);
    expect(r).not.toHaveProperty('unavailable');
  });

  test('creates a shared kvm-gmem mapping by default; prealloc makes it resident; object-del frees it', async () => {
    const size = 34n * MiB;
    const fds = fdCount();
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-guest-memfd', id: 'g1', size: Number(size), prealloc: true })).toEqual({ return: {} });
    const [m] = findMappings(size, 'anon_inode:[kvm-gmem]');
    expect(m.perms).toBe('rw-s');
    expect(m.rssKb * 1024).toBe(Number(size));
    expect(fdTargets()).toContain('anon_inode:[kvm-gmem]');
    expect(await c.execute('qom-get', { path: 'g1', property: 'share' })).toEqual({ return: true });
    expect(await c.execute('query-memdev')).toEqual({
      return: [{ id: 'g1', size: Number(size), merge: true, dump: true, prealloc: true, share: true, reserve: true, 'host-nodes': [], policy: 'default' }],
    });
    expect(await c.execute('object-del', { id: 'g1' })).toEqual({ return: {} });
    expect(findMappings(size, 'anon_inode:[kvm-gmem]')).toHaveLength(0);
    expect(fdCount()).toBe(fds);
  });

  test('bytes written through a guest_memfd mapping read back, also through a second mapping', () => {
    const kvm = KvmAccelerator.open();
    const fd = kvm.createSharedGuestMemfd(2n * MiB);
    const a = native.mmap(2n * MiB, native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, fd, 0n);
    const b = native.mmap(2n * MiB, native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, fd, 0n);
    const pattern = Buffer.from('hostmemd guest_memfd pattern');
    a.write(4096, pattern);
    expect(a.read(4096, pattern.length)).toEqual(pattern);
    expect(b.read(4096, pattern.length)).toEqual(pattern);
    a.unmap();
    b.unmap();
    fd.close();
    kvm.close();
  });

  test('the competing proposal: memory-backend-memfd with guest-memfd=on makes the same kind of fd', async () => {
    const size = 3n * MiB;
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'gx', size: Number(size), 'guest-memfd': true })).toEqual({ return: {} });
    expect(findMappings(size, 'anon_inode:[kvm-gmem]')).toHaveLength(1);
    await c.execute('object-del', { id: 'gx' });
  });

  test.each([
    [{ size: 0 }, "property 'size' of memory-backend-guest-memfd doesn't take value '0'"],
    [{ size: 4096, share: false }, "can't create backend with share=off"],
    [{ size: 4097 }, 'Error creating KVM guest_memfd: Invalid argument'],
  ])('refuses %j with the seed text and leaves nothing behind', async (extra, desc) => {
    const fds = fdCount();
    const maps = backendMapsCount();
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-guest-memfd', id: 'bad', ...extra })).toEqual({ error: { class: 'GenericError', desc } });
    expect(fdCount()).toBe(fds);
    expect(backendMapsCount()).toBe(maps);
  });
});

describe('guest_memfd unavailable', () => {
  test('--accel none gives the KVM stub text', async () => {
    const d = await startInProcess(['--accel', 'none']);
    const c = await RawQmpClient.negotiated(d.sock);
    expect(await c.execute('query-kvm')).toEqual({ return: { enabled: false, present: true } });
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-guest-memfd', id: 'g', size: 1 << 20 })).toEqual({
      error: { class: 'GenericError', desc: 'guest_memfd is not supported for this configuration' },
    });
    expect(await c.execute('query-kvm-guest-memfd')).toEqual({ return: { enabled: false, unavailable: '--accel none' } });
    c.close();
    await d.stop();
  });

  (haveKvm ? test : test.skip)('a probed flag mask without INIT_SHARED gives the "does not support" text', async () => {
    const d = await startInProcess(['--x-kvm-probe', 'guestMemfdFlags=1']);
    const c = await RawQmpClient.negotiated(d.sock);
    expect(await c.execute('object-add', { 'qom-type': 'memory-backend-guest-memfd', id: 'g', size: 1 << 20 })).toEqual({
      error: { class: 'GenericError', desc: 'KVM does not support using guest_memfd for shared memory' },
    });
    expect(((await c.execute('query-kvm-guest-memfd')).return as Record<string, unknown>).unavailable).toBe('KVM lacks GUEST_MEMFD_FLAG_MMAP or GUEST_MEMFD_FLAG_INIT_SHARED');
    c.close();
    await d.stop();
  });
});
