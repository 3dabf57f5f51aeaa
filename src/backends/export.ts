// memdev-export's side in the backends: which backends may give their memory's fd to a client,
// and copies of the fds to pass (the backend keeps its own; a reply's copies are closed once
// sent). The command handler and the transport do the rest (commands/export.ts).
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { HostMemoryBackend } from './hostmem';
import { FileBackend } from './file';
import { GuestMemfdBackend } from './guest-memfd';
import { MemfdBackend, MemfdServices } from './memfd';

/** share=off: the pages belong to this process alone; an fd would give the receiver other
 *  (or no) memory than the backend's. */
export const EXPORT_PRIVATE_TEXT = "memdev-export: '%s' has share=off: private memory cannot be shared with another process";
/** The backend is preallocating (object-add or qom-set prealloc=on still running). */
export const EXPORT_PREALLOC_TEXT = "memdev-export: '%s' is still preallocating; try again when its object-add or qom-set has returned";
/** An object of that id exists but is no memory backend. */
export const EXPORT_NOT_BACKEND_TEXT = "memdev-export: '%s' is not a memory backend";
/** A backend whose memory has no fd (not created yet, or released). */
export const EXPORT_NO_FD_TEXT = "memdev-export: '%s' has no memory fd to export";

const say = (text: string, id: string): string => text.replace('%s', id);

/** What a receiver is told about the fds it gets, and the fds (copies, in that order). */
export interface ExportedMemory {
  type: string;
  size: bigint;
  offset: bigint;
  pageSize: number;
  share: boolean;
  readonly: boolean;
  /** Names of the fds, in the order they are attached: "memory", then "kvm-vm". */
  names: string[];
  fds: native.Fd[];
}

/** Whether `b`'s memory is a KVM guest_memfd (usable only in the VM that made it). */
function isGuestMemfd(b: HostMemoryBackend): boolean {
  return b instanceof GuestMemfdBackend || (b instanceof MemfdBackend && b.guestMemfd);
}

/** Copies of `b`'s fds for another process, or a refusal (GenericError). A read-only file
 *  backend gives an O_RDONLY fd: its receiver cannot write through it, nor get write access by
 *  reopening /proc/self/fd/N unless the file's own permissions let it. */
export function exportMemory(b: HostMemoryBackend): ExportedMemory {
  const id = b.name;
  if (!b.share) throw genericError(say(EXPORT_PRIVATE_TEXT, id));
  if (b.services.preallocs.running.has(b)) throw genericError(say(EXPORT_PREALLOC_TEXT, id));
  const own = b.fd;
  if (!own || !own.isOpen) throw genericError(say(EXPORT_NO_FD_TEXT, id));
  const readonly = b instanceof FileBackend && b.readonly;
  const fds: native.Fd[] = [];
  try {
    if (readonly && own.accessMode !== native.O_RDONLY) {
      // Opening the magic link again gives a new, read-only open file description.
      fds.push(native.open(`/proc/self/fd/${own.raw('open')}`, native.O_RDONLY | native.O_CLOEXEC | native.O_NONBLOCK));
    } else {
      fds.push(own.dup());
    }
    const names = ['memory'];
    if (isGuestMemfd(b)) {
      const vm = (b.services as Partial<MemfdServices>).guestMemfdVm?.();
      if (vm) {
        fds.push(vm);
        names.push('kvm-vm');
      }
    }
    return {
      type: b.typeName,
      size: b.size,
      offset: b instanceof FileBackend ? b.offset : 0n,
      pageSize: b.pageSize,
      share: b.share,
      readonly,
      names,
      fds,
    };
  } catch (e) {
    for (const fd of fds) fd.close();
    throw e;
  }
}

/** An object of `id` that is not a memory backend. */
export function notABackend(id: string): Error {
  return genericError(say(EXPORT_NOT_BACKEND_TEXT, id));
}
