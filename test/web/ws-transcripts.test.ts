// The protocol transcripts of the UNIX socket (test/transcripts/*.qmp), byte for byte over
// the /qmp WebSocket: one session implementation, two transports. Plus what WebSockets add:
// one message per frame, several messages in one frame, events to WebSocket and UNIX
// clients alike, and the token presented as a subprotocol (the browser's way).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RawQmpClient } from '../helpers/qmp-client';
import { runTranscriptOverWebSocket } from './ws-transcript-runner';
import { WebDaemon, WsQmpClient, startWebDaemon } from './ws-client';

const dir = path.join(__dirname, '..', 'transcripts');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.qmp')).sort();

describe('QMP transcripts over the WebSocket', () => {
  let d: WebDaemon;
  beforeAll(async () => {
    d = await startWebDaemon();
  });
  afterAll(async () => {
    await d.stop();
  });

  test('all UNIX-socket transcripts are present', () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });

  test.each(files)('%s', async (f) => {
    await runTranscriptOverWebSocket(fs.readFileSync(path.join(dir, f), 'utf8'), d.url, d.token);
  });

  test('replies come one per frame, without CRLF, even for requests sent in one frame', async () => {
    const c = await WsQmpClient.negotiated(d.url, d.token);
    c.send('{"execute":"query-version","id":1}{"execute":"query-kvm","id":2}{"execute":"nosuch","id":3}');
    const frames = [await c.line(), await c.line(), await c.line()];
    expect(frames[0]).toMatch(/^\{"return": \{"qemu": .*"id": 1\}$/);
    expect(frames[1]).toMatch(/"id": 2\}$/);
    expect(frames[2]).toBe('{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command nosuch has not been found"}}');
    for (const f of frames) expect(f).not.toMatch(/[\r\n]/);
    c.close();
  });

  test('the token as a subprotocol works (browsers), and the server selects hostmemd.qmp', async () => {
    const c = await WsQmpClient.connect(d.url, { token: d.token, via: 'subprotocol' });
    expect(c.ws.protocol).toBe('hostmemd.qmp');
    expect(await c.line()).toMatch(/^\{"QMP": /);
    c.close();
  });

  test('events reach WebSocket and UNIX clients; OOB works over WebSocket', async () => {
    const ws = await WsQmpClient.negotiated(d.url, d.token, ['oob']);
    const unix = await RawQmpClient.negotiated(d.sock);
    const r = await unix.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'ev1', size: 1048576 }, 'a');
    expect(r).toEqual({ return: {}, id: 'a' });
    const ev = await ws.event('OBJECT_ADDED');
    expect(ev.data).toEqual({ 'qom-type': 'memory-backend-memfd', path: '/objects/ev1', id: 'ev1' });
    ws.send('{"exec-oob":"query-prealloc","id":"o"}');
    expect(await ws.line()).toBe('{"return": [], "id": "o"}');
    expect(await unix.execute('object-del', { id: 'ev1' }, 'd')).toEqual({ return: {}, id: 'd' });
    expect((await ws.event('OBJECT_DELETED')).data).toEqual({ 'qom-type': 'memory-backend-memfd', path: '/objects/ev1', id: 'ev1' });
    ws.close();
    unix.close();
  });

  test('a shutdown sends SHUTDOWN and closes WebSocket clients with 1001', async () => {
    const own = await startWebDaemon();
    const c = await WsQmpClient.negotiated(own.url, own.token);
    const stopping = own.stop();
    expect((await c.event('SHUTDOWN')).data).toEqual({ guest: false, reason: 'host-signal' });
    expect(await c.waitClosed()).toEqual({ code: 1001, reason: 'hostmemd is shutting down' });
    await stopping;
  });
});
