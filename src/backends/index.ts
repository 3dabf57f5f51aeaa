// Registers the memory-backend QOM types (abstract memory-backend and its concrete kinds)
// with their class property tables, in the order QEMU lists them.
import { PropertyDef, TypeRegistry } from '../qom/object';
import { HostMemoryBackend, MEMORY_BACKEND_PROPERTIES } from './hostmem';
import { RamBackend } from './ram';
import { MemfdBackend, MEMFD_PROPERTIES, MemfdServices } from './memfd';
import { FileBackend, FILE_PROPERTIES } from './file';
import { ShmBackend } from './shm';
import { GuestMemfdBackend } from './guest-memfd';
import { registerMemoryRegionType } from './memory-region';

export { HostMemoryBackend, PreallocTracker } from './hostmem';
export type { BackendServices, PreallocEntry } from './hostmem';
export type { MemfdServices } from './memfd';
export { exportMemory, notABackend, EXPORT_PRIVATE_TEXT, EXPORT_PREALLOC_TEXT, EXPORT_NOT_BACKEND_TEXT, EXPORT_NO_FD_TEXT } from './export';
export type { ExportedMemory } from './export';

export const MEMORY_BACKEND = 'memory-backend';

export function registerBackendTypes(reg: TypeRegistry, memfdServices: MemfdServices): void {
  // Backends show their memory region as a child, as QEMU's do.
  const services: MemfdServices = { ...memfdServices, memoryRegion: registerMemoryRegionType(reg) };
  const props = <T>(p: PropertyDef<T & HostMemoryBackend>[]): PropertyDef[] => p as unknown as PropertyDef[];
  reg.register({ name: MEMORY_BACKEND, parent: 'object', abstract: true, userCreatable: true, properties: props(MEMORY_BACKEND_PROPERTIES) });
  const ram = reg.register({ name: 'memory-backend-ram', parent: MEMORY_BACKEND, userCreatable: true, create: (id) => new RamBackend(ram, id, services) });
  const file = reg.register({
    name: 'memory-backend-file',
    parent: MEMORY_BACKEND,
    userCreatable: true,
    properties: props(FILE_PROPERTIES),
    create: (id) => new FileBackend(file, id, services),
  });
  const memfd = reg.register({
    name: 'memory-backend-memfd',
    parent: MEMORY_BACKEND,
    userCreatable: true,
    properties: props(MEMFD_PROPERTIES),
    create: (id) => new MemfdBackend(memfd, id, services),
  });
  const shm = reg.register({ name: 'memory-backend-shm', parent: MEMORY_BACKEND, userCreatable: true, create: (id) => new ShmBackend(shm, id, services) });
  const gmem = reg.register({
    name: 'memory-backend-guest-memfd',
    parent: MEMORY_BACKEND,
    userCreatable: true,
    create: (id) => new GuestMemfdBackend(gmem, id, services),
  });
}
