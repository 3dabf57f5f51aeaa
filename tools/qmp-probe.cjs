#!/usr/bin/env node
// A well-behaved QMP client for measuring how a daemon serves others while it is attacked
// (bench/attacks.mjs, test/integration/hostile-input.test.ts): a separate process, so that the
// attacker's own work does not count. It connects to the UNIX socket SOCK, negotiates, prints
// "ready", then asks query-version in a loop, 2 ms after each answer, until its stdin ends; it
// then prints one JSON line: the round trips' p50, p99 and max (ms), their count n, and
// `unanswered` (a request still unanswered GRACE_MS after the end, or when the connection
// failed; it counts as taking that long).
// Usage: node tools/qmp-probe.cjs SOCK [GRACE_MS=5000]
'use strict';
const net = require('node:net');
const { performance } = require('node:perf_hooks');

const sock = process.argv[2];
const graceMs = Number(process.argv[3] ?? 5000);
const c = net.connect(sock);
c.setNoDelay(true);
c.setEncoding('latin1');
let buf = '';
let stage = 0;
let t0 = 0;
let stop = false;
let outstanding = false;
let unanswered = false;
let finished = false;
const times = [];

c.on('error', () => finish());
c.on('data', (d) => {
  buf += d;
  for (let i; (i = buf.indexOf('\r\n')) >= 0; ) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 2);
    onLine(line);
  }
});

function onLine(line) {
  if (stage === 0) {
    stage = 1;
    c.write('{"execute":"qmp_capabilities"}');
    return;
  }
  if (stage === 1) {
    stage = 2;
    process.stdout.write('ready\n');
    send();
    return;
  }
  if (line.startsWith('{"event"')) return;
  outstanding = false;
  times.push(performance.now() - t0);
  setTimeout(send, 2);
}

function send() {
  if (stop) return finish();
  outstanding = true;
  t0 = performance.now();
  c.write('{"execute":"query-version"}');
}

function finish() {
  if (finished) return;
  finished = true;
  if (outstanding) {
    unanswered = true;
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const pc = (p) => times[Math.min(times.length - 1, Math.floor(times.length * p))];
  process.stdout.write(JSON.stringify({ p50: pc(0.5), p99: pc(0.99), max: times[times.length - 1], n: times.length, unanswered }) + '\n');
  process.exit(0);
}

process.stdin.resume();
process.stdin.on('end', () => {
  stop = true;
  setTimeout(finish, graceMs).unref();
});
