// The mapping step shared by the backends: mmap an fd (or anonymous memory) with the sharing
// and reservation the properties ask for, rounding the length up to the page size, and
// turning failures into QEMU's texts. Closes the fd it was given if mapping fails.
import * as native from '../native';
import { genericError } from '../errors/qmp-error';
import { failedWith } from '../errors/text';
import { HostMemoryBackend } from './hostmem';

export function roundUp(size: bigint, page: number): bigint {
  const p = BigInt(page);
  return ((size + p - 1n) / p) * p;
}

/** Maps `fd` (or anonymous memory) for backend `b`. `what` selects QEMU's failure text. */
export function mapFor(b: HostMemoryBackend, fd: native.Fd | undefined, pageSize: number, opts: { readonly?: boolean; offset?: bigint } = {}): native.Mapping {
  const len = roundUp(b.size, pageSize);
  let flags = b.share ? native.MAP_SHARED : native.MAP_PRIVATE;
  if (!fd) flags |= native.MAP_ANONYMOUS;
  if (!b.reserve) flags |= native.MAP_NORESERVE;
  const prot = opts.readonly ? native.PROT_READ : native.PROT_READ | native.PROT_WRITE;
  try {
    return native.mmap(len, prot, flags, fd, opts.offset ?? 0n);
  } catch (e) {
    fd?.close();
    if (fd) throw failedWith(`unable to map backing store for guest RAM`, e);
    throw failedWith(`cannot set up guest memory '${b.memName}'`, e);
  }
}

/** QEMU checks an fd's size against size+offset before mapping (physmem.c). */
export function checkFdSize(b: HostMemoryBackend, fd: native.Fd, pageSize: number, offset = 0n): void {
  let fdSize: bigint;
  try {
    fdSize = native.fstat(fd).size;
  } catch (e) {
    fd.close();
    throw e;
  }
  const need = roundUp(b.size, pageSize);
  if (fdSize < need + offset) {
    fd.close();
    throw genericError(`${b.memName} backing store size 0x${fdSize.toString(16)} is too small for 'size' option 0x${need.toString(16)} plus 'offset' option 0x${offset.toString(16)}`);
  }
}
