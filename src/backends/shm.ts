// memory-backend-shm: POSIX shared memory from shm_open(3), unlinked at once so only the fd
// holds it (qemu-facts §5.4). Always shared.
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';
import { RegisteredType } from '../qom/object';
import { Allocation, BackendServices, HostMemoryBackend } from './hostmem';
import { mapFor, roundUp } from './map';

let seq = 0;

export class ShmBackend extends HostMemoryBackend {
  constructor(type: RegisteredType, id: string, services: BackendServices) {
    super(type, id, services);
    this.share = true;
  }

  protected alloc(): Allocation {
    if (this.size === 0n) throw genericError("can't create shm backend with size 0");
    if (!this.share) throw genericError("can't create shm backend with `share=off`");
    const page = native.pageSize();
    let fd = this.services.fds.find(this.memName);
    if (!fd) {
      const name = `/hostmemd-${process.pid}-shm-${seq++}`;
      try {
        fd = native.shmOpen(name, native.O_RDWR | native.O_CREAT | native.O_EXCL, 0);
      } catch (e) {
        throw failedWith(`failed to create POSIX shared memory`, e);
      }
      try {
        native.shmUnlink(name);
      } catch (e) {
        fd.close();
        throw failedWith(`failed to create POSIX shared memory`, e);
      }
      const size = roundUp(this.size, page);
      try {
        native.ftruncate(fd, size);
      } catch (e) {
        fd.close();
        throw failedWith(`failed to resize POSIX shared memory to ${size}`, e);
      }
    }
    return { fd, mapping: mapFor(this, fd, page), pageSize: page };
  }
}
