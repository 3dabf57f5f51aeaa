"""Raw-socket QMP client for bench/cold-query.mjs (no qemu.qmp: the standard library only).

Adds N 1 MiB memfd backends (pipelined in batches of 200), then times the first query-memdev
and the first qom-list /objects after that, each also once more, and once right after one
more object-add. Prints one JSON object: per call the milliseconds until the reply line was
read, the milliseconds including json.loads (what a Python client sees), and, when a pid is
given, the server's main-thread CPU milliseconds (/proc/PID/schedstat) over the call.
Usage: python3 cold_query.py SOCKET N [PID]"""
import json
import socket
import sys
import time

sock_path, n = sys.argv[1], int(sys.argv[2])
pid = sys.argv[3] if len(sys.argv) > 3 else None


def oncpu():
    if not pid:
        return 0.0
    with open(f'/proc/{pid}/schedstat') as f:
        return int(f.read().split()[0]) / 1e6


s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
f = s.makefile('rb')


def reply():
    while True:
        line = f.readline()
        if not line:
            raise SystemExit('connection closed')
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
            raise SystemExit(f'object-add: {r}')


for a in range(0, n, 200):
    add([f'm{j}' for j in range(a, min(a + 200, n))])


def timed(cmd):
    time.sleep(0.05)
    c0 = oncpu()
    t0 = time.perf_counter()
    s.sendall(json.dumps(cmd).encode())
    raw = reply()
    t1 = time.perf_counter()
    c1 = oncpu()
    r = json.loads(raw)
    t2 = time.perf_counter()
    if 'return' not in r:
        raise SystemExit(f'{cmd}: {r}')
    return {'read_ms': (t1 - t0) * 1000, 'python_ms': (t2 - t0) * 1000, 'server_cpu_ms': (c1 - c0) if pid else None, 'entries': len(r['return'])}


out = {}
for name, cmd in [('query-memdev', {'execute': 'query-memdev'}), ('qom-list', {'execute': 'qom-list', 'arguments': {'path': '/objects'}})]:
    out[name] = {'first': timed(cmd), 'second': timed(cmd)}
    add([f'x-{name}'])
    out[name]['after-add'] = timed(cmd)
print(json.dumps(out))
