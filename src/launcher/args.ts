// hostmemd-run's command line: `--qmp unix:PATH --memdev ID[:FD] ... -- COMMAND ARGS...`.
// Parsing is pure (no I/O) so every refusal is testable; each refusal is one sentence that names
// the argument at fault, and the launcher prints it before it connects or execs anything.
import { DEFAULT_WAIT_MS } from '../client/qmp-fd-client';

export const USAGE = `Usage: hostmemd-run --qmp unix:PATH --memdev ID[:FD] [--memdev ID[:FD]]... [--timeout SECONDS] -- COMMAND [ARGS...]

Takes the fds of hostmemd memory backends (memdev-export on hostmemd's QMP socket) and execs
COMMAND with each at fd number FD (default: the next free numbers from 3), close-on-exec
cleared only on those. COMMAND keeps this process's pid. For QEMU:

  hostmemd-run --qmp unix:/run/hostmemd/qmp.sock --memdev ram0:3 -- \\
    qemu-system-x86_64 -m 64M \\
      -object memory-backend-file,id=ram0,mem-path=/proc/self/fd/3,share=on,size=64M \\
      -machine memory-backend=ram0 ...

Options:
  --qmp unix:PATH      hostmemd's QMP UNIX socket (fds travel only on UNIX sockets)
  --memdev ID[:FD]     export backend ID; put its memory fd at FD (3 or above); repeatable.
                       A guest-memfd backend also brings its KVM VM fd, put at the next
                       free number.
  --timeout SECONDS    longest wait for the daemon's connection and each reply (default ${DEFAULT_WAIT_MS / 1000})
  -h, --help           this text

COMMAND finds HOSTMEMD_FDS in its environment: ID:NAME=FD for every fd placed, comma-separated
(e.g. ram0:memory=3). Exit status: COMMAND's own once exec'd; 2 for a bad command line, 1 when
the daemon is unreachable or refuses an export, 127 when COMMAND is not found, 126 when it
cannot be executed.`;

/** One --memdev: the backend id and, if given, the fd number its memory goes to. */
export interface MemdevRequest {
  id: string;
  fd?: number;
}

export interface LaunchRequest {
  socketPath: string;
  memdevs: MemdevRequest[];
  waitMs: number;
  /** COMMAND and its arguments (argv[0] is COMMAND as given). */
  command: string[];
}

export type ParsedArgs = { kind: 'run'; request: LaunchRequest } | { kind: 'help'; text: string } | { kind: 'error'; message: string };

/** The largest fd number the syntax takes; the open-files limit is checked at run time. */
export const MAX_FD_NUMBER = 0x7fffffff;
const STDIO_NAMES = ['standard input', 'standard output', 'standard error'];

function parseMemdev(spec: string): MemdevRequest | string {
  const colon = spec.indexOf(':');
  const id = colon < 0 ? spec : spec.slice(0, colon);
  if (id === '') return `--memdev '${spec}': the backend id is empty`;
  if (colon < 0) return { id };
  const fdText = spec.slice(colon + 1);
  if (!/^[0-9]+$/.test(fdText)) return `--memdev '${spec}': FD must be a decimal fd number, 3 or above`;
  const fd = Number(fdText);
  if (fd < 3) return `--memdev '${spec}': fd ${fd} is ${STDIO_NAMES[fd]}; memory fds go at 3 or above`;
  if (fd > MAX_FD_NUMBER) return `--memdev '${spec}': fd ${fdText} is too large`;
  return { id, fd };
}

export function parseRunArgs(argv: readonly string[]): ParsedArgs {
  let socketPath: string | undefined;
  let waitMs = DEFAULT_WAIT_MS;
  const memdevs: MemdevRequest[] = [];
  let i = 0;
  const error = (message: string): ParsedArgs => ({ kind: 'error', message });
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      break;
    }
    if (arg === '-h' || arg === '--help') return { kind: 'help', text: USAGE };
    const m = /^(--[a-z]+)(?:=(.*))?$/s.exec(arg);
    if (!m || !['--qmp', '--memdev', '--timeout'].includes(m[1])) {
      return error(arg.startsWith('-') ? `unknown option '${arg}'` : `unexpected argument '${arg}' (the command goes after --)`);
    }
    let value = m[2];
    if (value === undefined) {
      if (i + 1 >= argv.length) return error(`option ${m[1]} needs a value`);
      value = argv[++i];
    }
    if (m[1] === '--qmp') {
      if (!value.startsWith('unix:') || value.length === 'unix:'.length) return error(`--qmp '${value}': only a unix:PATH socket can carry fds`);
      socketPath = value.slice('unix:'.length);
    } else if (m[1] === '--timeout') {
      const s = Number(value);
      if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || !(s > 0) || s > 3600) return error(`--timeout '${value}': expected seconds, more than 0 and at most 3600`);
      waitMs = Math.ceil(s * 1000);
    } else {
      const r = parseMemdev(value);
      if (typeof r === 'string') return error(r);
      if (memdevs.some((d) => d.id === r.id)) return error(`--memdev '${value}': backend ${r.id} is given twice`);
      if (r.fd !== undefined && memdevs.some((d) => d.fd === r.fd)) return error(`--memdev '${value}': fd ${r.fd} is given twice`);
      memdevs.push(r);
    }
  }
  const command = argv.slice(i);
  if (socketPath === undefined) return error('--qmp unix:PATH is required');
  if (memdevs.length === 0) return error('at least one --memdev ID[:FD] is required');
  if (command.length === 0 || command[0] === '') return error('no command given after --');
  return { kind: 'run', request: { socketPath, memdevs, waitMs, command } };
}
