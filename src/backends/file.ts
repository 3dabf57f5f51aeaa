// memory-backend-file: memory backed by a file or an unlinked file in a directory (hugetlbfs,
// DAX, tmpfs), with align/offset/readonly/rom/discard-data (qemu-facts §5.4). pmem needs
// libpmem's MAP_SYNC guarantees, which hostmemd does not offer: pmem=on is refused.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';
import { PropertyDef, RegisteredType, SetPhase } from '../qom/object';
import { visitBool, visitEnum, visitStr, visitUint64 } from '../qom/visit';
import type { ReleaseMode } from '../qom/user-creatable';
import { Allocation, BackendServices, HostMemoryBackend } from './hostmem';
import { mapFor, roundUp } from './map';

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

export class FileBackend extends HostMemoryBackend {
  memPath = '';
  align = 0n;
  offset = 0n;
  discardData = false;
  readonly = false;
  rom: 'auto' | 'on' | 'off' = 'auto';

  constructor(type: RegisteredType, id: string, services: BackendServices) {
    super(type, id, services);
    this.aligned = true;
  }

  protected alloc(): Allocation {
    if (this.size === 0n) throw genericError("can't create backend with size 0");
    if (!this.memPath) throw genericError('mem-path property not set');
    if (this.rom === 'on' && !this.readonly) throw genericError("property 'rom' = 'on' is not supported with 'readonly' = 'off'");
    if (this.rom === 'off' && this.readonly && this.share) {
      throw genericError("property 'rom' = 'off' is incompatible with 'readonly' = 'on' and 'share' = 'on'");
    }
    const romOn = this.rom === 'on' || (this.rom === 'auto' && this.readonly);
    let fd = this.services.fds.find(this.memName);
    if (!fd) fd = this.openBackingStore();
    try {
      const page = native.fdPageSize(fd);
      const align = this.align === 0n ? BigInt(page) : this.align;
      if (align % BigInt(page) !== 0n) throw genericError(`alignment ${hex(align)} must be multiples of page size ${hex(page)}`);
      if ((align & (align - 1n)) !== 0n) throw genericError(`alignment ${hex(align)} must be a power of two`);
      if (this.offset % BigInt(page) !== 0n) throw genericError(`offset ${hex(this.offset)} must be multiples of page size ${hex(page)}`);
      if (this.size < BigInt(page)) throw genericError(`memory size ${hex(this.size)} must be equal to or larger than page size ${hex(page)}`);
      const need = roundUp(this.size, page);
      const fileSize = native.fstat(fd).size;
      if (fileSize > 0n && fileSize < need + this.offset) {
        throw genericError(`${this.memName} backing store size ${hex(fileSize)} is too small for 'size' option ${hex(need)} plus 'offset' option ${hex(this.offset)}`);
      }
      if (fileSize === 0n && !this.readonly) native.ftruncate(fd, need + this.offset);
      return { fd, mapping: mapFor(this, fd, page, { readonly: romOn, offset: this.offset }), pageSize: page };
    } catch (e) {
      fd.close();
      throw e;
    }
  }

  /** Opens mem-path: an existing file, a new file (0644), or an unlinked temp file in a
   *  directory. */
  private openBackingStore(): native.Fd {
    const p = this.memPath;
    const fail = (e: unknown): never => {
      throw failedWith(`can't open backing store ${p} for guest RAM`, e);
    };
    let isDir = false;
    try {
      isDir = fs.statSync(p).isDirectory();
    } catch {
      /* missing: created below */
    }
    if (isDir) {
      const tmp = path.join(p, `hostmemd_back_mem.${this.name}.${crypto.randomBytes(4).toString('hex')}`);
      try {
        const fd = native.openFile(tmp, native.O_RDWR | native.O_CREAT | native.O_EXCL | native.O_CLOEXEC, 0o600);
        try {
          fs.unlinkSync(tmp);
        } catch (e) {
          fd.close();
          throw e;
        }
        return fd;
      } catch (e) {
        return fail(e);
      }
    }
    const flags = (this.readonly ? native.O_RDONLY : native.O_RDWR | native.O_CREAT) | native.O_CLOEXEC;
    try {
      return native.openFile(p, flags, 0o644);
    } catch (e) {
      return fail(e);
    }
  }

  protected override get contentsInPath(): boolean {
    return true;
  }

  override release(mode: ReleaseMode): void {
    // Discarded when the object ends or the process exits, as QEMU does; never when another
    // holder carries on with the file (handover).
    if (mode !== 'kept' && this.discardData && this.fd && this.mapping) {
      try {
        native.fallocatePunchHole(this.fd, this.offset, roundUp(this.size, this.pageSize));
      } catch {
        /* best effort, as QEMU's discard on unparent */
      }
    }
    super.release(mode);
  }
}

type F = FileBackend;
const frozenText = (o: F, phase: SetPhase, name: string, period = ''): void => {
  if (phase === 'live' && o.created) throw genericError(`cannot change property '${name}' of ${o.typeName}${period}`);
};

export const FILE_PROPERTIES: PropertyDef<F>[] = [
  {
    name: 'mem-path',
    type: 'string',
    description: 'File, or directory for an unlinked file, that backs the memory',
    get: (o) => o.memPath,
    set: (o, v, phase) => {
      frozenText(o, phase, 'mem-path');
      o.memPath = visitStr('mem-path', v);
    },
  },
  {
    name: 'discard-data',
    type: 'bool',
    description: "Drop the file's contents when the backend is deleted",
    defaultValue: false,
    get: (o) => o.discardData,
    set: (o, v) => {
      o.discardData = visitBool('discard-data', v);
    },
  },
  {
    name: 'align',
    type: 'int',
    description: 'Alignment of the mapping (0: the page size)',
    get: (o) => Number(o.align),
    set: (o, v, phase) => {
      frozenText(o, phase, 'align');
      o.align = visitUint64('align', v);
    },
  },
  {
    name: 'offset',
    type: 'int',
    description: 'Where in the file the memory starts',
    defaultValue: 0,
    get: (o) => Number(o.offset),
    set: (o, v, phase) => {
      frozenText(o, phase, 'offset');
      o.offset = visitUint64('offset', v);
    },
  },
  {
    name: 'pmem',
    type: 'bool',
    description: 'The file is persistent memory (not supported by hostmemd)',
    defaultValue: false,
    get: () => false,
    set: (o, v, phase) => {
      frozenText(o, phase, 'pmem', '.');
      if (visitBool('pmem', v)) {
        throw genericError(`Lack of libpmem support while setting the 'pmem=on' of ${o.typeName}. We can't ensure data persistence.`);
      }
    },
  },
  {
    name: 'readonly',
    type: 'bool',
    description: 'Open the file read-only',
    defaultValue: false,
    get: (o) => o.readonly,
    set: (o, v, phase) => {
      frozenText(o, phase, 'readonly', '.');
      o.readonly = visitBool('readonly', v);
    },
  },
  {
    name: 'rom',
    type: 'OnOffAuto',
    description: "Map the memory read-only ('auto': follow readonly)",
    defaultValue: 'auto',
    get: (o) => o.rom,
    set: (o, v, phase) => {
      frozenText(o, phase, 'rom', '.');
      o.rom = visitEnum('rom', v, ['auto', 'on', 'off'] as const);
    },
  },
];
