// The successor's command line for an upgrade: the operator's command (usually the old VMM's,
// perhaps with a new binary) plus `-incoming defer` and a private monitor for the upgrade tool.
// A QMP socket path the old VMM still serves is bound under a temporary name and renamed into
// place only once the successor runs, so a failed upgrade leaves the old VMM reachable.

export interface SuccessorCommand {
  argv: string[];
  /** Temporary socket path → the path it takes over after success. */
  renames: { from: string; to: string }[];
}

/** QemuOpts values escape a comma as ",,": split on single commas only. */
function splitOpts(value: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] === ',') {
      if (value[i + 1] === ',') {
        cur += ',,';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
    } else cur += value[i];
  }
  parts.push(cur);
  return parts;
}

const unescape = (s: string): string => s.replace(/,,/g, ',');
const escape = (s: string): string => s.replace(/,/g, ',,');

/** `-x` and `--x` are the same option to QEMU. */
function optionName(arg: string): string | undefined {
  if (!arg.startsWith('-')) return undefined;
  return arg.replace(/^--?/, '');
}

const isServer = (parts: string[]): boolean => parts.some((p) => p === 'server' || /^server=(on|yes|true)$/.test(p));

/** Every UNIX socket path the command would listen on (QMP/monitor and socket chardevs). */
export function serverSocketPaths(command: readonly string[]): string[] {
  const paths: string[] = [];
  for (let i = 0; i < command.length - 1; i++) {
    const name = optionName(command[i]);
    const parts = splitOpts(command[i + 1]);
    if ((name === 'qmp' || name === 'qmp-pretty' || name === 'monitor') && parts[0].startsWith('unix:') && isServer(parts)) paths.push(unescape(parts[0].slice(5)));
    if (name === 'chardev' && parts[0] === 'socket' && isServer(parts)) for (const p of parts) if (p.startsWith('path=')) paths.push(unescape(p.slice(5)));
  }
  return paths;
}

/** `takeOver`: the socket paths the old VMM serves (they are bound under `path + tempSuffix`
 *  and renamed at the end). */
export function successorCommand(command: readonly string[], privateMonitor: string, takeOver: readonly string[], tempSuffix: string): SuccessorCommand {
  if (command.length === 0) throw new Error('no successor command given');
  const argv = [...command];
  const renames: { from: string; to: string }[] = [];
  const rebind = (path: string): string => {
    if (!takeOver.includes(path)) return path;
    const tmp = path + tempSuffix;
    if (!renames.some((r) => r.to === path)) renames.push({ from: tmp, to: path });
    return tmp;
  };
  for (let i = 0; i < argv.length - 1; i++) {
    const name = optionName(argv[i]);
    if (name === 'incoming') throw new Error('the successor command must not have -incoming: the upgrade adds `-incoming defer` itself');
    if (name === 'qmp' || name === 'qmp-pretty' || name === 'monitor') {
      const parts = splitOpts(argv[i + 1]);
      if (parts[0].startsWith('unix:') && isServer(parts)) {
        parts[0] = 'unix:' + escape(rebind(unescape(parts[0].slice(5))));
        argv[i + 1] = parts.join(',');
      }
      i++;
    } else if (name === 'chardev') {
      const parts = splitOpts(argv[i + 1]);
      if (parts[0] === 'socket' && isServer(parts)) {
        argv[i + 1] = parts.map((p) => (p.startsWith('path=') ? 'path=' + escape(rebind(unescape(p.slice(5)))) : p)).join(',');
      }
      i++;
    }
  }
  argv.push('-qmp', `unix:${escape(privateMonitor)},server=on,wait=off`, '-incoming', 'defer');
  return { argv, renames };
}
