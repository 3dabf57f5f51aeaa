// The web app's HTTP routes through buildWebApp() and fastify's inject() — no socket, no
// daemon: the token (401 without or with a wrong one, on /metrics and /api/* only), /healthz,
// /metrics, /api/* shapes from fake backends and caps, the console's static files with their
// content types and security headers, 404s, and the token never reaching the log.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import type { Monitor } from '../../src/qmp/monitor';
import { createMetrics } from '../../src/web/metrics';
import type { BackendView } from '../../src/web/resident';
import { CapsView, WebAppDeps, buildWebApp } from '../../src/web/server';

// inject() is light-my-request's, which requires `cookie` 2: ESM only. Node 20.19+ require()s
// it natively, Jest's module registry cannot ("Unexpected token 'export'"): hand Jest the module
// as Node itself loads it (process.getBuiltinModule: Jest's own `module` routes back to Jest).
jest.mock('cookie', () => process.getBuiltinModule('node:module').createRequire(__filename)('cookie'));

const TOKEN = crypto.randomBytes(32).toString('hex');
const WRONG = crypto.randomBytes(32).toString('hex');
const MiB = 1024n * 1024n;

const BACKENDS: BackendView[] = [
  { name: 'ram0', typeName: 'memory-backend-memfd', size: 64n * MiB, residentBytes: () => 4n * MiB },
  { name: 'ram1', typeName: 'memory-backend-ram', size: 2n * MiB, residentBytes: () => 0n },
];
const CAPS: CapsView = { objects: { limit: 10, used: 2 }, backendBytes: { used: 66 * 1024 * 1024 }, clients: { limit: 4, used: 1 } };

/** A console build: what web/build.mjs writes, plus a file of a type that is not served. */
function fakeAssets(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-assets-'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>hostmemd</title><script src="app.js"></script>');
  fs.writeFileSync(path.join(dir, 'app.js'), 'console.log("console");\n');
  fs.writeFileSync(path.join(dir, 'app.js.map'), '{"version":3}');
  fs.writeFileSync(path.join(dir, 'style.css'), 'body { margin: 0 }\n');
  fs.writeFileSync(path.join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'not an asset');
  return dir;
}

function deps(over: Partial<WebAppDeps> = {}): WebAppDeps {
  const backends = () => BACKENDS;
  return {
    host: '127.0.0.1',
    port: 4780,
    token: TOKEN,
    monitor: { clientCount: 3 } as unknown as Monitor,
    metrics: createMetrics({ backends, commands: ['query-status'], preallocsRunning: () => 0, limits: () => ({ objects: 10, clients: 4 }) }),
    logger: pino({ level: 'silent' }),
    backends,
    caps: () => CAPS,
    ...over,
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const PROTECTED = ['/metrics', '/api/info', '/api/backends', '/api/caps'];

describe('buildWebApp (inject)', () => {
  let app: FastifyInstance;
  let assetsDir: string;
  beforeAll(async () => {
    assetsDir = fakeAssets();
    app = await buildWebApp(deps({ assetsDir }));
  });
  afterAll(async () => {
    await app?.close();
    fs.rmSync(assetsDir, { recursive: true, force: true });
  });

  describe('token', () => {
    test.each(PROTECTED)('%s: 401 without a token, with a wrong one, another scheme or ?token=', async (url) => {
      for (const headers of [{}, bearer(WRONG), bearer(TOKEN.slice(1)), { authorization: `Basic ${TOKEN}` }, { authorization: `Bearer ${TOKEN} x` }]) {
        const r = await app.inject({ method: 'GET', url, headers });
        expect(r.statusCode).toBe(401);
        expect(r.headers['www-authenticate']).toBe('Bearer realm="hostmemd"');
        expect(r.json()).toEqual({ error: 'missing or wrong token' });
      }
      // The console URL's ?token= is for the page's script, not a credential of the HTTP routes.
      expect((await app.inject({ method: 'GET', url: `${url}?token=${TOKEN}` })).statusCode).toBe(401);
    });

    test.each(PROTECTED)('%s: 200 with the Bearer token, or the token subprotocol header', async (url) => {
      expect((await app.inject({ method: 'GET', url, headers: bearer(TOKEN) })).statusCode).toBe(200);
      expect((await app.inject({ method: 'GET', url, headers: { authorization: `bearer  ${TOKEN}` } })).statusCode).toBe(200);
      const sub = await app.inject({ method: 'GET', url, headers: { 'sec-websocket-protocol': `hostmemd.qmp, hostmemd.token.${TOKEN}` } });
      expect(sub.statusCode).toBe(200);
    });

    test('refusals are counted as hostmemd_clients_refused_total{transport="http"}', async () => {
      const count = async () => {
        const r = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(TOKEN) });
        const m = /^hostmemd_clients_refused_total\{transport="http"\} (\d+)$/m.exec(r.body);
        return m ? Number(m[1]) : 0;
      };
      const before = await count();
      await app.inject({ method: 'GET', url: '/api/info' });
      await app.inject({ method: 'GET', url: '/metrics', headers: bearer(WRONG) });
      expect(await count()).toBe(before + 2);
    });

    test('Origin is checked on the /qmp upgrade only: HTTP routes go by the token, and answer no CORS preflight', async () => {
      const foreign = { origin: 'http://evil.example' };
      expect((await app.inject({ method: 'GET', url: '/api/info', headers: { ...foreign, ...bearer(TOKEN) } })).statusCode).toBe(200);
      expect((await app.inject({ method: 'GET', url: '/api/info', headers: foreign })).statusCode).toBe(401);
      const pre = await app.inject({ method: 'OPTIONS', url: '/api/info', headers: { ...foreign, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
      expect(pre.statusCode).toBe(404);
      expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    });
  });

  test('/healthz is open: status and client count, whatever the token', async () => {
    for (const headers of [{}, bearer(WRONG)]) {
      const r = await app.inject({ method: 'GET', url: '/healthz', headers });
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toMatch(/^application\/json/);
      expect(r.json()).toEqual({ status: 'ok', clients: 3 });
    }
  });

  test('/metrics: Prometheus text, hostmemd_* families from the backends and caps', async () => {
    const r = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(TOKEN) });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const names = [...r.body.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]);
    for (const n of names) expect(n).toMatch(/^hostmemd_/);
    expect(names).toEqual(expect.arrayContaining(['hostmemd_backends', 'hostmemd_allocated_bytes', 'hostmemd_resident_bytes', 'hostmemd_limit', 'hostmemd_clients', 'hostmemd_commands_total']));
    expect(r.body).toContain('hostmemd_backends{type="memory-backend-memfd"} 1');
    expect(r.body).toContain(`hostmemd_backend_size_bytes{id="ram0",type="memory-backend-memfd"} ${64 * 1024 * 1024}`);
    expect(r.body).toContain(`hostmemd_backend_resident_bytes{id="ram0",type="memory-backend-memfd"} ${4 * 1024 * 1024}`);
    expect(r.body).toContain('hostmemd_limit{kind="objects"} 10');
    expect(r.body).toContain('hostmemd_clients{transport="websocket"} 0');
  });

  test('/api/info: name, version and where QMP is', async () => {
    const r = await app.inject({ method: 'GET', url: '/api/info', headers: bearer(TOKEN) });
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.json()).toEqual({
      name: 'hostmemd',
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      package: expect.stringMatching(/^hostmemd /),
      qemu: { major: expect.any(Number), minor: expect.any(Number), micro: expect.any(Number) },
      qmp: '/qmp',
    });
  });

  test('/api/backends: id, type, size and resident bytes as numbers, in tree order', async () => {
    const r = await app.inject({ method: 'GET', url: '/api/backends', headers: bearer(TOKEN) });
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.json()).toEqual([
      { id: 'ram0', type: 'memory-backend-memfd', size: 64 * 1024 * 1024, resident: 4 * 1024 * 1024 },
      { id: 'ram1', type: 'memory-backend-ram', size: 2 * 1024 * 1024, resident: 0 },
    ]);
  });

  test('/api/caps: each cap with its use, an absent limit left out', async () => {
    const r = await app.inject({ method: 'GET', url: '/api/caps', headers: bearer(TOKEN) });
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(r.json()).toEqual(CAPS);
    expect(r.json().backendBytes).not.toHaveProperty('limit');
  });

  describe('console assets (open, from memory, strict headers)', () => {
    test.each([
      ['/', 'text/html; charset=utf-8', 'index.html'],
      ['/index.html', 'text/html; charset=utf-8', 'index.html'],
      ['/app.js', 'text/javascript; charset=utf-8', 'app.js'],
      ['/app.js.map', 'application/json', 'app.js.map'],
      ['/style.css', 'text/css; charset=utf-8', 'style.css'],
      ['/favicon.svg', 'image/svg+xml', 'favicon.svg'],
    ])('%s is served as %s', async (url, type, file) => {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toBe(type);
      expect(r.body).toBe(fs.readFileSync(path.join(assetsDir, file), 'utf8'));
      expect(r.headers['content-security-policy']).toMatch(/default-src 'none'; script-src 'self'/);
      expect(r.headers['referrer-policy']).toBe('no-referrer');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      expect(r.headers['x-frame-options']).toBe('DENY');
      expect(r.headers['cache-control']).toBe('no-store');
    });

    test('the page with ?token= in its URL is the same page; HEAD works', async () => {
      const r = await app.inject({ method: 'GET', url: `/?token=${TOKEN}` });
      expect(r.statusCode).toBe(200);
      expect(r.body).toContain('<title>hostmemd</title>');
      const head = await app.inject({ method: 'HEAD', url: '/app.js' });
      expect(head.statusCode).toBe(200);
      expect(head.headers['content-type']).toBe('text/javascript; charset=utf-8');
      expect(head.body).toBe('');
    });

    test('a file of another type in the directory is not served', async () => {
      expect((await app.inject({ method: 'GET', url: '/notes.txt' })).statusCode).toBe(404);
    });
  });

  test.each(['/nope', '/api/nope', '/api', '/metrics/x', '/qmp', '/index.htm'])('unknown path %s: 404 (with or without the token)', async (url) => {
    for (const headers of [{}, bearer(TOKEN)]) {
      const r = await app.inject({ method: 'GET', url, headers });
      expect(r.statusCode).toBe(404);
      expect(r.json()).toMatchObject({ statusCode: 404, error: 'Not Found' });
    }
  });

  test('a route asked with another method: 404', async () => {
    expect((await app.inject({ method: 'POST', url: '/api/info', headers: bearer(TOKEN), payload: {} })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: '/healthz' })).statusCode).toBe(404);
  });
});

describe('buildWebApp (inject), other deps', () => {
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  test('without caps, /api/caps is {}; without a console build, / is a notice', async () => {
    app = await buildWebApp(deps({ caps: undefined, assetsDir: path.join(os.tmpdir(), 'hostmemd-no-such-dir') }));
    expect((await app.inject({ method: 'GET', url: '/api/caps', headers: bearer(TOKEN) })).json()).toEqual({});
    const r = await app.inject({ method: 'GET', url: '/' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.body).toContain('npm run build');
    expect((await app.inject({ method: 'GET', url: '/index.html' })).statusCode).toBe(404);
  });

  test('the token never reaches the log, whatever is asked (all levels)', async () => {
    const lines: string[] = [];
    app = await buildWebApp(deps({ logger: pino({ level: 'trace' }, { write: (l: string) => void lines.push(l) }), assetsDir: path.join(os.tmpdir(), 'hostmemd-no-such-dir') }));
    for (const url of ['/', `/?token=${TOKEN}`, '/healthz', `/nope?token=${TOKEN}`, ...PROTECTED, ...PROTECTED.map((u) => `${u}?token=${TOKEN}`)]) {
      await app.inject({ method: 'GET', url });
      await app.inject({ method: 'GET', url, headers: bearer(TOKEN) });
      await app.inject({ method: 'GET', url, headers: { 'sec-websocket-protocol': `hostmemd.token.${TOKEN}` } });
    }
    // Something was logged (the refusals, the missing console build), none of it the token.
    expect(lines.some((l) => l.includes('HTTP request refused'))).toBe(true);
    expect(lines.some((l) => l.includes('web console assets not found'))).toBe(true);
    for (const l of lines) expect(l).not.toContain(TOKEN);
  });
});
