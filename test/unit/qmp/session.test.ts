// Session semantics with fake commands: in-band FIFO behind a slow command, OOB overtaking,
// malformed input answered in-band, events only after negotiation, disconnects with replies
// pending, and shutdown waiting for in-flight commands; the negotiation timeout (jest's fake
// timers): idle clients closed with a GenericError line, negotiated ones kept, slots freed, the
// deadline held over a freeze and carried through a handover's export and adopt.
import { Dispatcher, DispatchCommand } from '../../../src/qmp/dispatcher';
import { Monitor } from '../../../src/qmp/monitor';
import { QmpSession, SessionExport, Transport, negotiationTimeoutText, InputBudget, INPUT_BUDGET_TEXT, REQUESTS_PER_TURN, FEED_SLICE_BYTES } from '../../../src/qmp/session';
import { Handler } from '../../../src/qmp/messages';
import { JsonObject } from '../../../src/json/value';

/** Lets `n` event-loop turns pass (real timers). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

class FakeTransport implements Transport {
  readonly kind = 'fake';
  out: string[] = [];
  paused = false;
  ended = false;
  endReason: string | undefined;
  admit?: () => boolean;
  backlogged?: (then: () => void) => boolean;
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
  end(reason?: string): void {
    this.ended = true;
    this.endReason = reason;
  }
  handOver(): Promise<{ fd: number; pending: Buffer }> {
    return Promise.resolve({ fd: 99, pending: Buffer.alloc(0) });
  }
}

function setup(opts: { negotiationTimeoutMs?: number; maxClients?: number; inputBudget?: InputBudget; early?: boolean } = {}) {
  let release: () => void = () => undefined;
  // change: answered once commit() is called, sending an event first (as a journaled change).
  let commit: () => void = () => undefined;
  const committed = new Promise<void>((resolve) => (commit = resolve));
  const handlers: Record<string, Handler> = {
    change: (args) =>
      committed.then(() => {
        monitor.emitEvent('CHANGED', { id: args.id as string });
        return {};
      }),
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
  // early: greets before it can answer (a daemon still restoring); serve() gives the dispatcher.
  const monitor = new Monitor({ dispatcher: opts.early ? undefined : dispatcher, version: { qemu: { major: 11, minor: 1, micro: 0 }, package: 'x' }, maxClients: opts.maxClients ?? 4, negotiationTimeoutMs: opts.negotiationTimeoutMs, inputBudget: opts.inputBudget });
  const t = new FakeTransport();
  const s = monitor.attach(t) as QmpSession;
  const feed = (text: string) => s.receive(Buffer.from(text));
  return { monitor, t, s, feed, release: () => release(), commit: () => commit(), unexpected, serve: () => monitor.serve(dispatcher) };
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

test('a monitor that does not serve yet greets at once and reads nothing; once it serves, input is read as usual', async () => {
  const { monitor, t, s, feed, serve } = setup({ early: true });
  expect(t.out).toEqual(['{"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 11}, "package": "x"}, "capabilities": ["oob"]}}']);
  const other = new FakeTransport();
  monitor.attach(other);
  expect(other.out).toHaveLength(1);
  // The input waits in the socket: the transports are not read.
  expect([t.paused, other.paused]).toEqual([true, true]);
  // Anything that reaches the dispatcher all the same waits for serve().
  let early: unknown;
  void Promise.resolve(monitor.dispatch({ execute: 'qmp_capabilities' }, (s as unknown as { ctx: never }).ctx, false)).then((r) => (early = r));
  await turns(3);
  expect(early).toBeUndefined();
  serve();
  expect([t.paused, other.paused]).toEqual([false, false]);
  await turns(3);
  expect(early).toMatchObject({ result: {} });
  const fresh = setup({ early: true });
  fresh.serve();
  // qmp_capabilities with oob, then exec-oob, written together before the daemon was ready.
  fresh.t.out = [];
  fresh.feed('{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}{"execute":"quick","id":1}{"exec-oob":"oob-quick","id":"o"}');
  await turns(3);
  expect(fresh.t.out).toEqual(['{"return": {}}', '{"return": {"quick": true}, "id": 1}', '{"return": {"oob": true}, "id": "o"}']);
  feed('{"execute":"quick","id":2}');
  await turns(3);
  expect(t.out.slice(-1)).toEqual(['{"return": {"quick": true}, "id": 2}']);
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

test('events reach only negotiated sessions, with timestamp first and data omitted when empty; those of one turn go out in one write', async () => {
  const { monitor, t, feed } = setup();
  t.out = [];
  monitor.emitEvent('OBJECT_ADDED', { id: 'm' });
  await tick();
  expect(t.out).toEqual([]);
  feed('{"execute":"qmp_capabilities"}');
  const writes = jest.spyOn(t, 'write');
  monitor.emitEvent('OBJECT_ADDED', { id: 'm' });
  monitor.emitEvent('STOP', {});
  expect(t.out).toHaveLength(1); // written at the end of the turn's cascade, not one by one
  await tick();
  expect(writes).toHaveBeenCalledTimes(1);
  expect(t.out[1]).toMatch(/^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "OBJECT_ADDED", "data": \{"id": "m"\}\}$/);
  expect(t.out[2]).toMatch(/^\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, "event": "STOP"\}$/);
});

test('changes answered together: each connection gets its reply and every event in one write', async () => {
  const { monitor, t, feed, commit } = setup();
  feed('{"execute":"qmp_capabilities"}');
  const other = new FakeTransport();
  const o = monitor.attach(other) as QmpSession;
  o.receive(Buffer.from('{"execute":"qmp_capabilities"}'));
  t.out = [];
  other.out = [];
  feed('{"execute":"change","arguments":{"id":"a"},"id":1}');
  o.receive(Buffer.from('{"execute":"change","arguments":{"id":"b"},"id":2}'));
  const writes = [jest.spyOn(t, 'write'), jest.spyOn(other, 'write')];
  commit();
  await tick();
  expect(writes.map((w) => w.mock.calls.length)).toEqual([1, 1]);
  const shape = (lines: string[]) => lines.map((l) => l.replace(/"timestamp": \{[^}]*\}, /, ''));
  // Events in the order they were sent; where each reply falls among them is not the point.
  expect(shape(t.out).sort()).toEqual(['{"event": "CHANGED", "data": {"id": "a"}}', '{"event": "CHANGED", "data": {"id": "b"}}', '{"return": {}, "id": 1}']);
  expect(shape(other.out).sort()).toEqual(['{"event": "CHANGED", "data": {"id": "a"}}', '{"event": "CHANGED", "data": {"id": "b"}}', '{"return": {}, "id": 2}']);
  for (const out of [t.out, other.out]) expect(shape(out.filter((l) => l.includes('"event"')))).toEqual(['{"event": "CHANGED", "data": {"id": "a"}}', '{"event": "CHANGED", "data": {"id": "b"}}']);
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

describe('negotiation timeout', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());
  const TIMEOUT = 60_000;
  const timedOut = `{"error": {"class": "GenericError", "desc": "${negotiationTimeoutText(TIMEOUT)}"}}`;

  test('an idle client gets one GenericError line at the deadline and is closed; its slot is free again', () => {
    const { monitor, t, s } = setup({ negotiationTimeoutMs: TIMEOUT, maxClients: 2 });
    const other = new FakeTransport();
    monitor.attach(other);
    expect(monitor.attach(new FakeTransport())).toHaveProperty('refusal');
    // Input that is not a negotiation does not extend the deadline.
    s.receive(Buffer.from('{"execute":"quick"}'));
    jest.advanceTimersByTime(TIMEOUT - 1);
    expect(t.ended).toBe(false);
    jest.advanceTimersByTime(1);
    expect(t.out.slice(-1)).toEqual([timedOut]);
    expect(negotiationTimeoutText(TIMEOUT)).toBe('QMP negotiation timed out: no qmp_capabilities within 60 seconds; closing the connection');
    expect(t.ended).toBe(true);
    expect(t.endReason).toBe('QMP negotiation timed out');
    expect(s.state).toBe(2 /* Closed */);
    expect(other.ended).toBe(true); // it was idle too
    expect(monitor.clientCount).toBe(0);
    expect(monitor.attach(new FakeTransport())).toBeInstanceOf(QmpSession);
  });

  test('a client greeted before the monitor serves gets its whole deadline from then on', () => {
    const { t, serve } = setup({ negotiationTimeoutMs: TIMEOUT, early: true });
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(5 * TIMEOUT);
    expect(t.ended).toBe(false);
    serve();
    jest.advanceTimersByTime(TIMEOUT - 1);
    expect(t.ended).toBe(false);
    jest.advanceTimersByTime(1);
    expect(t.out.slice(-1)).toEqual([timedOut]);
    expect(t.ended).toBe(true);
  });

  test('a negotiated client is kept, and no timer is left behind', () => {
    const { monitor, t, feed } = setup({ negotiationTimeoutMs: TIMEOUT });
    jest.advanceTimersByTime(TIMEOUT - 1000);
    feed('{"execute":"qmp_capabilities"}');
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(10 * TIMEOUT);
    expect(t.ended).toBe(false);
    expect(t.out.slice(-1)).toEqual(['{"return": {}}']);
    expect(monitor.clientCount).toBe(1);
  });

  test('a client that goes away clears its timer; 0 means no timer at all', () => {
    const { s } = setup({ negotiationTimeoutMs: TIMEOUT });
    expect(jest.getTimerCount()).toBe(1);
    s.close();
    expect(jest.getTimerCount()).toBe(0);
    const never = setup({ negotiationTimeoutMs: 0 });
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(10 * TIMEOUT);
    expect(never.t.ended).toBe(false);
  });

  test('during a handover the deadline waits for the thaw, and the export carries it', async () => {
    const { t, s } = setup({ negotiationTimeoutMs: TIMEOUT });
    const start = Date.now();
    await s.freeze();
    jest.advanceTimersByTime(TIMEOUT + 5);
    expect(t.ended).toBe(false);
    const exported = await s.export();
    expect(exported?.state).toMatchObject({ negotiated: false, negotiateBy: start + TIMEOUT });
    // The handover failed: the session carries on, and the passed deadline acts at once.
    s.thaw();
    expect(t.ended).toBe(true);
    expect(t.out.slice(-1)).toEqual([timedOut]);
  });

  test('a negotiated session exports no deadline', async () => {
    const { s, feed } = setup({ negotiationTimeoutMs: TIMEOUT });
    feed('{"execute":"qmp_capabilities"}');
    await s.freeze();
    const exported = await s.export();
    expect(exported?.state.negotiateBy).toBeUndefined();
  });

  describe('adopted from a handover', () => {
    const state = (over: Partial<SessionExport> = {}): SessionExport => ({ negotiated: false, oob: false, queue: [], pending: Buffer.alloc(0), ...over });
    const adopt = (st: SessionExport, timeoutMs = TIMEOUT) => {
      const { monitor, s: first } = setup({ negotiationTimeoutMs: timeoutMs });
      first.close(); // only the adopted session is looked at
      const t = new FakeTransport();
      const s = monitor.adopt(t, st);
      return { t, s };
    };

    test.each([
      ['the deadline it had', 10_000, 10_000],
      ['no deadline: a full one of its own', undefined, TIMEOUT],
      ['a later one: capped at its own', 10 * TIMEOUT, TIMEOUT],
    ])('an un-negotiated session keeps %s', (_what, left, closesAfter) => {
      const { t } = adopt(state({ negotiateBy: left === undefined ? undefined : Date.now() + left }));
      jest.advanceTimersByTime(closesAfter - 1);
      expect(t.ended).toBe(false);
      jest.advanceTimersByTime(1);
      expect(t.ended).toBe(true);
      expect(t.out).toEqual([timedOut]);
    });

    test('a passed deadline closes it at once, unless its queued input negotiates', () => {
      const late = adopt(state({ negotiateBy: Date.now() - 1 }));
      jest.advanceTimersByTime(1);
      expect(late.t.ended).toBe(true);
      const saved = adopt(state({ negotiateBy: Date.now() - 1, pending: Buffer.from('{"execute":"qmp_capabilities"}') }));
      jest.advanceTimersByTime(TIMEOUT);
      expect(saved.t.ended).toBe(false);
      expect(saved.t.out).toEqual(['{"return": {}}']);
    });

    test('a negotiated session, or a successor without a timeout, gets no deadline', () => {
      adopt(state({ negotiated: true }));
      adopt(state({ negotiateBy: Date.now() + 1000 }), 0);
      expect(jest.getTimerCount()).toBe(0);
    });
  });
});

test('the negotiation timer does not keep the process alive', () => {
  const { s } = setup({ negotiationTimeoutMs: 60_000 });
  const timer = (s as unknown as { negotiationTimer: NodeJS.Timeout }).negotiationTimer;
  expect(timer.hasRef()).toBe(false);
  s.close();
  expect((s as unknown as { negotiationTimer?: NodeJS.Timeout }).negotiationTimer).toBeUndefined();
});

describe('bounded input and output (issue 13)', () => {
  test('unfinished input past the budget cuts off the connection that takes it there', () => {
    // Three sessions of one daemon share its budget, lowered to exercise the cut-off.
    const inputBudget = new InputBudget(100_000, 10_000);
    const a = setup({ inputBudget });
    const b = setup({ inputBudget });
    const small = setup({ inputBudget });
    a.feed('[' + '1,'.repeat(1000)); // ~68 KB estimated: within the budget
    expect(a.t.ended).toBe(false);
    small.feed('[' + '1,'.repeat(100)); // within its allowance, whatever the others hold
    b.feed('[' + '1,'.repeat(1000)); // takes the total past the budget
    expect(b.t.out.slice(-1)).toEqual([`{"error": {"class": "GenericError", "desc": "${INPUT_BUDGET_TEXT}"}}`]);
    expect(b.t.ended).toBe(true);
    expect(b.t.endReason).toBe('QMP input limit exceeded');
    expect(a.t.ended).toBe(false);
    expect(small.t.ended).toBe(false);
    // Closing and finishing messages give the budget back.
    a.feed('1]');
    small.s.close();
    expect(inputBudget.used).toBe(0);
  });

  test('unfinished tokens past the token budget cut off the connection, within the byte budget', () => {
    // A byte budget nobody reaches; tokens (live objects of partial values) limited to 3,000.
    const inputBudget = new InputBudget(1e9, 10_000, undefined, 3000);
    const a = setup({ inputBudget });
    const b = setup({ inputBudget });
    a.feed('[' + '{},'.repeat(700)); // 2,101 tokens
    b.feed('[' + '{},'.repeat(400)); // 1,201 more: past 3,000
    expect(a.t.ended).toBe(false);
    expect(b.t.out.slice(-1)).toEqual([`{"error": {"class": "GenericError", "desc": "${INPUT_BUDGET_TEXT}"}}`]);
    expect(b.t.ended).toBe(true);
    expect(inputBudget.tokens).toBe(2101);
    a.feed('{}]');
    expect(inputBudget.tokens).toBe(0);
    expect(inputBudget.used).toBe(0);
  });

  test('admit() false: the rest of the chunk is dropped and the session closed', () => {
    const { t, s, monitor } = setup();
    let n = 0;
    t.admit = () => ++n <= 3;
    s.receive(Buffer.from('{"execute":"qmp_capabilities"}' + '{"execute":"quick"}'.repeat(10)));
    // Replies not yet written when the connection is cut off go nowhere, as on a disconnect.
    expect(t.out.length).toBeLessThanOrEqual(4);
    expect(n).toBe(4);
    expect(monitor.clientCount).toBe(0);
  });

  test('while the transport is backlogged, queued requests wait; they run once it drains', async () => {
    const { t, feed } = setup();
    feed('{"execute":"qmp_capabilities"}');
    let blocked = true;
    let then: (() => void) | undefined;
    t.backlogged = (cb) => {
      if (!blocked) return false;
      then = cb;
      return true;
    };
    t.out = [];
    feed('{"execute":"quick"}'.repeat(200));
    expect(t.out).toHaveLength(64); // one batch, then the backlog stops the queue
    expect(t.paused).toBe(true); // the waiting queue stops input too
    blocked = false;
    then!();
    await turns(5); // past REQUESTS_PER_TURN in a row, the rest run on later turns
    expect(t.out).toHaveLength(200);
    expect(t.paused).toBe(false);
  });

  test('a long pipeline runs REQUESTS_PER_TURN requests per turn; a large chunk is parsed a slice per turn', async () => {
    const { t, feed, s } = setup();
    feed('{"execute":"qmp_capabilities"}');
    await turns(1);
    t.out = [];
    feed('{"execute":"quick"}'.repeat(1000)); // 19 KB: parsed at once, run in turns
    expect(t.out.length).toBeGreaterThan(0);
    expect(t.out.length).toBeLessThanOrEqual(REQUESTS_PER_TURN);
    await turns(20);
    expect(t.out).toHaveLength(1000);
    expect(t.paused).toBe(false);
    t.out = [];
    const many = Math.ceil((3 * FEED_SLICE_BYTES) / 19);
    s.receive(Buffer.from('{"execute":"quick"}'.repeat(many)));
    expect(t.out).toHaveLength(0); // nothing parsed in the turn it arrived
    expect(t.paused).toBe(true);
    await turns(1);
    expect(t.out.length).toBeGreaterThan(0);
    expect(t.out.length).toBeLessThan(many);
    await turns(200);
    expect(t.out).toHaveLength(many);
    expect(t.paused).toBe(false);
  });
});
