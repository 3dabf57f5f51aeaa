// bench/fd-export: memdev-export round trip on the UNIX socket (send the request, receive the
// reply with the backend's fd by recvmsg(2), close the fd), p50/p99 in µs, next to the same
// client's query-version round trip (the floor: the protocol without fd passing).
// Run: npm run build && node bench/fd-export.mjs [--n N] [--json FILE]
//   --n N / EXPORT_N   round trips measured per figure (default 3000; 200 more warm up)
//   --json FILE        also write { bench, results: [{ name, unit, hostmemd, floor?, better }] }
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { startHostmemd, percentile, fmt, printTable } from './lib.mjs';

const require = createRequire(import.meta.url);
const native = require('../dist/native/index.js');

const argv = process.argv.slice(2);
const flag = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const N = Number(flag('--n') ?? process.env.EXPORT_N ?? 3000);
const JSON_OUT = flag('--json');

/** A QMP client reading with recvmsg, so fds attached to replies arrive. */
class FdClient {
  constructor(path) {
    this.sock = native.sockets.socket(native.sockets.SOCK_STREAM);
    native.sockets.connectNow(this.sock, path);
    this.buf = '';
    this.fds = [];
  }
  /** The next line, and the fds received while reading it. */
  async line() {
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        const fds = this.fds;
        this.fds = [];
        return { line, fds };
      }
      const r = await native.sockets.receiveWithFds(this.sock, 65536);
      if (r.data.length === 0 && r.fds.length === 0) throw new Error('connection closed');
      this.buf += r.data.toString('latin1');
      this.fds.push(...r.fds);
    }
  }
  /** Sends a request and returns its reply (events skipped, their fds closed). */
  async request(text) {
    await native.sockets.sendWithFdsAsync(this.sock, Buffer.from(text));
    for (;;) {
      const r = await this.line();
      if (!r.line.startsWith('{"timestamp"')) return r;
      for (const fd of r.fds) fd.close();
    }
  }
  close() {
    native.sockets.shutdown(this.sock);
    this.sock.close();
  }
}

async function rtt(c, req, n, check) {
  const t = [];
  for (let i = 0; i < n + 200; i++) {
    const s = process.hrtime.bigint();
    const r = await c.request(req);
    for (const fd of r.fds) fd.close();
    if (i >= 200) t.push(Number(process.hrtime.bigint() - s) / 1000);
    check?.(r);
  }
  t.sort((a, b) => a - b);
  return { p50: percentile(t, 50), p99: percentile(t, 99) };
}

const h = await startHostmemd(['--accel', 'none']);
let floor;
let exp;
try {
  const c = new FdClient(h.sock);
  await c.line();
  await c.request('{"execute":"qmp_capabilities"}');
  const add = await c.request('{"execute":"object-add","arguments":{"qom-type":"memory-backend-memfd","id":"ram0","size":67108864}}');
  if (add.line !== '{"return": {}}') throw new Error(add.line);
  floor = await rtt(c, '{"execute":"query-version"}', N);
  exp = await rtt(c, '{"execute":"memdev-export","arguments":{"id":"ram0"}}', N, (r) => {
    if (r.fds.length !== 1) throw new Error(`expected one fd: ${r.line}`);
  });
  c.close();
} finally {
  await h.stop();
}

printTable([
  ['round trip (µs), UNIX socket, recvmsg client', 'p50', 'p99'],
  ['memdev-export (reply + fd, fd closed)', fmt(exp.p50), fmt(exp.p99)],
  ['query-version (floor)', fmt(floor.p50), fmt(floor.p99)],
]);
if (JSON_OUT) {
  const results = [
    { name: 'memdev-export round trip p50', unit: 'us', hostmemd: exp.p50, floor: floor.p50, better: 'lower' },
    { name: 'memdev-export round trip p99', unit: 'us', hostmemd: exp.p99, floor: floor.p99, better: 'lower' },
  ];
  writeFileSync(JSON_OUT, JSON.stringify({ bench: 'fd-export', results }, null, 2) + '\n');
}
