// Operator caps: --max-objects and --max-backend-bytes refuse object-add with a clear
// GenericError, leave nothing behind, count pending creations, and free room on object-del.
import { RawQmpClient } from '../helpers/qmp-client';
import { startInProcess } from '../helpers/daemon';
import { fdCount } from '../helpers/proc';

const memfd = (id: string, size: number) => ({ 'qom-type': 'memory-backend-memfd', id, size });

test('--max-objects', async () => {
  const d = await startInProcess(['--max-objects', '2']);
  const c = await RawQmpClient.negotiated(d.sock);
  try {
    expect(await c.execute('object-add', memfd('a', 1 << 20))).toEqual({ return: {} });
    expect(await c.execute('object-add', memfd('b', 1 << 20))).toEqual({ return: {} });
    const fds = fdCount();
    expect(await c.execute('object-add', memfd('c', 1 << 20))).toEqual({
      error: { class: 'GenericError', desc: 'object limit reached: 2 objects exist and --max-objects is 2' },
    });
    expect(fdCount()).toBe(fds);
    await c.execute('object-del', { id: 'a' });
    expect(await c.execute('object-add', memfd('c', 1 << 20))).toEqual({ return: {} });
  } finally {
    c.close();
    await d.stop();
  }
});

test('--max-backend-bytes, including preallocations still running', async () => {
  const d = await startInProcess(['--max-backend-bytes', '96M']);
  const a = await RawQmpClient.negotiated(d.sock);
  const b = await RawQmpClient.negotiated(d.sock);
  try {
    expect(await a.execute('object-add', memfd('x', 32 << 20))).toEqual({ return: {} });
    // b's 64 MiB fits exactly; while it preallocates, a's next request must not also fit.
    b.send(JSON.stringify({ execute: 'object-add', arguments: { ...memfd('y', 64 << 20), prealloc: true }, id: 'y' }));
    for (let i = 0; i < 500; i++) {
      if (((await a.execute('query-prealloc')).return as unknown[]).length > 0) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(await a.execute('object-add', memfd('z', 1 << 20))).toEqual({
      error: { class: 'GenericError', desc: 'backend memory limit reached: 1048576 bytes requested, 0 of 100663296 bytes (--max-backend-bytes) left' },
    });
    let r = await b.json();
    while ('event' in r) r = await b.json();
    expect(r).toEqual({ return: {}, id: 'y' });
    await a.execute('object-del', { id: 'x' });
    expect(await a.execute('object-add', memfd('z', 32 << 20))).toEqual({ return: {} });
  } finally {
    a.close();
    b.close();
    await d.stop();
  }
});

test('bad cap values are refused on the command line', async () => {
  await expect(startInProcess(['--max-backend-bytes', 'lots'])).rejects.toThrow('--max-backend-bytes lots: expected a size such as 64G');
});
