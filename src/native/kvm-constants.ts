// KVM's plain numbers (linux/kvm.h): API version, VM types, capabilities and flags. Kept apart
// from kvm.ts, whose ioctl numbers are sized from koffi structs, so that they load without koffi
// (the tests' fake native layer re-exports them).

/** The only KVM API version there has ever been (KVM_API_VERSION in linux/kvm.h). */
export const KVM_API_VERSION = 12;

/** KVM_CREATE_VM types (x86): only the default exists on this PVM host (facts §3, §5). */
export const KVM_X86_DEFAULT_VM = 0;

export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_USER_MEMORY2 = 231;
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
/** A bitmask of supported KVM_MEMORY_ATTRIBUTE_* (0 here). */
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
/** A bitmask of the VM types KVM_CREATE_VM accepts (1 << KVM_X86_DEFAULT_VM here). */
export const KVM_CAP_VM_TYPES = 235;
export const KVM_CAP_PRE_FAULT_MEMORY = 236;
/** A bitmask of the valid kvm_create_guest_memfd.flags (6.18-rc2; 3 here). */
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;

/** kvm_create_guest_memfd.flags. */
export const GUEST_MEMFD_FLAG_MMAP = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1;
/** kvm_userspace_memory_region2.flags. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;
