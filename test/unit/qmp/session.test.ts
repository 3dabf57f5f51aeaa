// Session semantics with fake commands: in-band FIFO behind a slow command, OOB overtaking,
// malformed input answered in-band, events only after negotiation, disconnects with replies
// pending, and shutdown waiting for in-flight commands.
import { Dispatcher, DispatchCommand } from '../../../src/qmp/dispatcher';
import { Monitor } from '../../../src/qmp/monitor';
import { QmpSession, Transport } from '../../../src/qmp/session';
import { Handler } from '../../../src/qmp/messages';
import { JsonObject } from '../../../src/json/value';

class FakeTransport implements Transport {
  readonly kind = 'fake';
  out: string[] = [];
  paused = false;
  ended = false;
  write(text: string): boolean {
    this.out.push(...text.split('\r\n').filter((l) => l !== ''));
    return true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  end(): void {
    this.ended = true;
  }
}

function setup() {
  let release: () => void = () => undefined;
  const handlers: Record<string, Handler> = {
    qmp_capabilities: (args, { session }) => {
      session.completeNegotiation((args.enable as string[] | undefined) ?? []);
      return {};
    },
    block: () => new Promise((resolve) => (release = () => resolve({ blocked: true }))),
    quick: () => ({ quick: true }),
    'oob-quick': () => ({ oob: true }),
    boom: () => {
      throw new Error('kaput');
    },
  };
  const commands = new Map<string, DispatchCommand>(
    Object.entries(handlers).map(([name, handler]) => [name, { name, handler, allowOob: name === 'oob-quick' }]),
  );
  const unexpected: unknown[] = [];
  const dispatcher = new Dispatcher(
    commands,
    { validate: (_c: string, args: JsonObject) => ({ ok: true, value: args }) },
    { onCommand: () => undefined, onUnexpected: (e) => unexpected.push(e) },
  );
  const monitor = new Monitor({ dispatcher, version: { qemu: { major: 11, minor: 1, micro: 0 }, package: 'x' }, maxClients: 4 });
  const t = new FakeTransport();
  const s = monitor.attach(t) as QmpSession;
  const feed = (text: string) => s.receive(Buffer.from(text));
  return { monitor, t, s, feed, release: () => release(), unexpected };
}

const tick = () => new Promise((r) => setImmediate(r));

test('in-band replies keep request order behind a slow command; OOB overtakes them', async () => {
  const { t, feed, release } = setup();
  feed('{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}');
  t.out = [];
  feed('{"execute":"block","id":"ib-blocks-1"}{"execute":"quick","id":"ib-quick-1"}{"id":"err-2"}{"exec-oob":"oob-quick","id":"oob-1"}');
  await tick();
  expect(t.out).toEqual(['{"return": {"oob": true}, "id": "oob-1"}']);
  release();
  await tick();
  expect(t.out).toEqual([
    '{"return": {"oob": true}, "id": "oob-1"}',
    '{"return": {"blocked": true}, "id": "ib-blocks-1"}',
    '{"return": {"quick": true}, "id": "ib-quick-1"}',
    '{"id": "err-2", "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}',
  ]);
});

test('parse errors are queued in-band behind a running command', async () => {
  const { t, feed, release } = setup();
  feed('{"execute":"qmp_capabilities"}');
  t.out = [];
  feed('{"execute":"block","id":1}{]');
  await tick();
  expect(t.out).toEqual([]);
  release();
  await tick();
  expect(t.out).toEqual(['{"return": {"blocked": true}, "id": 1}', '{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}']);
});

test('events reach only negotiated sessions, with timestamp first and data omitted when empty', () => {
  const { monitor, t, feed } = setup();
  t.out = [];
  monitor.emitEvent('OBJECT_ADDED', { id: 'm' });
  expect(t.out).toEqual([]);
  feed('{"execute":"qmp_capabilities"}');
  monitor.emitEvent('OBJECT_ADDED', { id: 'm' });
  monitor.emitEvent('STOP', {});
  expect(t.out[1]).toMatch(/^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "OBJECT_ADDED", "data": \{"id": "m"\}\}$/);
  expect(t.out[2]).toMatch(/^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "STOP"\}$/);
});

test('a handler that throws a plain Error gives GenericError, is reported, and the session lives on', () => {
  const { t, feed, unexpected } = setup();
  feed('{"execute":"qmp_capabilities"}{"execute":"boom","id":1}{"execute":"quick","id":2}');
  expect(t.out.slice(2)).toEqual(['{"id": 1, "error": {"class": "GenericError", "desc": "internal error: kaput"}}', '{"return": {"quick": true}, "id": 2}']);
  expect(unexpected).toHaveLength(1);
});

test('disconnect drops queued requests and partial input; the running command finishes quietly', async () => {
  const { monitor, t, s, feed, release } = setup();
  feed('{"execute":"qmp_capabilities"}{"execute":"block"}{"execute":"quick"}{"execute":"qu');
  t.out = [];
  s.close();
  expect(monitor.clientCount).toBe(0);
  let idle = false;
  void monitor.whenIdle().then(() => (idle = true));
  await tick();
  expect(idle).toBe(false); // shutdown would wait for the running command
  release();
  await tick();
  expect(idle).toBe(true);
  expect(t.out).toEqual([]);
});

test('a long in-band queue pauses reading and resumes when it drains', async () => {
  const { t, feed, release } = setup();
  feed('{"execute":"qmp_capabilities"}');
  feed('{"execute":"block"}' + '{"execute":"quick"}'.repeat(100));
  expect(t.paused).toBe(true);
  release();
  await tick();
  expect(t.paused).toBe(false);
  expect(t.out.filter((l) => l.includes('quick'))).toHaveLength(100);
});

test('client limit: attach refuses beyond maxClients', () => {
  const { monitor } = setup();
  for (let i = 0; i < 3; i++) expect(monitor.attach(new FakeTransport())).toBeInstanceOf(QmpSession);
  expect(monitor.attach(new FakeTransport())).toEqual({ refusal: '{"error": {"class": "GenericError", "desc": "Too many QMP clients: the limit is 4"}}\r\n' });
});
