// Command-line options of bin/hostmemd: its own, and QEMU's where they exist (`-object`, the
// monitor options `-chardev`/`-mon`/`-qmp`, and what launchers always pass), parsed as QEMU
// 7.2 parses them so that tools that launch QEMU launch hostmemd. Both `-x` and `--x` work.
// Parsing only: nothing here opens files or sockets.
import * as os from 'node:os';
import { HOSTMEMD_VERSION } from '../version';
import { parseSize } from './object-opt';
import { DEFAULT_NEGOTIATION_TIMEOUT_MS } from '../qmp/session';
import { MonitorOptions, MonitorSpec, QemuCliError } from './qemu-monitors';
import { OptsError, OptsList, parseOpts } from './qemu-opts';

/** Without --max-backend-bytes, backends may take the machine's memory but this reserve
 *  (kept for the daemon, the kernel and everything else): the larger of 2 GiB and an eighth,
 *  but never more than half. Uncapped, one prealloc'd 64 GiB memfd on a 23 GiB host has the
 *  kernel OOM-kill the daemon, and every client loses its answers. */
export const MIN_MEMORY_RESERVE = 2n * 1024n * 1024n * 1024n;

/** The default --max-backend-bytes for a machine with `totalMemory` bytes of RAM. */
export function defaultMaxBackendBytes(totalMemory: number): bigint {
  const total = BigInt(Math.floor(totalMemory));
  let reserve = total / 8n > MIN_MEMORY_RESERVE ? total / 8n : MIN_MEMORY_RESERVE;
  if (reserve > total / 2n) reserve = total / 2n;
  return total - reserve;
}

/** The longest --negotiation-timeout: a day (timers cannot run beyond 2^31 ms anyway). */
export const MAX_NEGOTIATION_TIMEOUT_S = 86400;

export interface DaemonOptions {
  /** UNIX socket paths listened on without waiting (`--qmp unix:PATH`, `server=on,wait=off`). */
  qmp: string[];
  /** Every other QMP monitor (-chardev/-mon/-qmp): connecting out, inherited fds, TCP,
   *  pretty=on, wait=on. Given any monitor, no default socket is made. */
  monitors: MonitorSpec[];
  /** -pidfile FILE: the daemon's pid, removed at exit. */
  pidfile?: string;
  /** -name guest=NAME: recorded and logged (hostmemd has no guest to name). */
  name?: string;
  /** -S: accepted; hostmemd has no vCPUs to hold, so it runs as without it. */
  startPaused: boolean;
  stateDir: string;
  accel: 'kvm' | 'none';
  ws?: { host: string; port: number };
  wsAllowRemote: boolean;
  /** --ws-limit KEY=N: per-connection WebSocket limits (defaults in transport/websocket.ts). */
  wsLimits: { maxPayload?: number; ratePerSecond?: number; rateBurst?: number; maxBufferedBytes?: number; stalledReaderMs?: number };
  objects: string[];
  /** --incoming-cpr unix:PATH: take over from a running hostmemd (cpr-handover). */
  incomingCpr?: string;
  socketGroup?: string;
  socketMode: number;
  maxClients: number;
  /** --negotiation-timeout: ms a connection may stay un-negotiated (0 = for ever). */
  negotiationTimeoutMs: number;
  /** Caps on object-add (undefined: none). */
  maxObjects?: number;
  maxBackendBytes?: bigint;
  logLevel: string;
  /** --mem-path-allow DIR (repeatable): where mem-path may lie; undefined: the default
   *  (<state-dir>/files and the hugetlbfs mounts, daemon/mem-path-allow.ts). */
  memPathAllow?: string[];
  /** Test hook: replaces probed KVM values (`--x-kvm-probe guestMemfdFlags=1`). */
  kvmProbeOverride: Record<string, number | boolean>;
}

/** `warnings`: lines to print on stderr as they are (QEMU's warnings about deprecated
 *  short-form booleans, each with its hint line). */
export type CliResult = { kind: 'run'; options: DaemonOptions; warnings: string[] } | { kind: 'exit'; code: number; output: string };

export const HELP = `Usage: hostmemd [options]

Host-side guest-memory daemon controlled over QMP, like QEMU.

Options (each may be written -x or --x):
  --qmp unix:PATH           listen for QMP on a UNIX socket (repeatable). Default, when
                            no monitor option is given: <state-dir>/qmp.sock. The
                            double-dash spelling listens; single-dash -qmp is QEMU's
                            (see below): without server=on it connects to PATH
  --qmp-allow-tcp           allow tcp:HOST:PORT monitors (-qmp, -chardev host=) on a
                            loopback address; they are unauthenticated, as in QEMU
  --qmp-allow-remote        with --qmp-allow-tcp: on any address too
  --state-dir DIR           state directory (default: $STATE_DIRECTORY or ./run)
  --accel kvm|none          accelerator for guest_memfd backends (default: kvm)
  --ws HOST:PORT            serve the web console, /metrics and QMP over WebSocket
                            at ws://HOST:PORT/qmp (token in <state-dir>/token)
  --ws-allow-remote         allow --ws to bind a non-loopback address
  --ws-limit KEY=N          WebSocket limit per connection (repeatable):
                            max-frame=BYTES (default 64 MiB), rate=MSGS/S (1000,
                            0 = off), burst=MSGS (2000), send-buffer=BYTES (1 MiB:
                            a client's requests wait past it), stall=SECONDS (10: a
                            client past send-buffer reading nothing that long is
                            cut off)
  --object TYPE,id=ID,...   create an object at start, like qemu-system -object
  --incoming-cpr unix:PATH  wait at PATH for a running hostmemd's cpr-handover and
                            take over its objects, sockets and clients
  --socket-group GROUP      group owning the QMP socket (mode 0660)
  --socket-mode MODE        octal mode of the QMP socket (default: 0660)
  --max-clients N           concurrent QMP clients served (default: 1024)
  --negotiation-timeout SECONDS
                            close a connection that has not sent qmp_capabilities
                            within SECONDS of its greeting (default: 60, 0 = never)
  --max-objects N           objects object-add may create in all (default: no cap)
  --max-backend-bytes SIZE  total size of all memory backends, e.g. 64G (default: the
                            physical memory less max(2 GiB, 1/8); 0 or none = no cap)
  --mem-path-allow DIR      memory-backend-file's mem-path must be a regular file or
                            directory inside DIR (repeatable; replaces the default:
                            <state-dir>/files and the hugetlbfs mounts found at start)
  --log-level LEVEL         trace|debug|info|warn|error (default: info)
  --version                 print the version and exit
  --help                    print this help and exit

QEMU options, parsed as qemu-system 7.2 parses them (QemuOpts syntax and error texts):
  -chardev socket,id=ID,path=PATH[,server=on|off][,wait=on|off][,reconnect=SECONDS]
  -chardev socket,id=ID,fd=N[,server=on|off][,wait=on|off]
  -chardev socket,id=ID,host=HOST,port=PORT[,server=on|off][,wait=on|off][,reconnect=S]
                            a QMP channel: server=on listens (and by default waits for
                            the first client before going on); without it hostmemd
                            connects to PATH. fd=N is an inherited socket: a listening
                            one is served, a connected one (a socketpair end) is one
                            QMP session. host= needs --qmp-allow-tcp
  -mon chardev=ID,mode=control[,pretty=on][,id=ID]
                            a QMP monitor on the chardev (mode=readline is refused)
  -qmp unix:PATH[,server=on|off][,wait=on|off][,reconnect=SECONDS]
  -qmp tcp:HOST:PORT[,server=on|off][,wait=on|off][,reconnect=SECONDS]
                            shorthand for -chardev and -mon; -qmp-pretty: pretty=on
  -qmp-pretty SPEC
  -object TYPE,id=ID,...    same as --object
  -pidfile FILE             write the pid to FILE, removed at exit
  -name [guest=]NAME[,process=P][,debug-threads=on|off]
                            accepted and logged
  -S                        accepted; hostmemd has no vCPUs, it serves at once
  -display none, -vga none, -machine none (-M none), -nodefaults, -nographic,
  -no-shutdown, -no-user-config
                            accepted and ignored (no display, machine or devices)
Any other option fails as in QEMU: "hostmemd: -x: invalid option", exit status 1.
`;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

class CliError extends Error {}

/** QEMU options that take no value and mean nothing for a memory daemon. */
const QEMU_NO_OP_FLAGS = new Set(['nodefaults', 'nographic', 'no-shutdown', 'no-user-config']);
/** QEMU options whose only meaningful value here is `none` (no display, vga or machine). */
const QEMU_NONE_ONLY: Readonly<Record<string, string>> = { display: 'display', vga: 'vga', machine: 'machine', M: 'machine' };
/** hostmemd's own options that take a value (the rest are flags). */
const VALUE_OPTIONS = new Set(['qmp', 'qmp-pretty', 'chardev', 'mon', 'pidfile', 'name', 'display', 'vga', 'machine', 'M', 'object', 'incoming-cpr', 'state-dir', 'accel', 'ws', 'ws-limit', 'socket-group', 'socket-mode', 'max-clients', 'negotiation-timeout', 'max-objects', 'max-backend-bytes', 'mem-path-allow', 'log-level', 'x-kvm-probe']);
const FLAG_OPTIONS = new Set(['help', 'h', 'version', 'V', 'ws-allow-remote', 'qmp-allow-tcp', 'qmp-allow-remote', 'S', ...QEMU_NO_OP_FLAGS]);

/** QEMU's -name list (implied key `guest`). */
const NAME_OPTS: OptsList = { name: 'name', implied: 'guest', params: { guest: 'string', process: 'string', 'debug-threads': 'bool' } };

export function parseWsAddress(spec: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(spec);
  if (!m) throw new CliError(`--ws ${spec}: expected HOST:PORT`);
  const port = Number(m[2]);
  if (port > 65535) throw new CliError(`--ws ${spec}: port out of range`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/** `totalMemory`: physical memory in bytes, for the default --max-backend-bytes. */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv, totalMemory: number = os.totalmem()): CliResult {
  const opts: DaemonOptions = {
    qmp: [],
    monitors: [],
    startPaused: false,
    stateDir: env.STATE_DIRECTORY?.split(':')[0] || './run',
    accel: 'kvm',
    wsAllowRemote: false,
    wsLimits: {},
    objects: [],
    socketMode: 0o660,
    maxClients: 1024,
    negotiationTimeoutMs: DEFAULT_NEGOTIATION_TIMEOUT_MS,
    logLevel: 'info',
    kvmProbeOverride: {},
  };
  let backendCapGiven = false;
  const warnings: string[] = [];
  const monitors = new MonitorOptions();
  let allowTcp = false;
  let allowRemote = false;
  try {
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i];
      // QEMU takes a non-option as a disk image; hostmemd has none.
      if (!arg.startsWith('-') || arg === '-' || arg === '--') throw new CliError(`${arg}: hostmemd takes no disk image or other argument that is not an option`);
      let name = arg.slice(arg.startsWith('--') ? 2 : 1);
      let inline: string | undefined;
      const eq = arg.startsWith('--') ? name.indexOf('=') : -1;
      if (eq > 0) {
        inline = name.slice(eq + 1);
        name = name.slice(0, eq);
      }
      if (!VALUE_OPTIONS.has(name) && !FLAG_OPTIONS.has(name)) throw new CliError(`${arg}: invalid option`);
      const opt = inline === undefined ? arg : `--${name}`;
      const value = (): string => {
        if (inline !== undefined) return inline;
        const v = argv[++i];
        if (v === undefined) throw new CliError(`${arg}: requires an argument`);
        return v;
      };
      if (QEMU_NO_OP_FLAGS.has(name)) continue;
      if (name in QEMU_NONE_ONLY) {
        const v = value();
        const what = QEMU_NONE_ONLY[name];
        // -machine is QemuOpts with the implied key `type`.
        if (v !== 'none' && !(what === 'machine' && v === 'type=none')) throw new CliError(`${opt} ${v}: hostmemd has no ${what}: only '${opt} none' is accepted`);
        continue;
      }
      switch ('--' + name) {
        case '--help':
        case '--h':
          return { kind: 'exit', code: 0, output: HELP };
        case '--version':
        case '--V':
          return { kind: 'exit', code: 0, output: `hostmemd ${HOSTMEMD_VERSION}\n` };
        case '--qmp':
          // `--qmp unix:PATH` is hostmemd's own and listens; `-qmp` is QEMU's and connects
          // unless told server=on.
          monitors.qmp(opt, value(), false, arg.startsWith('--'));
          break;
        case '--qmp-pretty':
          monitors.qmp(opt, value(), true);
          break;
        case '--chardev':
          monitors.chardev(opt, value());
          break;
        case '--mon':
          monitors.mon(opt, value());
          break;
        case '--qmp-allow-tcp':
          allowTcp = true;
          break;
        case '--qmp-allow-remote':
          allowRemote = true;
          break;
        case '--pidfile':
          opts.pidfile = value();
          break;
        case '--name': {
          const v = value();
          try {
            const r = parseOpts(NAME_OPTS, v, true);
            warnings.push(...r.warnings.flatMap(([m, h]) => [`hostmemd: ${opt} ${v}: ${m}`, h]));
            opts.name = r.opts.values.get('guest') as string | undefined;
          } catch (e) {
            if (e instanceof OptsError) {
              warnings.push(...e.warnings.flatMap(([m, h]) => [`hostmemd: ${opt} ${v}: ${m}`, h]));
              throw new QemuCliError(`${opt} ${v}`, [e.message], e.hint);
            }
            throw e;
          }
          break;
        }
        case '--S':
          opts.startPaused = true;
          break;
        case '--incoming-cpr': {
          const v = value();
          if (!/^unix:./.test(v)) throw new CliError(`--incoming-cpr ${v}: must be unix:PATH`);
          opts.incomingCpr = v;
          break;
        }
        case '--state-dir':
          opts.stateDir = value();
          break;
        case '--accel': {
          const v = value();
          if (v !== 'kvm' && v !== 'none') throw new CliError(`--accel ${v}: expected kvm or none`);
          opts.accel = v;
          break;
        }
        case '--ws':
          opts.ws = parseWsAddress(value());
          break;
        case '--ws-allow-remote':
          opts.wsAllowRemote = true;
          break;
        case '--ws-limit': {
          const v = value();
          const stall = /^stall=(\d+(?:\.\d+)?)$/.exec(v);
          if (stall) {
            opts.wsLimits.stalledReaderMs = Math.max(1, Math.round(Number(stall[1]) * 1000));
            break;
          }
          const m = /^(max-frame|rate|burst|send-buffer)=(\d+)$/.exec(v);
          if (!m) throw new CliError(`--ws-limit ${v}: expected max-frame|rate|burst|send-buffer|stall=NUMBER`);
          const key = ({ 'max-frame': 'maxPayload', rate: 'ratePerSecond', burst: 'rateBurst', 'send-buffer': 'maxBufferedBytes' } as const)[m[1] as 'max-frame' | 'rate' | 'burst' | 'send-buffer'];
          opts.wsLimits[key] = Number(m[2]);
          break;
        }
        case '--object':
          opts.objects.push(value());
          break;
        case '--socket-group':
          opts.socketGroup = value();
          break;
        case '--socket-mode': {
          const v = value();
          if (!/^0?[0-7]{3}$/.test(v)) throw new CliError(`--socket-mode ${v}: expected an octal mode such as 0660`);
          opts.socketMode = parseInt(v, 8);
          break;
        }
        case '--max-clients': {
          const v = value();
          if (!/^[1-9][0-9]*$/.test(v)) throw new CliError(`--max-clients ${v}: expected a positive integer`);
          opts.maxClients = Number(v);
          break;
        }
        case '--negotiation-timeout': {
          const v = value();
          if (!/^[0-9]+(\.[0-9]+)?$/.test(v) || Number(v) > MAX_NEGOTIATION_TIMEOUT_S) {
            throw new CliError(`--negotiation-timeout ${v}: expected seconds from 0 (never) to ${MAX_NEGOTIATION_TIMEOUT_S}`);
          }
          opts.negotiationTimeoutMs = Math.round(Number(v) * 1000);
          break;
        }
        case '--max-objects': {
          const v = value();
          if (!/^[0-9]+$/.test(v)) throw new CliError(`--max-objects ${v}: expected a whole number`);
          opts.maxObjects = Number(v);
          break;
        }
        case '--max-backend-bytes': {
          const v = value();
          backendCapGiven = true;
          if (v === 'none') {
            opts.maxBackendBytes = undefined;
            break;
          }
          const n = parseSize(v);
          if (n === undefined) throw new CliError(`--max-backend-bytes ${v}: expected a size such as 64G, or none`);
          opts.maxBackendBytes = n === 0n ? undefined : n;
          break;
        }
        case '--mem-path-allow': {
          const v = value();
          if (v === '') throw new CliError('--mem-path-allow: expected a directory');
          (opts.memPathAllow ??= []).push(v);
          break;
        }
        case '--log-level': {
          const v = value();
          if (!LOG_LEVELS.includes(v)) throw new CliError(`--log-level ${v}: expected one of ${LOG_LEVELS.join(', ')}`);
          opts.logLevel = v;
          break;
        }
        case '--x-kvm-probe': {
          const v = value();
          const m = /^(apiVersion|guestMemfd|userMemory2|guestMemfdFlags|memoryAttributes|vmTypes)=(.+)$/.exec(v);
          if (!m) throw new CliError(`--x-kvm-probe ${v}: expected FIELD=VALUE`);
          opts.kvmProbeOverride[m[1]] = m[2] === 'true' ? true : m[2] === 'false' ? false : Number(m[2]);
          break;
        }
        default:
          throw new CliError(`${arg}: invalid option`);
      }
    }
    for (const m of monitors.resolve({ allow: allowTcp, allowRemote })) {
      // A plain listening UNIX socket is what --qmp always was: socket activation, handover
      // and hostmemd-supervise know those.
      if (m.endpoint.kind === 'unix-listen' && !m.endpoint.wait && !m.pretty) opts.qmp.push(m.endpoint.path);
      else opts.monitors.push(m);
    }
  } catch (e) {
    const w = monitors.warnings.concat(warnings, e instanceof QemuCliError ? e.warnings : []).map((l) => l + '\n').join('');
    if (e instanceof CliError) return { kind: 'exit', code: 1, output: `${w}hostmemd: ${e.message}\n` };
    if (e instanceof QemuCliError) return { kind: 'exit', code: 1, output: w + e.text('hostmemd') };
    throw e;
  }
  if (!backendCapGiven) opts.maxBackendBytes = defaultMaxBackendBytes(totalMemory);
  return { kind: 'run', options: opts, warnings: monitors.warnings.concat(warnings) };
}
