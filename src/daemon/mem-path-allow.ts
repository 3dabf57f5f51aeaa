// The directories memory-backend-file's mem-path may lie in (issue 12), decided once at start:
// --mem-path-allow DIR as given, or by default <state-dir>/files/ (created 0750 here) and every
// hugetlbfs mount found in /proc/self/mountinfo. Each directory is listed under its absolute
// name and, where it differs, its real path, so a client may name it either way.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from './logger';

/** The default folder for backing files, inside the state directory. */
export const MEM_PATH_FILES_DIR = 'files';

/** The mount points of hugetlbfs file systems in a mountinfo text (proc(5): field 5 is the
 *  mount point with octal escapes, the file system type follows the ' - ' separator). */
export function hugetlbfsMounts(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    const mountPoint = line.slice(0, sep).split(' ')[4];
    if (fstype === 'hugetlbfs' && mountPoint) out.push(mountPoint.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/** The allowed list for `allowed` (--mem-path-allow; undefined: the default). */
export function memPathAllowList(allowed: readonly string[] | undefined, stateDir: string, logger: Logger): string[] {
  let dirs: string[];
  if (allowed) {
    dirs = [...allowed];
  } else {
    const files = path.join(stateDir, MEM_PATH_FILES_DIR);
    // The mode as documented whatever the umask; an existing folder keeps the administrator's.
    // A state directory that takes no writes (full, read-only) does not stop the start: the
    // folder is still the one allowed, and a backing file there fails on its own.
    try {
      if (fs.mkdirSync(files, { recursive: true, mode: 0o750 }) !== undefined) fs.chmodSync(files, 0o750);
    } catch (err) {
      logger.warn({ err, dir: files }, 'could not create the folder for backing files (mem-path)');
    }
    let mountinfo = '';
    try {
      mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    } catch (err) {
      logger.warn({ err }, 'could not read /proc/self/mountinfo: no hugetlbfs mount allowed for mem-path');
    }
    dirs = [files, ...hugetlbfsMounts(mountinfo)];
  }
  const out = new Set<string>();
  for (const d of dirs) {
    const abs = path.resolve(d);
    out.add(abs);
    try {
      out.add(fs.realpathSync(abs));
    } catch {
      logger.warn({ dir: abs }, '--mem-path-allow: the directory does not exist (yet)');
    }
  }
  return [...out];
}
