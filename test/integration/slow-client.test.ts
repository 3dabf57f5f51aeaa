// A client that stops reading its replies is slowed down once its pending output passes
// OUTPUT_PAUSE_BYTES (its requests wait, its input is not read), and cut off once it has taken
// none of it for STALLED_READER_MS, with a log line; it does not delay anyone else.
import { RawQmpClient } from '../helpers/qmp-client';
import { startInProcess } from '../helpers/daemon';
import { STALLED_READER_MS } from '../../src/transport/unix-socket';

test('a UNIX-socket client that never reads is disconnected; others are served meanwhile', async () => {
  const d = await startInProcess();
  const stuck = await RawQmpClient.negotiated(d.sock);
  const other = await RawQmpClient.negotiated(d.sock);
  try {
    stuck.sock.pause(); // stop reading: replies pile up in the daemon
    const schemaReply = (await other.execute('query-qmp-schema')) as { return: unknown[] };
    const replyBytes = JSON.stringify(schemaReply).length;
    const n = Math.ceil((24 << 20) / replyBytes); // far more than the kernel buffers hold
    for (let i = 0; i < n; i += 50) {
      stuck.send('{"execute":"query-qmp-schema"}'.repeat(50));
      expect(await other.execute('query-version')).toHaveProperty('return');
    }
    const t0 = Date.now();
    while (d.daemon.monitor.clientCount > 1 && Date.now() - t0 < STALLED_READER_MS + 4000) {
      expect(await other.execute('query-version')).toHaveProperty('return');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(d.daemon.monitor.clientCount).toBe(1);
    expect(await other.execute('query-version')).toHaveProperty('return');
  } finally {
    stuck.close();
    other.close();
    await d.stop();
  }
}, 25000);
