// memory-backend-file: memory backed by a file or an unlinked file in a directory (hugetlbfs,
// DAX, tmpfs), with align/offset/readonly/rom/discard-data (qemu-facts §5.4). pmem needs
// libpmem's MAP_SYNC guarantees, which hostmemd does not offer: pmem=on is refused. mem-path is
// confined to the allowed directories (mem-path.ts); inside them QEMU's semantics hold.
import * as crypto from 'node:crypto';
import * as native from '../native';
import { genericError, QmpError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';
import { PropertyDef, SetPhase } from '../qom/object';
import { visitBool, visitEnum, visitStr, visitUint64 } from '../qom/visit';
import type { ReleaseMode, RestoreSource } from '../qom/user-creatable';
import { Allocation, HostMemoryBackend } from './hostmem';
import { mapFor, roundUp } from './map';
import { fileType, isConfinementErrno, locateMemPath, memPathRefusal } from './mem-path';
import { parseFdsetPath } from '../fds/imported';

/** errnos file_ram_open looks at (<asm-generic/errno-base.h>). */
const ENOENT = 2;
const EEXIST = 17;
/** Creation races lost (EEXIST, then gone again) before giving up with QEMU's text. */
const CREATE_RETRIES = 4;

/** An fd set's fd that is not a regular file (a FIFO, socket, device, directory). */
export const FDSET_NOT_FILE_TEXT = "can't open backing store %s for guest RAM: the fd in the set is not a regular file";

/** QEMU's answer to readonly=on with a directory as mem-path: mmap of the directory's fd. */
export const READONLY_DIRECTORY_TEXT = 'unable to map backing store for guest RAM: No such device';

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

export class FileBackend extends HostMemoryBackend {
  memPath = '';
  align = 0n;
  offset = 0n;
  discardData = false;
  readonly = false;
  rom: 'auto' | 'on' | 'off' = 'auto';

  // Not `aligned`: QEMU 7.2 takes any size and rounds it up to pages (the 9.1 check that the
  // size be a multiple of the page size is not applied).

  protected alloc(): Allocation {
    if (this.size === 0n) throw genericError("can't create backend with size 0");
    if (!this.memPath) throw genericError('mem-path property not set');
    if (this.rom === 'on' && !this.readonly) throw genericError("property 'rom' = 'on' is not supported with 'readonly' = 'off'");
    if (this.rom === 'off' && this.readonly && this.share) {
      throw genericError("property 'rom' = 'off' is incompatible with 'readonly' = 'on' and 'share' = 'on'");
    }
    const romOn = this.rom === 'on' || (this.rom === 'auto' && this.readonly);
    // "/dev/fdset/N" names an fd a client passed (add-fd): the file is the one the client
    // opened itself, so no directory confinement applies to it (newer QEMU accepts fd sets
    // here; QEMU 7.2 does not).
    const fromSet = parseFdsetPath(this.memPath) !== undefined;
    // Checked even when a preserved fd will be used: a journal entry is held to the same rule.
    if (!fromSet && !locateMemPath(this.memPath, this.services.memPathAllow)) throw memPathRefusal(this.memPath);
    let fd = this.services.fds.find(this.memName);
    if (!fd) fd = fromSet ? this.openFromSet() : this.openBackingStore();
    try {
      const page = native.fdPageSize(fd);
      const align = this.align === 0n ? BigInt(page) : this.align;
      if (align % BigInt(page) !== 0n) throw genericError(`alignment ${hex(align)} must be multiples of page size ${hex(page)}`);
      if ((align & (align - 1n)) !== 0n) throw genericError(`alignment ${hex(align)} must be a power of two`);
      if (this.offset % BigInt(page) !== 0n) throw genericError(`offset ${hex(this.offset)} must be multiples of page size ${hex(page)}`);
      // The size is rounded up to host pages first, then compared with the file's page size (a
      // huge page on hugetlbfs): size=1 is one host page, as in QEMU 7.2.
      const hostPages = roundUp(this.size, native.pageSize());
      if (hostPages < BigInt(page)) throw genericError(`memory size ${hex(hostPages)} must be equal to or larger than page size ${hex(page)}`);
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

  /** Opens mem-path, confined to the allowed directories (mem-path.ts): an existing regular
   *  file, a new file (0644), or an unlinked temp file in a directory. Nothing that could block
   *  is opened on the event loop: the type is looked at through an O_PATH fd first, and the
   *  real open adds O_NONBLOCK (a FIFO swapped in meanwhile is refused, not waited on). */
  private openBackingStore(): native.Fd {
    const p = this.memPath;
    const where = locateMemPath(p, this.services.memPathAllow);
    if (!where) throw memPathRefusal(p);
    let dir: native.Fd;
    try {
      dir = native.openDirectory(where.dir);
    } catch (e) {
      throw failedWith(`can't open backing store ${p} for guest RAM`, e);
    }
    try {
      return this.openBeneath(dir, where.rest);
    } catch (e) {
      if (isConfinementErrno(e)) throw memPathRefusal(p);
      if (e instanceof QmpError) throw e;
      throw failedWith(`can't open backing store ${p} for guest RAM`, e);
    } finally {
      dir.close();
    }
  }

  /** qemu_open of "/dev/fdset/N": a copy of an fd of the set with the access mode this
   *  backend opens with (O_RDWR, or O_RDONLY when readonly). Only a regular file is taken: a
   *  FIFO, socket or device a client put in the set is refused without being touched. */
  private openFromSet(): native.Fd {
    const p = this.memPath;
    let fd: native.Fd;
    try {
      if (!this.services.openFdset) throw new native.SysError('open', ENOENT);
      fd = this.services.openFdset(p, this.readonly ? native.O_RDONLY : native.O_RDWR);
    } catch (e) {
      throw failedWith(`can't open backing store ${p} for guest RAM`, e);
    }
    if (fileType(fd) !== 'file') {
      fd.close();
      throw genericError(FDSET_NOT_FILE_TEXT.replace('%s', p));
    }
    return fd;
  }

  /** QEMU's file_ram_open beneath `dir`: open what is there, else create it (O_EXCL, retried
   *  if another creator won the race). */
  private openBeneath(dir: native.Fd, rel: string): native.Fd {
    for (let attempt = 0; ; attempt++) {
      let probe: native.Fd;
      try {
        probe = native.openBeneath(dir, rel, native.O_PATH);
      } catch (e) {
        if (this.readonly || !(e instanceof native.SysError) || e.errno !== ENOENT) throw e;
        try {
          return native.openBeneath(dir, rel, native.O_RDWR | native.O_CREAT | native.O_EXCL | native.O_NONBLOCK, 0o644);
        } catch (c) {
          if (c instanceof native.SysError && c.errno === EEXIST && attempt < CREATE_RETRIES) continue;
          throw c;
        }
      }
      try {
        const type = fileType(probe);
        // readonly=on opens mem-path itself read-only, which for a directory succeeds in QEMU
        // and leaves it to mmap to fail with ENODEV; a temp file would be empty and mapped past
        // its end (SIGBUS on the first access).
        if (type === 'dir' && this.readonly) throw genericError(READONLY_DIRECTORY_TEXT);
        if (type === 'dir') return this.openTempFile(probe);
        if (type !== 'file') throw memPathRefusal(this.memPath);
        const fd = native.openBeneath(dir, rel, (this.readonly ? native.O_RDONLY : native.O_RDWR) | native.O_NONBLOCK);
        if (fileType(fd) !== 'file') {
          fd.close();
          throw memPathRefusal(this.memPath);
        }
        return fd;
      } finally {
        probe.close();
      }
    }
  }

  /** A directory: an unlinked O_EXCL 0600 file in it (QEMU's mkstemp + unlink). */
  private openTempFile(dir: native.Fd): native.Fd {
    const name = `hostmemd_back_mem.${this.name}.${crypto.randomBytes(4).toString('hex')}`;
    const fd = native.openBeneath(dir, name, native.O_RDWR | native.O_CREAT | native.O_EXCL, 0o600);
    try {
      native.unlinkAt(dir, name);
    } catch (e) {
      fd.close();
      throw e;
    }
    return fd;
  }

  /** At restore: the contents are in mem-path only if it still names a file that has them. A
   *  directory held an unlinked file (gone with the process), and a missing or empty file
   *  would be created anew: neither is the memory any more. Anything the probe cannot tell is
   *  left to complete(), which reports it. */
  protected override pathSource(): RestoreSource {
    const p = this.memPath;
    // An fd set lived in the connection that made it: a restarted daemon has none.
    if (parseFdsetPath(p) !== undefined) return { from: 'new', detail: `mem-path '${p}' named an fd set of a client connection, gone with the process` };
    const where = locateMemPath(p, this.services.memPathAllow);
    if (!where) return { from: 'path' };
    const dirText = `mem-path '${p}' is a directory: the memory was an unlinked file in it, gone with the process`;
    if (where.rest === '') return { from: 'new', detail: dirText };
    let probe: native.Fd | undefined;
    try {
      const dir = native.openDirectory(where.dir);
      try {
        probe = native.openBeneath(dir, where.rest, native.O_PATH);
      } finally {
        dir.close();
      }
      const type = fileType(probe);
      if (type === 'dir') return { from: 'new', detail: dirText };
      if (type === 'file' && native.fstat(probe).size === 0n) return { from: 'new', detail: `the file at mem-path '${p}' is empty` };
      return { from: 'path' };
    } catch (e) {
      if (e instanceof native.SysError && e.errno === ENOENT) return { from: 'new', detail: `mem-path '${p}' no longer exists` };
      return { from: 'path' };
    } finally {
      probe?.close();
    }
  }

  protected override get contentsInPath(): boolean {
    return true;
  }

  override release(mode: ReleaseMode): void {
    // Discarded when the object ends or the process exits, as QEMU does; never when another
    // holder carries on with the file (handover), nor after a failed object-add (QEMU only
    // discards an object it added). Only a shared mapping is discarded: QEMU's MADV_REMOVE
    // fails on a private one (share=off), leaving the file intact.
    if ((mode === 'deleted' || mode === 'exit') && this.share && this.discardData && this.fd && this.mapping) {
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
      // QEMU 7.2 visits the value first: a wrong type is reported before "cannot change".
      const memPath = visitStr('mem-path', v);
      frozenText(o, phase, 'mem-path');
      o.memPath = memPath;
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
      const on = visitBool('pmem', v); // type first, as QEMU 7.2
      frozenText(o, phase, 'pmem', '.');
      if (on) {
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
      const on = visitBool('readonly', v); // type first, as QEMU 7.2
      frozenText(o, phase, 'readonly', '.');
      o.readonly = on;
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
