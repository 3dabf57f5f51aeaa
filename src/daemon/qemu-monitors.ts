// QEMU's monitor options on hostmemd's command line: `-chardev socket,...`, `-mon ...`, `-qmp`
// and `-qmp-pretty`, checked in QEMU 7.2's order and with its texts (options parsed in argv
// order, then the chardevs, then the monitors), and turned into the QMP endpoints the daemon
// opens: a socket listened on, a socket connected to, or an inherited fd. Parsing only.
import { OptsError, OptsList, ParsedOpts, parseOpts } from './qemu-opts';

/** The keys of QEMU 7.2's -chardev list and their types (a key outside it is an "Invalid
 *  parameter"; one inside that a socket does not use is accepted and ignored, as in QEMU). */
export const CHARDEV_OPTS: OptsList = {
  name: 'chardev',
  implied: 'backend',
  params: {
    backend: 'string',
    path: 'string',
    host: 'string',
    port: 'string',
    fd: 'string',
    localaddr: 'string',
    localport: 'string',
    to: 'number',
    ipv4: 'bool',
    ipv6: 'bool',
    wait: 'bool',
    server: 'bool',
    delay: 'bool',
    nodelay: 'bool',
    reconnect: 'number',
    telnet: 'bool',
    tn3270: 'bool',
    'tls-creds': 'string',
    'tls-authz': 'string',
    websocket: 'bool',
    width: 'number',
    height: 'number',
    cols: 'number',
    rows: 'number',
    mux: 'bool',
    signal: 'bool',
    name: 'string',
    debug: 'number',
    size: 'size',
    chardev: 'string',
    append: 'bool',
    logfile: 'string',
    logappend: 'bool',
    mouse: 'bool',
    clipboard: 'bool',
    tight: 'bool',
    abstract: 'bool',
  },
};

export const MON_OPTS: OptsList = { name: 'mon', implied: 'chardev', params: { mode: 'string', chardev: 'string', pretty: 'bool' } };

/** QEMU's character device backends: `-chardev file,...` is a real one hostmemd does not serve
 *  QMP on, `-chardev bogus,...` is not a backend at all. */
const QEMU_CHARDEV_BACKENDS = new Set(['null', 'socket', 'udp', 'ringbuf', 'memory', 'file', 'serial', 'tty', 'parallel', 'parport', 'pipe', 'pty', 'stdio', 'mux', 'msmouse', 'wctablet', 'braille', 'testdev', 'vc', 'console', 'spicevmc', 'spiceport', 'qemu-vdagent', 'dbus']);
/** The `-qmp` spellings QEMU knows besides unix: and tcp: (qemu_chr_parse_compat). */
const QEMU_COMPAT_PREFIXES = ['null', 'vc', 'msmouse', 'braille', 'stdio', 'pty', 'con:', 'file:', 'pipe:', 'udp:', 'telnet:', 'websocket:', 'mon:', '/dev/', 'COM', 'chardev:'];
/** Socket features hostmemd does not implement: on (or set) they are refused, not ignored. */
const UNSUPPORTED_SOCKET_KEYS = ['telnet', 'tn3270', 'websocket', 'tls-creds', 'tls-authz', 'mux', 'abstract', 'tight', 'logfile', 'localaddr', 'localport', 'to'];

/** The longest reconnect delay used: timers cannot wait past 2^31 ms (a larger value, which
 *  QEMU would take, is cut to this). */
export const MAX_RECONNECT_S = 2_147_483;

export type QmpEndpoint =
  | { kind: 'unix-listen'; path: string; wait: boolean }
  | { kind: 'tcp-listen'; host: string; port: string; wait: boolean }
  | { kind: 'unix-connect'; path: string; reconnectS: number }
  | { kind: 'tcp-connect'; host: string; port: string; reconnectS: number }
  /** An inherited socket: listening (served) or connected (one session); `server` is what the
   *  command line said (QEMU's server=on needs a listening one). */
  | { kind: 'fd'; fd: number; server: boolean; wait: boolean };

/** One QMP monitor to open: `where` is the option as QEMU prints it in its errors. */
export interface MonitorSpec {
  where: string;
  /** The chardev's id (`compat_monitor0` for -qmp), as QEMU names it in messages. */
  label: string;
  endpoint: QmpEndpoint;
  pretty: boolean;
}

/** An error printed as QEMU does: `hostmemd: <where>: <line>` for each line, then the hint. */
export class QemuCliError extends Error {
  /** Warning lines to print before it (`hostmemd: <where>: warning: ...`, then a hint). */
  warnings: string[] = [];
  constructor(
    readonly where: string | undefined,
    readonly lines: string[],
    readonly hint?: string,
  ) {
    super(lines.join('; '));
  }
  text(prog: string): string {
    const pre = this.where === undefined ? `${prog}: ` : `${prog}: ${this.where}: `;
    return this.lines.map((l) => pre + l + '\n').join('') + (this.hint ? this.hint + '\n' : '');
  }
}

interface Chardev {
  where: string;
  opts: ParsedOpts;
  /** -qmp's compat chardevs listen unless told otherwise when spelt --qmp (hostmemd's own). */
  legacyServer?: boolean;
}

interface Mon {
  where: string;
  opts: ParsedOpts;
}

function rethrow(where: string, e: unknown, extra: string[] = []): never {
  if (e instanceof OptsError) {
    const err = new QemuCliError(where, [e.message, ...extra], e.hint);
    err.warnings = e.warnings.flatMap(([m, h]) => [`hostmemd: ${where}: ${m}`, h]);
    throw err;
  }
  throw e;
}

/** Collects the monitor options in argv order; resolve() then checks them as QEMU does. */
export class MonitorOptions {
  private readonly chardevs: Chardev[] = [];
  private readonly mons: Mon[] = [];
  private readonly chardevIds = new Set<string>();
  private readonly monIds = new Set<string>();
  private compatIndex = 0;
  /** Lines to print on stderr as they are (QEMU's warnings and their hint lines). */
  readonly warnings: string[] = [];

  private warn(where: string, w: [string, string][]): void {
    for (const [msg, hint] of w) this.warnings.push(`hostmemd: ${where}: ${msg}`, hint);
  }

  /** `-chardev SPEC`; `opt` is the option as typed. */
  chardev(opt: string, spec: string): void {
    const where = `${opt} ${spec}`;
    try {
      const r = parseOpts(CHARDEV_OPTS, spec, true, this.chardevIds);
      this.warn(where, r.warnings);
      this.chardevs.push({ where, opts: r.opts });
    } catch (e) {
      rethrow(where, e);
    }
  }

  /** `-mon SPEC`. */
  mon(opt: string, spec: string): void {
    const where = `${opt} ${spec}`;
    try {
      const r = parseOpts(MON_OPTS, spec, true, this.monIds);
      this.warn(where, r.warnings);
      this.mons.push({ where, opts: r.opts });
    } catch (e) {
      rethrow(where, e);
    }
  }

  /** `-qmp SPEC` / `-qmp-pretty SPEC`: a chardev `compat_monitorN` and a control monitor on
   *  it. `legacy`: hostmemd's own `--qmp unix:PATH`, which listens (server=on, wait=off) unless
   *  the spec says otherwise. */
  qmp(opt: string, spec: string, pretty: boolean, legacy = false): void {
    const where = `${opt} ${spec}`;
    const label = `compat_monitor${this.compatIndex++}`;
    const opts = this.compatChardev(where, spec);
    opts.id = label;
    this.chardevs.push({ where, opts, legacyServer: legacy });
    const values = new Map<string, string | boolean | bigint>([
      ['mode', 'control'],
      ['chardev', label],
      ['pretty', pretty],
    ]);
    this.mons.push({ where, opts: { values } });
  }

  /** qemu_chr_parse_compat for the spellings a QMP monitor can use. */
  private compatChardev(where: string, spec: string): ParsedOpts {
    const parseError = `parse error: ${spec}`;
    try {
      if (spec.startsWith('unix:')) {
        const { opts } = parseOpts({ ...CHARDEV_OPTS, implied: 'path' }, spec.slice(5), false);
        opts.values.set('backend', 'socket');
        return opts;
      }
      if (spec.startsWith('tcp:')) {
        const p = spec.slice(4);
        const m = /^([^:]{1,64}):([^,]{1,32})/.exec(p) ?? /^():([^,]{1,32})/.exec(p);
        if (!m) throw new QemuCliError(where, [`'${spec}' is not a valid char driver`, parseError]);
        const rest = p.slice(m[0].length);
        const { opts } = rest.startsWith(',') ? parseOpts({ ...CHARDEV_OPTS, implied: undefined }, rest.slice(1), false) : { opts: { values: new Map() } as ParsedOpts };
        opts.values.set('backend', 'socket');
        opts.values.set('host', m[1]);
        opts.values.set('port', m[2]);
        return opts;
      }
    } catch (e) {
      rethrow(where, e, [parseError]);
    }
    if (QEMU_COMPAT_PREFIXES.some((p) => spec.startsWith(p))) {
      throw new QemuCliError(where, ['hostmemd serves QMP only on unix: and tcp: sockets']);
    }
    throw new QemuCliError(where, [`'${spec}' is not a valid char driver`, parseError]);
  }

  /** Whether any monitor was given (then no default socket is made). */
  get any(): boolean {
    return this.mons.length > 0;
  }

  /** Checks the chardevs, then the monitors, and returns what to open, in argv order. */
  resolve(tcp: { allow: boolean; allowRemote: boolean }): MonitorSpec[] {
    const endpoints = new Map<string, { where: string; endpoint: QmpEndpoint }>();
    for (const c of this.chardevs) endpoints.set(c.opts.id ?? '', { where: c.where, endpoint: socketEndpoint(c, tcp) });
    const used = new Set<string>();
    const out: MonitorSpec[] = [];
    for (const m of this.mons) {
      const v = m.opts.values;
      const chardev = v.get('chardev') as string | undefined;
      if (chardev === undefined) throw new QemuCliError(m.where, ["Parameter 'chardev' is missing"]);
      const c = endpoints.get(chardev);
      if (!c) throw new QemuCliError(m.where, [`chardev "${chardev}" not found`]);
      const mode = (v.get('mode') as string | undefined) ?? 'readline';
      if (mode !== 'readline' && mode !== 'control') throw new QemuCliError(m.where, [`Parameter 'mode' does not accept value '${mode}'`]);
      const pretty = v.get('pretty') === true;
      if (mode === 'readline') {
        if (pretty) throw new QemuCliError(m.where, ["'pretty' is not compatible with HMP monitors"]);
        throw new QemuCliError(m.where, ['hostmemd has no human monitor on a chardev (mode=readline); use mode=control, and human-monitor-command for HMP']);
      }
      if (used.has(chardev)) throw new QemuCliError(m.where, [`Device '${chardev}' is in use`]);
      used.add(chardev);
      out.push({ where: c.where, label: chardev, endpoint: c.endpoint, pretty });
    }
    return out;
  }
}

/** qemu_chr_parse_socket and its checks, for one chardev. */
function socketEndpoint(c: Chardev, tcp: { allow: boolean; allowRemote: boolean }): QmpEndpoint {
  const v = c.opts.values;
  const fail = (line: string): never => {
    throw new QemuCliError(c.where, [line]);
  };
  const backend = (v.get('backend') as string | undefined) ?? '';
  if (!QEMU_CHARDEV_BACKENDS.has(backend)) fail(`'${backend}' is not a valid char driver name`);
  if (c.opts.id === undefined) fail('chardev: no id specified');
  if (backend !== 'socket') fail('hostmemd serves QMP only on socket chardevs');
  const path = v.get('path') as string | undefined;
  const host = v.get('host') as string | undefined;
  const fd = v.get('fd') as string | undefined;
  if ((path !== undefined ? 1 : 0) + (host !== undefined ? 1 : 0) + (fd !== undefined ? 1 : 0) > 1) fail("None or one of 'path', 'fd' or 'host' option required.");
  const server = (v.get('server') as boolean | undefined) ?? c.legacyServer === true;
  if (!server && v.has('wait')) fail("'wait' option is incompatible with socket in client connect mode");
  if (server && v.has('reconnect')) fail("'reconnect' option is incompatible with socket in server listen mode");
  for (const k of UNSUPPORTED_SOCKET_KEYS) {
    const x = v.get(k);
    if (x !== undefined && x !== false) fail(`hostmemd does not support the socket option '${k}'`);
  }
  const wait = (v.get('wait') as boolean | undefined) ?? c.legacyServer !== true;
  const r = (v.get('reconnect') as bigint | undefined) ?? 0n;
  const reconnectS = r > BigInt(MAX_RECONNECT_S) ? MAX_RECONNECT_S : Number(r);
  if (path !== undefined && path !== '') {
    return server ? { kind: 'unix-listen', path, wait } : { kind: 'unix-connect', path, reconnectS };
  }
  if (host !== undefined) {
    const port = v.get('port') as string | undefined;
    if (port === undefined) fail('chardev: socket: no port given');
    if (!tcp.allow) fail('a TCP monitor is unauthenticated: anyone who can connect to it controls hostmemd; pass --qmp-allow-tcp to allow one on a loopback address');
    if (!isLoopback(host) && !tcp.allowRemote) fail(`'${host}' is not a loopback address; pass --qmp-allow-remote as well to allow an unauthenticated monitor there`);
    return server ? { kind: 'tcp-listen', host, port: port!, wait } : { kind: 'tcp-connect', host, port: port!, reconnectS };
  }
  // Neither path nor host: an fd number (QEMU reads an empty path the same way).
  const text = fd ?? '';
  if (!/^-?[0-9]+$/.test(text) || Math.abs(Number(text)) > 0x7fffffff) fail(`Unable to parse FD number ${text}`);
  return { kind: 'fd', fd: Number(text), server, wait };
}

/** Loopback hosts: 127.0.0.0/8, ::1 and localhost. An empty host (`tcp::4444`) is every
 *  address, so not loopback. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.[0-9]{1,3}){3}$/.test(h);
}
