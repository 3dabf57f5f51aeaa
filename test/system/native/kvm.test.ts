// KVM bindings: ioctl numbers from the _IO* helpers against the values in guest-memfd-facts.md
// §3 (no KVM needed), then on the real /dev/kvm (skipped loudly without it): capabilities,
// guest_memfd creation with MMAP|INIT_SHARED, its anon_inode:[kvm-gmem] mapping, data read
// back, residency, memslot binding, and the errnos of the refused inputs (facts §6.1-§6.8).
import * as fs from 'node:fs';
import * as native from '../../../src/native';
import { findMappings, fdTargets } from '../../helpers/proc';
import { announceSkip } from '../../helpers/qemu';
import { kvmUsable, sysError } from '../../helpers/native';

const KiB = 1n << 10n;
const MiB = 1n << 20n;
const RW = native.PROT_READ | native.PROT_WRITE;
const GMEM = 'anon_inode:[kvm-gmem]';
const SHARED = native.GUEST_MEMFD_FLAG_MMAP | native.GUEST_MEMFD_FLAG_INIT_SHARED;

describe('ioctl numbers (linux/kvm.h through <asm-generic/ioctl.h>)', () => {
  test('the structs have the sizes of facts §4', () => {
    expect(native.KVM_STRUCT_SIZES).toEqual({ kvm_create_guest_memfd: 64, kvm_userspace_memory_region2: 160 });
  });

  test('the exported numbers and the helpers reproduce the facts §3 table', () => {
    const K = native.KVMIO;
    expect(native.KVM_GET_API_VERSION).toBe(0xae00);
    expect(native.KVM_CREATE_VM).toBe(0xae01);
    expect(native.KVM_CHECK_EXTENSION).toBe(0xae03);
    expect(native.KVM_SET_USER_MEMORY_REGION2).toBe(0x40a0ae49);
    expect(native.KVM_CREATE_GUEST_MEMFD).toBe(0xc040aed4);
    expect(native._IO(K, 0x04)).toBe(0xae04); // KVM_GET_VCPU_MMAP_SIZE
    expect(native._IO(K, 0x41)).toBe(0xae41); // KVM_CREATE_VCPU
    expect(native._IOW(K, 0x46, 32)).toBe(0x4020ae46); // KVM_SET_USER_MEMORY_REGION
    expect(native._IOW(K, 0xd2, 32)).toBe(0x4020aed2); // KVM_SET_MEMORY_ATTRIBUTES
    expect(native._IOWR(K, 0xd5, 64)).toBe(0xc040aed5); // KVM_PRE_FAULT_MEMORY
    expect(native._IO(K, 0x80)).toBe(0xae80); // KVM_RUN
    expect(native._IOR(K, 0x81, 144)).toBe(0x8090ae81); // KVM_GET_REGS
    expect(native._IOW(K, 0x82, 144)).toBe(0x4090ae82); // KVM_SET_REGS
    expect(native._IOR(K, 0x83, 312)).toBe(0x8138ae83); // KVM_GET_SREGS
    expect(native._IOW(K, 0x84, 312)).toBe(0x4138ae84); // KVM_SET_SREGS
    expect(native._IO(K, 0xce)).toBe(0xaece); // KVM_GET_STATS_FD
    expect(() => native._IOW(K, 1, 1 << 14)).toThrow(RangeError);
  });
});

const haveKvm = kvmUsable();
if (!haveKvm) announceSkip('native KVM/guest_memfd tests', '/dev/kvm is not usable here');
const kvmDescribe = haveKvm ? describe : describe.skip;

kvmDescribe('KVM and guest_memfd on /dev/kvm', () => {
  let kvm: native.Fd;
  let vm: native.Fd;
  beforeAll(() => {
    kvm = native.kvmOpen();
    vm = native.kvmCreateVm(kvm, native.KVM_X86_DEFAULT_VM);
  });
  afterAll(() => {
    vm.close();
    kvm.close();
  });

  test('API version 12, VM fd is CLOEXEC, capabilities on the VM and on /dev/kvm', () => {
    expect(native.kvmGetApiVersion(kvm)).toBe(native.KVM_API_VERSION);
    expect(kvm.cloexec).toBe(true);
    expect(vm.cloexec).toBe(true);
    expect(fs.readlinkSync(`/proc/self/fd/${vm.fd}`)).toBe('anon_inode:kvm-vm');
    for (const fd of [vm, kvm]) {
      expect(native.kvmCheckExtension(fd, native.KVM_CAP_GUEST_MEMFD)).toBe(1);
      expect(native.kvmCheckExtension(fd, native.KVM_CAP_USER_MEMORY2)).toBe(1);
      expect(native.kvmCheckExtension(fd, native.KVM_CAP_GUEST_MEMFD_FLAGS) & SHARED).toBe(SHARED);
      expect(native.kvmCheckExtension(fd, native.KVM_CAP_VM_TYPES) & (1 << native.KVM_X86_DEFAULT_VM)).toBe(1);
    }
    expect(native.kvmCheckExtension(vm, 0x7fffffff)).toBe(0); // unknown caps read as 0
    // When the first fd fails the ioctl (ENOTTY on a memfd here), the fallback asks /dev/kvm:
    // QEMU's kvm_vm_check_extension() for kernels without VM-wide checks.
    const notKvm = native.memfdCreate('hmd-nk-notkvm', native.MFD_CLOEXEC);
    expect(native.kvmCheckExtension(notKvm, native.KVM_CAP_GUEST_MEMFD)).toBe(0);
    expect(native.kvmCheckExtension(notKvm, native.KVM_CAP_GUEST_MEMFD, kvm)).toBe(1);
    notKvm.close();
    // A closed Fd never reaches the kernel: its number may belong to another file by now.
    expect(sysError(() => native.kvmCheckExtension(notKvm, native.KVM_CAP_GUEST_MEMFD, kvm)).code).toBe('EBADF');
  });

  test('MMAP|INIT_SHARED guest_memfd: anon_inode:[kvm-gmem], not CLOEXEC, mmap shared, bytes read back, populate', async () => {
    const size = 6n * MiB + 4n * KiB;
    const gmem = native.kvmCreateGuestMemfd(vm, size, SHARED);
    expect(fs.readlinkSync(`/proc/self/fd/${gmem.fd}`)).toBe(GMEM);
    expect(gmem.cloexec).toBe(false); // facts §10.2
    gmem.setCloexec(true);
    expect(gmem.cloexec).toBe(true);
    const st = native.fstat(gmem);
    expect([st.size, st.mode & native.S_IFMT, st.blocks]).toEqual([size, native.S_IFREG, 0n]);
    const m = native.mmap(size, RW, native.MAP_SHARED, gmem, 0n);
    const [e] = findMappings(size, GMEM);
    expect(e.perms).toBe('rw-s');
    const pattern = Buffer.from('guest memory through the host mapping');
    m.write(2n * MiB + 17n, pattern);
    expect(m.read(2n * MiB + 17n, pattern.length)).toEqual(pattern);
    const second = native.mmap(2n * MiB, native.PROT_READ, native.MAP_SHARED, gmem, 2n * MiB);
    expect(second.read(17, pattern.length)).toEqual(pattern);
    second.unmap();
    await native.preallocate(m, 2);
    expect(m.residentBytes()).toBe(size);
    expect(BigInt(findMappings(size, GMEM)[0].rssKb) * KiB).toBe(size);
    expect(m.read(2n * MiB + 17n, pattern.length)).toEqual(pattern); // populate keeps data
    native.fallocatePunchHole(gmem, 0n, MiB);
    expect(m.residentBytes()).toBe(size - MiB);
    m.unmap();
    gmem.close();
    expect(findMappings(size, GMEM)).toHaveLength(0);
    expect(fdTargets().filter((t) => t === GMEM)).toHaveLength(0);
  });

  test('bound into a memslot through its own mapping; the same range cannot back a second slot', () => {
    const size = 2n * MiB;
    const gmem = native.kvmCreateGuestMemfd(vm, size, SHARED);
    const m = native.mmap(size, RW, native.MAP_SHARED, gmem, 0n);
    const slot = { slot: 0, flags: native.KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0n, memorySize: size, mapping: m, guestMemfd: gmem, guestMemfdOffset: 0n };
    native.kvmSetUserMemoryRegion2(vm, slot);
    const e = sysError(() => native.kvmSetUserMemoryRegion2(vm, { ...slot, slot: 1, guestPhysAddr: 1n << 30n }));
    expect([e.code, e.syscall]).toEqual(['EINVAL', 'ioctl(KVM_SET_USER_MEMORY_REGION2)']);
    expect(() => native.kvmSetUserMemoryRegion2(vm, { ...slot, slot: 2, mappingOffset: 4096n })).toThrow(RangeError);
    native.kvmSetUserMemoryRegion2(vm, { slot: 0, flags: 0, guestPhysAddr: 0n, memorySize: 0n }); // delete
    m.unmap();
    gmem.close();
  });

  test('refusals and their errnos (facts §6.1-§6.4)', () => {
    const expectErrno = (fn: () => unknown, code: string): void => expect(sysError(fn).code).toBe(code);
    const create = (size: bigint, flags: number | bigint, fd = vm): native.Fd => native.kvmCreateGuestMemfd(fd, size, flags);
    const zero = sysError(() => create(0n, SHARED));
    expect([zero.code, zero.strerror, zero.syscall]).toEqual(['EINVAL', 'Invalid argument', 'ioctl(KVM_CREATE_GUEST_MEMFD)']);
    expectErrno(() => create(2n * MiB, 0x4), 'EINVAL'); // unsupported flag
    expectErrno(() => create(2n * MiB, 1n << 63n), 'EINVAL');
    expectErrno(() => create(4097n, SHARED), 'EINVAL'); // not page aligned
    expectErrno(() => create(1n << 63n, SHARED), 'EINVAL'); // negative loff_t
    expectErrno(() => create(2n * MiB, SHARED, kvm), 'EINVAL'); // on /dev/kvm instead of the VM
    const gmem = create(2n * MiB, SHARED);
    expectErrno(() => native.mmap(2n * MiB, RW, native.MAP_PRIVATE, gmem, 0n), 'EINVAL');
    expectErrno(() => native.ftruncate(gmem, 4n * MiB), 'EINVAL'); // the size is fixed
    expectErrno(() => native.fallocate(gmem, 0, 0n, MiB), 'EOPNOTSUPP'); // KEEP_SIZE required
    expectErrno(() => native.addSeals(gmem, native.F_SEAL_GROW), 'EINVAL');
    gmem.close();
    const noMmap = create(2n * MiB, 0);
    expectErrno(() => native.mmap(2n * MiB, RW, native.MAP_SHARED, noMmap, 0n), 'ENODEV');
    noMmap.close();
  });

  test('MMAP without INIT_SHARED: populate fails with EFAULT instead of a fatal SIGBUS', async () => {
    const gmem = native.kvmCreateGuestMemfd(vm, 2n * MiB, native.GUEST_MEMFD_FLAG_MMAP);
    const m = native.mmap(2n * MiB, RW, native.MAP_SHARED, gmem, 0n);
    await expect(native.populateWrite(m)).rejects.toMatchObject({ code: 'EFAULT', strerror: 'Bad address' });
    m.unmap();
    gmem.close();
  });
});
