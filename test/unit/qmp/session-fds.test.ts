// Fds a session receives (SCM_RIGHTS) and sends: the latest batch is held until a command takes
// it (the first fd is the command's, the others are closed) or a newer batch replaces it (the
// older is closed), the process-wide hold bound closes a batch past it, a closed session closes
// what it held; a reply with fds goes through writeWithFds after the text before it, and its
// fds are released when the session is gone.
import { Dispatcher, DispatchCommand } from '../../../src/qmp/dispatcher';
import { Monitor } from '../../../src/qmp/monitor';
import { QmpSession, Transport, InputBudget } from '../../../src/qmp/session';
import { Handler, PassedFd, WithFds } from '../../../src/qmp/messages';
import { JsonObject } from '../../../src/json/value';

class FakeFd implements PassedFd {
  closed = false;
  constructor(readonly n: number) {}
  raw(): number {
    return this.n;
  }
  close(): void {
    this.closed = true;
  }
}

class FdTransport implements Transport {
  readonly kind = 'fake';
  out: string[] = [];
  withFds: { text: string; fds: readonly PassedFd[] }[] = [];
  write(text: string): boolean {
    this.out.push(text);
    return true;
  }
  writeWithFds(text: string, fds: readonly PassedFd[]): void {
    this.out.push('<fds>' + text);
    this.withFds.push({ text, fds });
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
}

function setup(budget = new InputBudget()) {
  const taken: (PassedFd | undefined)[] = [];
  const exported = [new FakeFd(50)];
  const handlers: Record<string, Handler> = {
    qmp_capabilities: (_a, { session }) => {
      session.completeNegotiation([]);
      return {};
    },
    take: (_a, { session }) => {
      taken.push(session.takeReceivedFd?.());
      return {};
    },
    give: () => new WithFds({ given: true }, exported),
  };
  const commands = new Map<string, DispatchCommand>(Object.entries(handlers).map(([name, handler]) => [name, { name, handler, allowOob: false }]));
  const dispatcher = new Dispatcher(commands, { validate: (_c: string, args: JsonObject) => ({ ok: true, value: args }) }, { onCommand: () => undefined, onUnexpected: () => undefined });
  const monitor = new Monitor({ dispatcher, version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'x' }, maxClients: 8, inputBudget: budget });
  const t = new FdTransport();
  const s = monitor.attach(t) as QmpSession;
  s.receive(Buffer.from('{"execute":"qmp_capabilities"}'));
  t.out = [];
  return { t, s, taken, exported, budget };
}

test('the held batch: taken by a command (extras closed), replaced by a newer one, closed with the session', () => {
  const { s, taken, budget } = setup();
  const a = [new FakeFd(10), new FakeFd(11), new FakeFd(12)];
  s.receive(Buffer.from('{"execute":"take"}'), a);
  expect(taken[0]).toBe(a[0]);
  expect(a.map((f) => f.closed)).toEqual([false, true, true]);
  expect(budget.fdsHeld).toBe(0);
  s.receive(Buffer.from('{"execute":"take"}'));
  expect(taken[1]).toBeUndefined();
  const b = [new FakeFd(20)];
  const c = [new FakeFd(30), new FakeFd(31)];
  s.receive(Buffer.from(' '), b);
  s.receive(Buffer.from(' '), c);
  expect(b[0].closed).toBe(true);
  expect(budget.fdsHeld).toBe(2);
  s.close();
  expect(c.every((f) => f.closed)).toBe(true);
  expect(budget.fdsHeld).toBe(0);
});

test('past the hold bound a batch is closed at once', () => {
  const budget = new InputBudget(undefined, undefined, 3);
  const one = setup(budget);
  const two = setup(budget);
  const a = [new FakeFd(1), new FakeFd(2)];
  const b = [new FakeFd(3), new FakeFd(4)];
  one.s.receive(Buffer.from(' '), a);
  two.s.receive(Buffer.from(' '), b);
  expect(a.some((f) => f.closed)).toBe(false);
  expect(b.every((f) => f.closed)).toBe(true);
  expect(budget.fdsHeld).toBe(2);
  two.s.receive(Buffer.from('{"execute":"take"}'));
  expect(two.taken[0]).toBeUndefined();
});

test('a reply with fds follows the text written before it; a closed session releases them', () => {
  const { t, s, exported } = setup();
  s.receive(Buffer.from('{"execute":"take"}{"execute":"give","id":1}'));
  expect(t.out).toEqual(['{"return": {}}\r\n', '<fds>{"return": {"given": true}, "id": 1}\r\n']);
  expect(t.withFds[0].fds).toEqual(exported);
  const late = setup();
  late.s.close();
  // A reply produced after the close (a slow command) goes nowhere and lets its fds go.
  (late.s as unknown as { writeReply(r: unknown): void }).writeReply({ hasId: false, result: new WithFds({}, late.exported) });
  expect((late.exported[0] as FakeFd).closed).toBe(true);
});
