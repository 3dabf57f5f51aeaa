// What the Python qemu.qmp client (QMPClient) does, replayed against hostmemd: it checks the
// greeting's shape, negotiates with enable: ["oob"] when offered, sends every message with no
// newline and with ids "__qmp#00000", "__qmp#00001", ..., routes replies by id, and treats an
// id-less error as a fatal server parse error. (The library itself is on PyPI, which this
// machine cannot reach, so its documented wire behaviour is reproduced here.)
import { RawQmpClient } from '../../helpers/qmp-client';
import { startInProcess, InProcess } from '../../helpers/daemon';

class QmpClientLike {
  private seq = 0;
  private constructor(private readonly c: RawQmpClient) {}

  static async connect(path: string): Promise<QmpClientLike> {
    const c = await RawQmpClient.connect(path);
    const greeting = await c.json();
    const qmp = greeting.QMP as { version: unknown; capabilities: unknown };
    if (typeof qmp !== 'object' || typeof qmp.version !== 'object' || !Array.isArray(qmp.capabilities)) throw new Error('bad greeting');
    const client = new QmpClientLike(c);
    const args = (qmp.capabilities as string[]).includes('oob') ? { enable: ['oob'] } : undefined;
    const r = await client.execute('qmp_capabilities', args);
    if (JSON.stringify(r) !== '{}') throw new Error('negotiation failed');
    return client;
  }

  /** Sends with the next __qmp# id (no newline) and waits for the reply carrying it. */
  async execute(cmd: string, args?: unknown): Promise<unknown> {
    const id = `__qmp#${String(this.seq++).padStart(5, '0')}`;
    this.c.send(JSON.stringify(args === undefined ? { execute: cmd, id } : { execute: cmd, arguments: args, id }));
    for (;;) {
      const m = await this.c.json();
      if ('event' in m) continue;
      if (!('id' in m)) throw new Error(`ServerParseError: ${JSON.stringify(m)}`);
      if (m.id !== id) continue; // unknown ids are logged and dropped by the library
      if ('error' in m) throw Object.assign(new Error('ExecuteError'), { error: m.error });
      return m.return;
    }
  }

  close(): void {
    this.c.close();
  }
}

describe('behaviour the Python qemu.qmp client relies on', () => {
  let d: InProcess;
  beforeAll(async () => {
    d = await startInProcess();
  });
  afterAll(async () => {
    await d.stop();
  });

  test('connects, negotiates oob, and runs commands with __qmp# ids and no newlines', async () => {
    const q = await QmpClientLike.connect(d.sock);
    expect(await q.execute('query-version')).toEqual({ qemu: { major: 7, minor: 2, micro: 0 }, package: 'hostmemd 0.1.0' });
    const cmds = (await q.execute('query-commands')) as { name: string }[];
    expect(cmds.map((c) => c.name)).toEqual(expect.arrayContaining(['qmp_capabilities', 'query-version', 'query-qmp-schema', 'quit']));
    await expect(q.execute('no-such')).rejects.toMatchObject({ error: { class: 'CommandNotFound', desc: 'The command no-such has not been found' } });
    const schema = (await q.execute('query-qmp-schema')) as { name: string; 'meta-type': string }[];
    expect(schema.find((e) => e.name === 'object-add')).toMatchObject({ 'meta-type': 'command' });
    q.close();
  });

  test('many qemu.qmp-style clients at once each get their own replies', async () => {
    const qs = await Promise.all(Array.from({ length: 20 }, () => QmpClientLike.connect(d.sock)));
    const rs = await Promise.all(qs.map((q) => Promise.all([q.execute('query-version'), q.execute('query-kvm')])));
    for (const [v, k] of rs) {
      expect(v).toHaveProperty('package', 'hostmemd 0.1.0');
      expect(k).toHaveProperty('present', true);
    }
    qs.forEach((q) => q.close());
  });
});
