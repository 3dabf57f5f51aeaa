// memdev-export seen from the web side: a WebSocket client is refused (fds cannot travel
// over it) and the backend is untouched; exports from a UNIX client are counted in /metrics.
import { EXPORT_NO_FD_TRANSPORT_TEXT } from '../../src/commands/export';
import { FdQmpClient } from '../helpers/fd-client';
import { WebDaemon, WsQmpClient, httpGet, startWebDaemon } from './ws-client';

let d: WebDaemon;
beforeAll(async () => {
  d = await startWebDaemon(['--accel', 'none']);
});
afterAll(async () => {
  await d.stop();
});

test('a WebSocket client cannot export; a UNIX client can, and /metrics counts it', async () => {
  const ws = await WsQmpClient.negotiated(d.url, d.token);
  try {
    expect(await ws.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1 << 20 })).toEqual({ return: {} });
    expect(await ws.execute('memdev-export', { id: 'm' })).toEqual({ error: { class: 'GenericError', desc: EXPORT_NO_FD_TRANSPORT_TEXT } });
    expect(await ws.execute('query-memdev-exports')).toEqual({ return: [] });
    const u = await FdQmpClient.negotiated(d.sock);
    try {
      const r = await u.executeWithFds('memdev-export', { id: 'm' });
      expect(r.fds).toHaveLength(1);
      for (const fd of r.fds) fd.close();
    } finally {
      await u.close();
    }
    const text = (await httpGet(`${d.url}/metrics`, d.token)).body;
    expect(text).toContain('hostmemd_memdev_exports_total{type="memory-backend-memfd"} 1');
    expect(text).toContain('hostmemd_backend_exports{id="m",type="memory-backend-memfd"} 1');
  } finally {
    ws.close();
  }
});
