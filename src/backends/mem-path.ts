// mem-path confinement (issue 12): memory-backend-file opens only a regular file or a directory
// beneath one of the allowed directories (--mem-path-allow), resolved by the kernel without
// following symlinks, magic links or '..' out of it (native openBeneath). Everything else gets
// one refusal text, whether it exists or not, so the daemon is no oracle for other files.
import * as native from '../native';
import { genericError, QmpError } from '../errors/qmp-error';

/** The one refusal: outside every allowed directory, relative, a symlink, a '..' escape, or
 *  not a regular file or directory (FIFO, device, socket). */
export function memPathRefusal(memPath: string): QmpError {
  return genericError(`mem-path '${memPath}' is not a regular file or directory inside an allowed directory (--mem-path-allow)`);
}

/** Where an absolute mem-path lies: the longest allowed directory it starts with, component by
 *  component, and the rest of it (to be resolved beneath that directory by the kernel). */
export function locateMemPath(memPath: string, allowed: readonly string[]): { dir: string; rest: string } | undefined {
  // A NUL would end the C string early: what the kernel saw would not be what was checked.
  if (!memPath.startsWith('/') || memPath.includes('\0')) return undefined;
  let best: { dir: string; rest: string } | undefined;
  for (const a of allowed) {
    const dir = a.length > 1 ? a.replace(/\/+$/, '') : a;
    const inside = dir === '/' || memPath === dir || memPath.startsWith(`${dir}/`);
    if (inside && (!best || dir.length > best.dir.length)) best = { dir, rest: memPath.slice(dir.length).replace(/^\/+/, '') };
  }
  return best;
}

/** Whether a failed open says "this leads outside" (escape, symlink) rather than an ordinary
 *  failure inside the directory. */
export function isConfinementErrno(e: unknown): boolean {
  return e instanceof native.SysError && (e.errno === native.EXDEV || e.errno === native.ELOOP);
}

/** The file type bits of an open fd: 'file', 'dir' or 'other'. */
export function fileType(fd: native.Fd): 'file' | 'dir' | 'other' {
  const t = native.fstat(fd).mode & native.S_IFMT;
  return t === native.S_IFREG ? 'file' : t === native.S_IFDIR ? 'dir' : 'other';
}
