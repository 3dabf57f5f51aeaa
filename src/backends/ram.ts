// memory-backend-ram: anonymous private memory, or with share=on a memfd named after the
// backend mapped shared (QEMU's qemu_ram_get_shared_fd path, qemu-facts §5.4), so that even
// shared RAM has an fd that can be kept across restarts.
import * as native from '../native';
import { failedWith } from '../errors/text';
import { Allocation, HostMemoryBackend } from './hostmem';
import { checkFdSize, mapFor, roundUp } from './map';

export class RamBackend extends HostMemoryBackend {
  protected alloc(): Allocation {
    const page = native.pageSize();
    if (!this.share) return { mapping: mapFor(this, undefined, page), pageSize: page };
    const kept = this.services.fds.find(this.memName);
    if (kept) {
      checkFdSize(this, kept, page);
      return { fd: kept, mapping: mapFor(this, kept, page), pageSize: page };
    }
    let fd: native.Fd | undefined;
    try {
      fd = native.memfdCreate(this.memName, native.MFD_CLOEXEC);
      native.ftruncate(fd, roundUp(this.size, page));
    } catch (e) {
      fd?.close();
      throw failedWith(`cannot set up guest memory '${this.memName}'`, e);
    }
    return { fd, mapping: mapFor(this, fd, page), pageSize: page };
  }
}
