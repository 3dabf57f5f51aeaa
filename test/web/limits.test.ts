// Per-connection limits of the /qmp WebSocket: an oversized frame is closed with 1009 and
// the limit in words, a client sending faster than the rate limit with 1008, a client that
// stops reading is cut off once it has taken none of its backlog for the stall time while a
// client reading slowly gets everything (a long pipeline, a 17 MB reply), and a client beyond
// --max-clients gets QEMU's refusal text and 1013; each is counted in /metrics. A client that
// does not negotiate in time gets the timeout's GenericError line and 1008.
import type * as net from 'node:net';
import { RawQmpClient } from '../helpers/qmp-client';
import { WebDaemon, WsQmpClient, httpGet, startWebDaemon } from './ws-client';

async function metric(d: WebDaemon, series: string): Promise<number> {
  const text = (await httpGet(`${d.url}/metrics`, d.token)).body;
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

async function until(cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('frame size limit', () => {
  let d: WebDaemon;
  beforeAll(async () => {
    d = await startWebDaemon(['--ws-limit', 'max-frame=1024']);
  });
  afterAll(async () => {
    await d.stop();
  });

  test('a frame up to the limit is served; a larger one closes with 1009 and a reason', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    const pad = ' '.repeat(1024 - '{"execute":"query-prealloc","id":1}'.length);
    c.send('{"execute":"query-prealloc","id":1}' + pad);
    expect(await c.line()).toBe('{"return": [], "id": 1}');
    c.send('{"execute":"query-prealloc","id":2}' + pad + ' ');
    expect(await c.waitClosed()).toEqual({ code: 1009, reason: 'QMP message too large: the limit is 1024 bytes' });
    expect(await metric(d, 'hostmemd_client_disconnects_total{transport="websocket",reason="too-large"}')).toBe(1);
  });

  test('the default limit is 64 MiB, like QEMU\'s token limit', async () => {
    const { DEFAULT_WS_LIMITS } = await import('../../src/transport/websocket');
    expect(DEFAULT_WS_LIMITS.maxPayload).toBe(64 * 1024 * 1024);
  });
});

describe('a reply printed a piece per turn', () => {
  let d: WebDaemon;
  beforeAll(async () => {
    d = await startWebDaemon([]);
  });
  afterAll(async () => {
    await d.stop();
  });

  test('a long id echoed in pieces arrives as one message (fragments), then the next reply', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    c.send('{"execute":"query-version","id":1}');
    const small = await c.line();
    const ret = small.slice(0, small.indexOf(', "id": 1}'));
    // 200 kB of UTF-8 (decoded in parts), 600 kB of \\uXXXX escapes (written in pieces).
    c.send(`{"execute":"query-version","id":"${'é'.repeat(100_000)}😀"}{"execute":"query-version","id":2}`);
    expect(await c.line()).toBe(`${ret}, "id": "${'\\u00E9'.repeat(100_000)}\\uD83D\\uDE00"}`);
    expect(await c.line()).toBe(`${ret}, "id": 2}`);
  });
});

describe('message rate limit', () => {
  let d: WebDaemon;
  beforeAll(async () => {
    d = await startWebDaemon(['--ws-limit', 'rate=50', '--ws-limit', 'burst=20']);
  });
  afterAll(async () => {
    await d.stop();
  });

  test('a burst within the limit is answered in full', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    for (let i = 0; i < 15; i++) c.send(`{"execute":"query-kvm","id":${i}}`);
    for (let i = 0; i < 15; i++) expect(await c.line()).toMatch(new RegExp(`"id": ${i}\\}$`));
    c.close();
  });

  test('a flood closes the connection with 1008 and says why', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    for (let i = 0; i < 200; i++) c.send(`{"execute":"query-kvm","id":${i}}`);
    expect(await c.waitClosed()).toEqual({ code: 1008, reason: 'QMP message rate limit exceeded: at most 50 messages per second' });
    expect(await metric(d, 'hostmemd_client_disconnects_total{transport="websocket",reason="rate-limit"}')).toBe(1);
  });
});

/** Reads `c`'s connection at about `bytesPerSecond` (pausing its TCP socket); returns a
 *  function that stops throttling. */
function throttle(c: WsQmpClient, bytesPerSecond: number): () => void {
  const sock = (c.ws as unknown as { _socket: net.Socket })._socket;
  const t0 = performance.now();
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  let on = true;
  sock.on('data', (d: Buffer) => {
    bytes += d.length;
    const due = (bytes / bytesPerSecond) * 1000 - (performance.now() - t0);
    if (on && due > 1 && !timer) {
      sock.pause();
      timer = setTimeout(() => {
        timer = undefined;
        sock.resume();
      }, due);
    }
  });
  return () => {
    on = false;
    clearTimeout(timer);
    sock.resume();
  };
}

describe('slow readers and the client limit', () => {
  let d: WebDaemon;
  beforeAll(async () => {
    d = await startWebDaemon(['--ws-limit', 'send-buffer=262144', '--ws-limit', 'stall=1', '--ws-limit', 'rate=0', '--max-clients', '3']);
  });
  afterAll(async () => {
    await d.stop();
  });

  // Reported: a client reading at 13 MB/s got 21,078 of 1 M pipelined replies, cut off at a
  // 16 MiB backlog while it read. 30,000 here (2.3 MB of replies, 9 times send-buffer) read at
  // ~500 kB/s: over four times the stall time.
  test('a client reading a long pipeline slowly gets every reply', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    const stop = throttle(c, 500_000);
    const N = 30_000;
    for (let i = 0; i < N; i += 1000) {
      let frame = '';
      for (let j = i; j < i + 1000; j++) frame += `{"execute":"query-version","id":${j}}`;
      c.send(frame);
    }
    let inOrder = 0;
    for (let i = 0; i < N; i++) if ((await c.line(20000)).endsWith(`"id": ${i}}`)) inOrder++;
    expect(inOrder).toBe(N);
    stop();
    expect(await c.execute('query-version')).toHaveProperty('return');
    expect(await metric(d, 'hostmemd_client_disconnects_total{transport="websocket",reason="slow-reader"}')).toBe(0);
    c.close();
  }, 60000);

  // Reported: a 17 MB id was cut off (its reply alone passed the 16 MiB bound).
  test('a client reading one 17 MB reply slowly gets all of it', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    const stop = throttle(c, 5_000_000); // ~3.5 s for the reply: 3.5 stall times
    const id = 'i'.repeat(17_000_000);
    c.send(`{"execute":"query-version","id":"${id}"}`);
    const line = await c.line(30000);
    expect(line.length).toBeGreaterThan(17_000_000);
    expect(line.endsWith(`"id": "${id}"}`)).toBe(true);
    stop();
    expect(await metric(d, 'hostmemd_client_disconnects_total{transport="websocket",reason="slow-reader"}')).toBe(0);
    c.close();
  }, 60000);

  test('a client that stops reading is cut off once it has taken none of its backlog for the stall time', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    const other = await RawQmpClient.negotiated(d.sock);
    const before = d.daemon.monitor.clientCount;
    // Stop reading at the TCP level, then ask for far more output than kernel buffers hold.
    (c.ws as unknown as { _socket: net.Socket })._socket.pause();
    const req = '{"execute":"query-qmp-schema"}';
    for (let i = 0; i < 3000 && d.daemon.monitor.clientCount === before; i++) {
      c.send(req);
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    await until(() => d.daemon.monitor.clientCount === before - 1);
    expect(await metric(d, 'hostmemd_client_disconnects_total{transport="websocket",reason="slow-reader"}')).toBe(1);
    // Other clients are unaffected.
    expect(await other.execute('query-prealloc', undefined, 'k')).toEqual({ return: [], id: 'k' });
    (c.ws as unknown as { _socket: net.Socket })._socket.resume();
    await c.waitClosed();
    other.close();
  });

  test('a client beyond --max-clients gets the refusal text and 1013', async () => {
    const keep = [await WsQmpClient.negotiated(d.url, d.token), await WsQmpClient.negotiated(d.url, d.token), await RawQmpClient.negotiated(d.sock)];
    const extra = await WsQmpClient.connect(d.url, { token: d.token });
    expect(await extra.line()).toBe('{"error": {"class": "GenericError", "desc": "Too many QMP clients: the limit is 3"}}');
    expect(await extra.waitClosed()).toEqual({ code: 1013, reason: 'too many QMP clients' });
    for (const k of keep) k.close();
  });
});

describe('negotiation timeout', () => {
  let d: WebDaemon;
  beforeAll(async () => {
    d = await startWebDaemon(['--negotiation-timeout', '0.3']);
  });
  afterAll(async () => {
    await d.stop();
  });

  test('a WebSocket client that does not negotiate is told so and closed with 1008; a negotiated one stays', async () => {
    const kept = await WsQmpClient.negotiated(d.url, d.token);
    const idle = await WsQmpClient.connect(d.url, { token: d.token });
    expect(await idle.line()).toMatch(/^\{"QMP": /);
    expect(await idle.line(3000)).toBe('{"error": {"class": "GenericError", "desc": "QMP negotiation timed out: no qmp_capabilities within 0.3 seconds; closing the connection"}}');
    expect(await idle.waitClosed()).toEqual({ code: 1008, reason: 'QMP negotiation timed out' });
    await new Promise((r) => setTimeout(r, 500));
    expect(await kept.execute('query-version')).toHaveProperty('return');
    kept.close();
  });
});
