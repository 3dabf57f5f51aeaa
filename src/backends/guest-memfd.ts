// memory-backend-guest-memfd (the seed patch): memory from a KVM guest_memfd created with
// MMAP|INIT_SHARED, mapped shared. share defaults to on and cannot be turned off; size 0 is
// refused; a preserved fd of the same name is reused (cpr_find_fd) before creating one.
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { RegisteredType } from '../qom/object';
import { Allocation, HostMemoryBackend } from './hostmem';
import { checkFdSize, mapFor } from './map';
import { MemfdServices } from './memfd';

export class GuestMemfdBackend extends HostMemoryBackend {
  constructor(type: RegisteredType, id: string, override readonly services: MemfdServices) {
    super(type, id, services);
    this.share = true;
    this.aligned = true;
  }

  protected alloc(): Allocation {
    if (this.size === 0n) throw genericError("can't create backend with size 0");
    if (!this.share) throw genericError("can't create backend with share=off");
    const page = native.pageSize();
    const fd = this.services.fds.find(this.memName) ?? this.services.createGuestMemfd(this.size);
    checkFdSize(this, fd, page);
    return { fd, mapping: mapFor(this, fd, page), pageSize: page };
  }
}
