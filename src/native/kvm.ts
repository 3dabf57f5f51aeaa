// KVM bindings for guest_memfd: ioctl numbers computed from struct sizes like <linux/ioctl.h>,
// /dev/kvm, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_CREATE_GUEST_MEMFD and
// KVM_SET_USER_MEMORY_REGION2. Only bindings: which flags to use and the texts users see belong
// to the accelerator layer. The distro's linux/kvm.h is 6.1 (facts §1), so all is defined here.
import * as ffi from './ffi';
import { check } from './errno';
import { Fd } from './fd';
import { Mapping, mappingAddress } from './mapping';
import { O_CLOEXEC, O_RDWR } from './constants';
import { open } from './libc';

// ---- ioctl numbers: <asm-generic/ioctl.h> -----------------------------------------------------

const IOC_NRBITS = 8;
const IOC_TYPEBITS = 8;
const IOC_SIZEBITS = 14;
const IOC_NRSHIFT = 0;
const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;
export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;

/** _IOC(dir, type, nr, size) as an unsigned 32-bit number (0xc040aed4 needs >>> 0). */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  if (size < 0 || size >= 1 << IOC_SIZEBITS) throw new RangeError(`ioctl argument size ${size} does not fit _IOC_SIZEBITS`);
  return ((dir << IOC_DIRSHIFT) | (size << IOC_SIZESHIFT) | (type << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT)) >>> 0;
}
export const _IO = (type: number, nr: number): number => _IOC(IOC_NONE, type, nr, 0);
/** The kernel writes `size` bytes to userspace. */
export const _IOR = (type: number, nr: number, size: number): number => _IOC(IOC_READ, type, nr, size);
/** Userspace passes `size` bytes to the kernel. */
export const _IOW = (type: number, nr: number, size: number): number => _IOC(IOC_WRITE, type, nr, size);
export const _IOWR = (type: number, nr: number, size: number): number => _IOC(IOC_READ | IOC_WRITE, type, nr, size);

// ---- structures: linux/kvm.h (6.18), verified sizes in facts §4 ------------------------------

/** struct kvm_create_guest_memfd: 64 bytes. reserved[] is not validated by 6.18 but must be zero
 *  for future kernels (facts §10.3); a fresh Buffer is. */
const CREATE_GUEST_MEMFD = ffi.layout({ size: 'uint64_t', flags: 'uint64_t', reserved: ['uint64_t', 6] });

/** struct kvm_userspace_memory_region2: 160 bytes. */
const USER_MEMORY_REGION2 = ffi.layout({
  slot: 'uint32_t', flags: 'uint32_t', guest_phys_addr: 'uint64_t', memory_size: 'uint64_t', userspace_addr: 'uint64_t',
  guest_memfd_offset: 'uint64_t', guest_memfd: 'uint32_t', pad1: 'uint32_t', pad2: ['uint64_t', 14],
});

/** Sizes as laid out by koffi, for the tests that compare them with facts §4. */
export const KVM_STRUCT_SIZES = { kvm_create_guest_memfd: CREATE_GUEST_MEMFD.size, kvm_userspace_memory_region2: USER_MEMORY_REGION2.size };

// ---- ioctls and constants: linux/kvm.h --------------------------------------------------------

export const KVMIO = 0xae;
export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
export const KVM_CREATE_VM = _IO(KVMIO, 0x01);
export const KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
/** VM ioctl, = 0x40a0ae49. */
export const KVM_SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, USER_MEMORY_REGION2.size);
/** VM ioctl (on /dev/kvm it gives EINVAL), = 0xc040aed4; returns the new fd. */
export const KVM_CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, CREATE_GUEST_MEMFD.size);

export * from './kvm-constants';
import { KVM_X86_DEFAULT_VM } from './kvm-constants';

// ---- calls ------------------------------------------------------------------------------------

/** open("/dev/kvm", O_RDWR | O_CLOEXEC) as QEMU does. */
export function kvmOpen(device = '/dev/kvm'): Fd {
  return open(device, O_RDWR | O_CLOEXEC);
}

export function kvmGetApiVersion(kvm: Fd): number {
  return check('ioctl(KVM_GET_API_VERSION)', ffi.ioctlInt(kvm.raw('ioctl(KVM_GET_API_VERSION)'), KVM_GET_API_VERSION, 0));
}

/** KVM_CREATE_VM on /dev/kvm; the VM fd comes back with FD_CLOEXEC set. Only the creating
 *  process may issue VM ioctls later (others get EIO, facts §10.16). */
export function kvmCreateVm(kvm: Fd, type = KVM_X86_DEFAULT_VM): Fd {
  return new Fd(check('ioctl(KVM_CREATE_VM)', ffi.ioctlInt(kvm.raw('ioctl(KVM_CREATE_VM)'), KVM_CREATE_VM, type)));
}

/** KVM_CHECK_EXTENSION on `fd` (a VM or /dev/kvm); if that fails and `fallback` is given, on
 *  `fallback`. Returns 0 when unsupported or failing, like QEMU's kvm_vm_check_extension(),
 *  which falls back to the global /dev/kvm check when the VM-wide one is not implemented. */
export function kvmCheckExtension(fd: Fd, cap: number, fallback?: Fd): number {
  const rc = ffi.ioctlInt(fd.raw('ioctl(KVM_CHECK_EXTENSION)'), KVM_CHECK_EXTENSION, cap);
  if (rc >= 0) return rc;
  if (!fallback) return 0;
  return Math.max(0, ffi.ioctlInt(fallback.raw('ioctl(KVM_CHECK_EXTENSION)'), KVM_CHECK_EXTENSION, cap));
}

/** KVM_CREATE_GUEST_MEMFD on a VM fd. The size is fixed forever and must be page aligned; the
 *  new fd is not CLOEXEC (facts §6.1, §6.2). */
export function kvmCreateGuestMemfd(vm: Fd, size: bigint, flags: number | bigint): Fd {
  const arg = Buffer.alloc(CREATE_GUEST_MEMFD.size);
  arg.writeBigUInt64LE(BigInt.asUintN(64, size), CREATE_GUEST_MEMFD.offset('size'));
  arg.writeBigUInt64LE(BigInt.asUintN(64, BigInt(flags)), CREATE_GUEST_MEMFD.offset('flags'));
  const syscall = 'ioctl(KVM_CREATE_GUEST_MEMFD)';
  return new Fd(check(syscall, ffi.ioctlPtr(vm.raw(syscall), KVM_CREATE_GUEST_MEMFD, arg)));
}

export interface UserMemoryRegion2 {
  /** (address space << 16) | slot id. */
  slot: number;
  /** KVM_MEM_* flags, e.g. KVM_MEM_GUEST_MEMFD. */
  flags: number;
  guestPhysAddr: bigint;
  /** 0 deletes the slot. */
  memorySize: bigint;
  /** The host mapping backing the slot; userspace_addr = its address + mappingOffset. For a
   *  guest_memfd slot it must be that gmem's own mapping (facts §10.13). Omit to delete. */
  mapping?: Mapping;
  mappingOffset?: bigint;
  guestMemfd?: Fd;
  guestMemfdOffset?: bigint;
}

/** KVM_SET_USER_MEMORY_REGION2 on a VM fd. The mapping range is bounds-checked, so the address
 *  handed to KVM is always inside a live Mapping. */
export function kvmSetUserMemoryRegion2(vm: Fd, r: UserMemoryRegion2): void {
  const syscall = 'ioctl(KVM_SET_USER_MEMORY_REGION2)';
  const L = USER_MEMORY_REGION2;
  const arg = Buffer.alloc(L.size);
  const hva = r.mapping ? mappingAddress(r.mapping, syscall, r.mappingOffset ?? 0n, r.memorySize) : 0n;
  arg.writeUInt32LE(r.slot >>> 0, L.offset('slot'));
  arg.writeUInt32LE(r.flags >>> 0, L.offset('flags'));
  arg.writeBigUInt64LE(BigInt.asUintN(64, r.guestPhysAddr), L.offset('guest_phys_addr'));
  arg.writeBigUInt64LE(BigInt.asUintN(64, r.memorySize), L.offset('memory_size'));
  arg.writeBigUInt64LE(hva, L.offset('userspace_addr'));
  arg.writeBigUInt64LE(BigInt.asUintN(64, r.guestMemfdOffset ?? 0n), L.offset('guest_memfd_offset'));
  arg.writeUInt32LE(r.guestMemfd ? r.guestMemfd.raw(syscall) : 0, L.offset('guest_memfd'));
  check(syscall, ffi.ioctlPtr(vm.raw(syscall), KVM_SET_USER_MEMORY_REGION2, arg));
}
