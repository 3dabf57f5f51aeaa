// The memory-region child every created backend shows as `<name>[0]` (QEMU's MemoryRegion of
// the backend's RAM): read-only properties in QEMU 7.2's order, `size` the backend's. It is
// only a view for clients that walk the QOM tree; the memory itself belongs to the backend.
import { PropertyDef, QomObject, RegisteredType, TypeRegistry } from '../qom/object';
import { JsonValue } from '../json/value';

export const MEMORY_REGION = 'memory-region';

/** The backend it belongs to, as far as the region needs it (no import of hostmem.ts). */
interface RegionOwner extends QomObject {
  readonly size: bigint;
}

export class MemoryRegion extends QomObject {
  constructor(
    type: RegisteredType,
    name: string,
    private readonly owner: RegionOwner,
  ) {
    super(type, name);
  }

  get size(): bigint {
    return this.owner.size;
  }
}

/** The child's name: QEMU escapes '/' of the region's name (a canonical-path RAMBlock name)
 *  as the four characters `\x2f` and appends the first free index, `[0]`. */
export function memoryRegionChildName(regionName: string): string {
  return `${regionName.replaceAll('/', '\\x2f')}[0]`;
}

const intValue = (v: bigint): JsonValue => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

/** No setters: qom-set answers QEMU's "Property 'memory-region.X' is not writable". A region
 *  of a backend is in no container and at no address until a machine maps it: `container` is
 *  the empty link, `addr` and `priority` 0. */
const REGION_PROPERTIES: PropertyDef<MemoryRegion>[] = [
  { name: 'container', type: 'link<memory-region>', get: () => '' },
  { name: 'addr', type: 'uint64', get: () => 0 },
  { name: 'size', type: 'uint64', get: (o) => intValue(o.size) },
  { name: 'priority', type: 'uint32', get: () => 0 },
];

export function registerMemoryRegionType(reg: TypeRegistry): RegisteredType {
  return reg.register({ name: MEMORY_REGION, parent: 'object', properties: REGION_PROPERTIES as unknown as PropertyDef[] });
}
