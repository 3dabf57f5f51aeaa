// memory-backend-memfd: memory from memfd_create(2) with optional huge pages and seals
// (qemu-facts §5.4), and the competing guest_memfd proposal's `guest-memfd=on` (§6.4), which
// takes the fd from KVM instead.
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';
import { PropertyDef, RegisteredType } from '../qom/object';
import { visitBool, visitUint64 } from '../qom/visit';
import { Allocation, BackendServices, HostMemoryBackend } from './hostmem';
import { checkFdSize, mapFor } from './map';

/** Creates a guest_memfd for shared use; provided by the KVM accelerator. */
export type GuestMemfdFactory = (size: bigint) => native.Fd;

export interface MemfdServices extends BackendServices {
  createGuestMemfd: GuestMemfdFactory;
  /** A copy of the KVM VM fd every guest_memfd belongs to (memdev-export passes it along):
   *  undefined without KVM. */
  guestMemfdVm?(): native.Fd | undefined;
}

export class MemfdBackend extends HostMemoryBackend {
  hugetlb = false;
  hugetlbsize = 0n;
  seal = true;
  guestMemfd = false;

  constructor(type: RegisteredType, id: string, override readonly services: MemfdServices) {
    super(type, id, services);
    this.share = true;
    this.aligned = true;
  }

  protected alloc(): Allocation {
    if (this.size === 0n) throw genericError("can't create backend with size 0");
    if (this.guestMemfd && !this.share) throw genericError('Guest-memfd=on must be used with share=on');
    let fd = this.services.fds.find(this.memName);
    let page = native.pageSize();
    if (!fd) {
      if (this.guestMemfd) {
        fd = this.services.createGuestMemfd(this.size);
      } else {
        let flags = native.MFD_CLOEXEC | (this.seal ? native.MFD_ALLOW_SEALING : 0);
        // QEMU 7.2 checks hugetlbsize whether or not hugetlb is on; it derives the page-size
        // code with ctz64, so odd values pass and mean "default" (§5.4).
        const v = this.hugetlbsize;
        if (v !== 0n && (v & 1n) === 0n && (v & (v - 1n)) !== 0n) throw genericError('Hugepage size must be a power of 2');
        if (this.hugetlb) {
          flags |= native.MFD_HUGETLB;
          if (this.hugetlbsize !== 0n) {
            let shift = 0;
            while (((v >> BigInt(shift)) & 1n) === 0n) shift++;
            flags |= shift << native.MFD_HUGE_SHIFT;
          }
        }
        try {
          fd = native.memfdCreate('memory-backend-memfd', flags);
        } catch (e) {
          throw failedWith(`failed to create memfd with flags 0x${flags.toString(16)}`, e);
        }
        if (this.hugetlb) {
          try {
            page = native.fstatBlockSize(fd);
          } catch (e) {
            fd.close();
            throw e;
          }
        }
        try {
          native.ftruncate(fd, this.size);
        } catch (e) {
          fd.close();
          throw failedWith(`failed to resize memfd to ${this.size}`, e);
        }
        if (this.seal) {
          const seals = native.F_SEAL_GROW | native.F_SEAL_SHRINK | native.F_SEAL_SEAL;
          try {
            native.addSeals(fd, seals);
          } catch (e) {
            fd.close();
            throw failedWith(`failed to add seals 0x${seals.toString(16)}`, e);
          }
        }
      }
    }
    checkFdSize(this, fd, page);
    return { fd, mapping: mapFor(this, fd, page), pageSize: page };
  }
}

type M = MemfdBackend;
export const MEMFD_PROPERTIES: PropertyDef<M>[] = [
  {
    name: 'hugetlb',
    type: 'bool',
    description: 'Back the memory with huge pages',
    defaultValue: false,
    // Like seal: the memfd is made; QEMU takes a later value to no effect (qemu-facts §5.4).
    inertAfterCreation: true,
    get: (o) => o.hugetlb,
    set: (o, v) => {
      o.hugetlb = visitBool('hugetlb', v);
    },
  },
  {
    name: 'seal',
    type: 'bool',
    description: 'Seal the memfd against growing and shrinking',
    defaultValue: true,
    inertAfterCreation: true,
    get: (o) => o.seal,
    set: (o, v) => {
      o.seal = visitBool('seal', v);
    },
  },
  {
    name: 'hugetlbsize',
    type: 'int',
    description: 'Huge page size (0: the default huge page size)',
    get: (o) => Number(o.hugetlbsize),
    set: (o, v, phase) => {
      if (phase === 'live' && o.created) throw genericError('cannot change property value');
      const size = visitUint64('hugetlbsize', v);
      if (size === 0n) throw genericError("Property 'memory-backend-memfd.hugetlbsize' doesn't take value '0'");
      o.hugetlbsize = size;
    },
  },
  {
    name: 'guest-memfd',
    type: 'bool',
    description: 'Create the memory as a mappable, initially shared KVM guest_memfd',
    defaultValue: false,
    get: (o) => o.guestMemfd,
    set: (o, v, phase) => {
      if (phase === 'live' && o.created) throw genericError('cannot change property value');
      o.guestMemfd = visitBool('guest-memfd', v);
    },
  },
];
