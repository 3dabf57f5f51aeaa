// --negotiation-timeout over a real UNIX socket: a client that never sends qmp_capabilities is
// told so and disconnected after the timeout, which frees its --max-clients slot; a negotiated
// client is kept. (The WebSocket side is in test/web/limits.test.ts.)
import { RawQmpClient } from '../helpers/qmp-client';
import { InProcess, startInProcess } from '../helpers/daemon';

const TIMED_OUT = '{"error": {"class": "GenericError", "desc": "QMP negotiation timed out: no qmp_capabilities within 0.5 seconds; closing the connection"}}';

describe('negotiation timeout', () => {
  let d: InProcess;
  const clients: RawQmpClient[] = [];
  beforeAll(async () => {
    d = await startInProcess(['--accel', 'none', '--negotiation-timeout', '0.5', '--max-clients', '2']);
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await d.stop();
  });
  const track = (c: RawQmpClient): RawQmpClient => (clients.push(c), c);

  test('an idle client is disconnected after the timeout, a negotiated one is not, and the slot is free again', async () => {
    const kept = track(await RawQmpClient.negotiated(d.sock));
    const t0 = performance.now();
    const idle = track(await RawQmpClient.connect(d.sock));
    expect(await idle.line()).toMatch(/^\{"QMP": /);
    // Both slots are taken: a third client is refused.
    const third = track(await RawQmpClient.connect(d.sock));
    expect(await third.line()).toBe('{"error": {"class": "GenericError", "desc": "Too many QMP clients: the limit is 2"}}');
    await third.waitClosed();
    // Commands other than qmp_capabilities do not count as negotiating.
    idle.send('{"execute":"query-version","id":1}');
    expect(await idle.line()).toMatch(/"class": "CommandNotFound"/);
    expect(await idle.line(3000)).toBe(TIMED_OUT);
    await idle.waitClosed(2000);
    const after = performance.now() - t0;
    expect(after).toBeGreaterThanOrEqual(450);
    expect(after).toBeLessThan(2500);
    // The negotiated client lives on, well past the timeout.
    await new Promise((r) => setTimeout(r, 700));
    expect(await kept.execute('query-version', undefined, 'k')).toMatchObject({ return: { package: expect.any(String) }, id: 'k' });
    // The freed slot takes a new client, which negotiates in time and stays.
    const next = track(await RawQmpClient.negotiated(d.sock));
    await new Promise((r) => setTimeout(r, 700));
    expect(await next.execute('query-version')).toHaveProperty('return');
    expect(d.daemon.monitor.clientCount).toBe(2);
  });
});
