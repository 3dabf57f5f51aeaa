// The KVM accelerator: opens /dev/kvm once, checks the API version, creates the one VM (type
// 0) that owns every guest_memfd, and probes its capabilities the way the seed patch does.
// It decides the policy and the seed's error texts; the ioctls themselves are in native/.
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';

export interface KvmProbe {
  apiVersion: number;
  guestMemfd: boolean;
  userMemory2: boolean;
  /** KVM_CAP_GUEST_MEMFD_FLAGS: the supported creation flags. */
  guestMemfdFlags: number;
  memoryAttributes: number;
  vmTypes: number;
}

export interface KvmFacts {
  enabled: boolean;
  present: boolean;
  probe?: KvmProbe;
  /** Why guest_memfd backends cannot be created, when they cannot. */
  unavailable?: string;
}

const STUB_TEXT = 'guest_memfd is not supported for this configuration';
const SHARED_FLAGS = native.GUEST_MEMFD_FLAG_MMAP | native.GUEST_MEMFD_FLAG_INIT_SHARED;

export class KvmAccelerator {
  private constructor(
    private readonly kvmFd: native.Fd | undefined,
    private readonly vmFd: native.Fd | undefined,
    readonly facts: KvmFacts,
  ) {}

  /** `--accel none`, or no usable /dev/kvm: QEMU's KVM stub behaviour. */
  static disabled(reason: string): KvmAccelerator {
    return new KvmAccelerator(undefined, undefined, { enabled: false, present: true, unavailable: reason });
  }

  /** Opens KVM and probes it; `override` replaces probed values (fault injection in tests). */
  static open(override: Partial<KvmProbe> = {}, device = '/dev/kvm'): KvmAccelerator {
    let kvmFd: native.Fd | undefined;
    let vmFd: native.Fd | undefined;
    try {
      kvmFd = native.kvmOpen(device);
      const apiVersion = native.kvmGetApiVersion(kvmFd);
      if (apiVersion !== native.KVM_API_VERSION) {
        kvmFd.close();
        return KvmAccelerator.disabled(`KVM API version ${apiVersion} is not the supported ${native.KVM_API_VERSION}`);
      }
      vmFd = native.kvmCreateVm(kvmFd, 0);
      const check = (cap: number): number => native.kvmCheckExtension(vmFd!, cap, kvmFd);
      const probe: KvmProbe = {
        apiVersion,
        guestMemfd: check(native.KVM_CAP_GUEST_MEMFD) > 0,
        userMemory2: check(native.KVM_CAP_USER_MEMORY2) > 0,
        guestMemfdFlags: Math.max(0, check(native.KVM_CAP_GUEST_MEMFD_FLAGS)),
        memoryAttributes: Math.max(0, check(native.KVM_CAP_MEMORY_ATTRIBUTES)),
        vmTypes: Math.max(0, check(native.KVM_CAP_VM_TYPES)),
        ...override,
      };
      let unavailable: string | undefined;
      if (!probe.guestMemfd || !probe.userMemory2) unavailable = 'KVM lacks KVM_CAP_GUEST_MEMFD or KVM_CAP_USER_MEMORY2';
      else if ((probe.guestMemfdFlags & SHARED_FLAGS) !== SHARED_FLAGS) unavailable = 'KVM lacks GUEST_MEMFD_FLAG_MMAP or GUEST_MEMFD_FLAG_INIT_SHARED';
      return new KvmAccelerator(kvmFd, vmFd, { enabled: true, present: true, probe, unavailable });
    } catch (e) {
      vmFd?.close();
      kvmFd?.close();
      const why = e instanceof native.SysError ? `${e.syscall}: ${e.strerror}` : String(e);
      return KvmAccelerator.disabled(`cannot use ${device}: ${why}`);
    }
  }

  /** kvm_create_guest_memfd_shared() of the seed, with its texts. */
  createSharedGuestMemfd(size: bigint): native.Fd {
    if (!this.vmFd || !this.facts.probe) throw genericError(STUB_TEXT);
    const p = this.facts.probe;
    if ((p.guestMemfdFlags & SHARED_FLAGS) !== SHARED_FLAGS) throw genericError('KVM does not support using guest_memfd for shared memory');
    if (!p.guestMemfd || !p.userMemory2) throw genericError('KVM does not support guest_memfd');
    try {
      return native.kvmCreateGuestMemfd(this.vmFd, size, SHARED_FLAGS);
    } catch (e) {
      throw failedWith('Error creating KVM guest_memfd', e);
    }
  }

  /** A copy of the VM fd that owns every guest_memfd (memdev-export), or undefined. */
  dupVmFd(): native.Fd | undefined {
    return this.vmFd?.isOpen ? this.vmFd.dup() : undefined;
  }

  close(): void {
    this.vmFd?.close();
    this.kvmFd?.close();
  }
}
