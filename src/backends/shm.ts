// memory-backend-shm: POSIX shared memory from shm_open(3), unlinked at once so only the fd
// holds it (qemu-facts §5.4). Always shared. The name is random, not QEMU's predictable
// `/qemu-PID-shm-N`: /dev/shm is writable by every local user, who could otherwise pre-create
// the next name and make object-add fail with EEXIST.
import { randomBytes } from 'node:crypto';
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';
import { RegisteredType } from '../qom/object';
import { Allocation, BackendServices, HostMemoryBackend } from './hostmem';
import { mapFor, roundUp } from './map';

/** How many random names are tried when shm_open(O_EXCL) finds one taken (a 128-bit name is
 *  never guessed; a clash means someone squats names by the thousand, or a broken RNG). After
 *  that: `failed to create POSIX shared memory: File exists`. */
export const SHM_NAME_ATTEMPTS = 8;

/** `/hostmemd-shm-<32 hex digits>`: 128 random bits, so no other user can predict it. */
function randomShmName(): string {
  return `/hostmemd-shm-${randomBytes(16).toString('hex')}`;
}

/** shm_open(O_CREAT|O_EXCL) under a fresh random name, again under another when one exists. */
function createShm(): { fd: native.Fd; name: string } {
  for (let attempt = 1; ; attempt++) {
    const name = randomShmName();
    try {
      return { fd: native.shmOpen(name, native.O_RDWR | native.O_CREAT | native.O_EXCL, 0), name };
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'EEXIST' || attempt >= SHM_NAME_ATTEMPTS) throw e;
    }
  }
}

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
      let name: string;
      try {
        ({ fd, name } = createShm());
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
