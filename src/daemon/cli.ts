// Command-line options of bin/hostmemd. QEMU's spellings are accepted where they exist
// (`-qmp unix:PATH,server=on,wait=off`, `-object ...`), so scripts written for QEMU carry over.
// Parsing only: nothing here opens files or sockets.
import * as os from 'node:os';
import { HOSTMEMD_VERSION } from '../version';
import { parseSize } from './object-opt';
import { DEFAULT_NEGOTIATION_TIMEOUT_MS } from '../qmp/session';

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
  qmp: string[];
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

export type CliResult = { kind: 'run'; options: DaemonOptions } | { kind: 'exit'; code: number; output: string };

export const HELP = `Usage: hostmemd [options]

Host-side guest-memory daemon controlled over QMP, like QEMU.

Options:
  --qmp unix:PATH           listen for QMP on a UNIX socket (repeatable); QEMU's
                            unix:PATH,server=on,wait=off spelling is accepted.
                            Default: <state-dir>/qmp.sock
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
`;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

class CliError extends Error {}

/** Normalises `-qmp` style single-dash options to `--qmp`; `--opt=value` is split. */
function tokens(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (const a of argv) {
    let t = a;
    if (/^-[a-z]{2,}/.test(t)) t = '-' + t;
    const eq = t.startsWith('--') ? t.indexOf('=') : -1;
    if (eq > 0) out.push(t.slice(0, eq), t.slice(eq + 1));
    else out.push(t);
  }
  return out;
}

/** Accepts `unix:PATH` optionally followed by QEMU's `,server=on,wait=off` (other forms are
 *  refused: hostmemd is always the server and never waits). */
export function parseQmpAddress(spec: string): string {
  if (!spec.startsWith('unix:')) throw new CliError(`--qmp ${spec}: only unix:PATH is supported`);
  const parts = spec.slice(5).split(',');
  const path = parts[0];
  if (!path) throw new CliError(`--qmp ${spec}: missing socket path`);
  for (const p of parts.slice(1)) {
    const [k, v] = p.split('=', 2);
    const on = v === undefined || ['on', 'yes', 'true', 'y'].includes(v);
    const off = ['off', 'no', 'false', 'n'].includes(v ?? '');
    if (k === 'server' && on) continue;
    if ((k === 'wait' && off) || k === 'nowait') continue;
    throw new CliError(`--qmp ${spec}: unsupported option '${p}' (hostmemd is always a non-waiting server)`);
  }
  return path;
}

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
  const t = tokens(argv);
  let backendCapGiven = false;
  try {
    for (let i = 0; i < t.length; i++) {
      const opt = t[i];
      const value = (): string => {
        const v = t[++i];
        if (v === undefined) throw new CliError(`option ${opt} needs a value`);
        return v;
      };
      switch (opt) {
        case '--help':
        case '-h':
          return { kind: 'exit', code: 0, output: HELP };
        case '--version':
        case '-V':
          return { kind: 'exit', code: 0, output: `hostmemd ${HOSTMEMD_VERSION}\n` };
        case '--qmp':
          opts.qmp.push(parseQmpAddress(value()));
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
          throw new CliError(`unknown option '${opt}' (see --help)`);
      }
    }
  } catch (e) {
    if (e instanceof CliError) return { kind: 'exit', code: 1, output: `hostmemd: ${e.message}\n` };
    throw e;
  }
  if (!backendCapGiven) opts.maxBackendBytes = defaultMaxBackendBytes(totalMemory);
  return { kind: 'run', options: opts };
}
