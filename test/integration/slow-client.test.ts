// A client that stops reading its replies is cut off once its pending output passes the bound
// (16 MiB), with a log line, and does not delay anyone else.
import { RawQmpClient } from '../helpers/qmp-client';
import { startInProcess } from '../helpers/daemon';

test('a UNIX-socket client that never reads is disconnected; others are served meanwhile', async () => {
  const d = await startInProcess();
  const stuck = await RawQmpClient.negotiated(d.sock);
  const other = await RawQmpClient.negotiated(d.sock);
  try {
    stuck.sock.pause(); // stop reading: replies pile up in the daemon
    const schemaReply = (await other.execute('query-qmp-schema')) as { return: unknown[] };
    const replyBytes = JSON.stringify(schemaReply).length;
    const n = Math.ceil((24 << 20) / replyBytes); // well past the 16 MiB bound
    for (let i = 0; i < n; i += 50) {
      stuck.send('{"execute":"query-qmp-schema"}'.repeat(50));
      expect(await other.execute('query-version')).toHaveProperty('return');
      if (d.daemon.monitor.clientCount < 2) break;
    }
    for (let i = 0; i < 200 && d.daemon.monitor.clientCount > 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(d.daemon.monitor.clientCount).toBe(1);
    expect(await other.execute('query-version')).toHaveProperty('return');
  } finally {
    stuck.close();
    other.close();
    await d.stop();
  }
});
