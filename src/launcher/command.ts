// Finding COMMAND before anything is fetched or placed, the way execvp(3) searches PATH: a name
// with a slash is used as given; otherwise each PATH entry in turn (an empty entry is the current
// directory; without PATH, glibc's default "/bin:/usr/bin"). Checking first keeps the common
// mistakes (typo, not executable) ahead of the point where exec can no longer be undone.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** glibc's search path when PATH is unset (execvp(3)). */
export const DEFAULT_PATH = '/bin:/usr/bin';

export type Resolved = { ok: true; file: string } | { ok: false; status: 126 | 127; message: string };

function executable(file: string): 'yes' | 'missing' | 'not-executable' {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return 'missing';
  }
  if (!st.isFile()) return 'not-executable';
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return 'yes';
  } catch {
    return 'not-executable';
  }
}

export function resolveCommand(command: string, pathVar: string | undefined, cwd = process.cwd()): Resolved {
  if (command.includes('/')) {
    const state = executable(command);
    if (state === 'yes') return { ok: true, file: command };
    return state === 'missing' ? { ok: false, status: 127, message: `${command}: No such file or directory` } : { ok: false, status: 126, message: `${command}: Permission denied (not an executable file)` };
  }
  let sawUnexecutable: string | undefined;
  for (const dir of (pathVar ?? DEFAULT_PATH).split(':')) {
    const file = path.join(dir === '' ? cwd : dir, command);
    const state = executable(file);
    if (state === 'yes') return { ok: true, file };
    if (state === 'not-executable') sawUnexecutable ??= file;
  }
  if (sawUnexecutable !== undefined) return { ok: false, status: 126, message: `${sawUnexecutable}: Permission denied (not an executable file)` };
  return { ok: false, status: 127, message: `${command}: command not found` };
}
