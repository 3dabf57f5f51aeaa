"""Raw-socket QMP client for bench/cold-query.mjs (no qemu.qmp: the standard library only).

Adds N 1 MiB memfd backends (pipelined in batches of 200), then times the first query-memdev
and the first qom-list /objects after that, each also once more, and once right after one
more object-add. Prints one JSON object: per call the milliseconds until the reply line was
read, the milliseconds including json.loads (what a Python client sees), json.loads alone
(parse_ms: the client's own floor, whatever the server), the call's start and
end on CLOCK_MONOTONIC (t0/t1, seconds: a --cpu-prof of the daemon uses the same clock), and,
with --pid, the server's main-thread CPU milliseconds (/proc/PID/schedstat) over the call, and
with --state-dir, hostmemd's journal log size before and after it (log_bytes).
With --add-seconds S, adding stops after the first batch that ends past S seconds (QEMU 7.2's
object-add slows as objects accumulate: 10,000 take it a quarter of an hour), and the queries
run at the count reached ("added"; "bounded": true). It never ends in a traceback: a failure
(the server closing the connection, an error reply) is printed as {"error": ..., "added": K}
with whatever was measured before it.
Usage: python3 cold_query.py SOCKET N [--pid PID] [--state-dir DIR] [--add-seconds S]"""
import argparse
import json
import os
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument('sock')
ap.add_argument('n', type=int)
ap.add_argument('--pid')
ap.add_argument('--add-seconds', type=float)
ap.add_argument('--state-dir')
args = ap.parse_args()
pid = args.pid
out = {'requested': args.n, 'added': 0, 'bounded': False}


class Failed(Exception):
    pass


def log_bytes():
    """The size of hostmemd's journal log (--state-dir): a checkpoint empties it, so a call
    that starts with a full log and ends with an empty one overlapped a checkpoint."""
    if not args.state_dir:
        return None
    try:
        return os.stat(os.path.join(args.state_dir, 'journal.log')).st_size
    except OSError:
        return -1


def oncpu():
    if not pid:
        return 0.0
    with open(f'/proc/{pid}/schedstat') as fh:
        return int(fh.read().split()[0]) / 1e6


def run():
    s = socket.socket(socket.AF_UNIX)
    s.connect(args.sock)
    f = s.makefile('rb')

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise Failed('the server closed the connection')
            # Replies start with their first member; events with "timestamp" (QDict order).
            if line.startswith((b'{"return"', b'{"error"', b'{"id"')):
                return line

    f.readline()
    s.sendall(b'{"execute":"qmp_capabilities"}')
    reply()

    def add(ids):
        s.sendall(b''.join(json.dumps({'execute': 'object-add', 'arguments': {'qom-type': 'memory-backend-memfd', 'id': i, 'size': 1 << 20}}).encode() for i in ids))
        for _ in ids:
            r = json.loads(reply())
            if 'error' in r:
                raise Failed(f'object-add: {r["error"]}')
            added[0] += 1

    added = [0]

    start = time.monotonic()
    for a in range(0, args.n, 200):
        if args.add_seconds is not None and time.monotonic() - start > args.add_seconds:
            out['bounded'] = True
            break
        try:
            add([f'm{j}' for j in range(a, min(a + 200, args.n))])
        finally:
            out['added'] = added[0]
    out['add_seconds'] = time.monotonic() - start

    def timed(cmd):
        time.sleep(0.05)
        l0 = log_bytes()
        c0 = oncpu()
        t0 = time.monotonic()
        s.sendall(json.dumps(cmd).encode())
        raw = reply()
        t1 = time.monotonic()
        c1 = oncpu()
        r = json.loads(raw)
        t2 = time.monotonic()
        if 'return' not in r:
            raise Failed(f'{cmd["execute"]}: {r}')
        return {'read_ms': (t1 - t0) * 1000, 'python_ms': (t2 - t0) * 1000, 'parse_ms': (t2 - t1) * 1000, 'server_cpu_ms': (c1 - c0) if pid else None, 'entries': len(r['return']), 't0': t0, 't1': t1, 'log_bytes': [l0, log_bytes()]}

    for name, cmd in [('query-memdev', {'execute': 'query-memdev'}), ('qom-list', {'execute': 'qom-list', 'arguments': {'path': '/objects'}})]:
        out[name] = {'first': timed(cmd), 'second': timed(cmd)}
        add([f'x-{name}'])
        out[name]['after-add'] = timed(cmd)


try:
    run()
except (Failed, OSError, ValueError) as e:
    # OSError: ConnectionResetError when the server exits with requests unread, and the like.
    out['error'] = f'{type(e).__name__}: {e}' if not isinstance(e, Failed) else str(e)
print(json.dumps(out))
