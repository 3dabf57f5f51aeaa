// Who gets in: the token file (created 0600, reused), 401 without or with a wrong token on
// the WebSocket upgrade and every API route, 403 for a foreign Origin, open /healthz, the
// console page served without data, and --ws refusing a non-loopback address unless allowed.
// The token itself is never logged (at any level) nor sent back in a response header.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import pino from 'pino';
import { parseCli } from '../../src/daemon/cli';
import { startDaemon } from '../../src/daemon/main';
import { originAllowed, presentedToken, selectedSubprotocol, subprotocolRefusal } from '../../src/web/auth';
import { loadOrCreateToken, tokenMatches } from '../../src/web/token';
import { tmpDir } from '../helpers/daemon';
import { WebDaemon, WsQmpClient, httpGet, rawUpgrade, startWebDaemon } from './ws-client';

describe('token file', () => {
  test('created with mode 0600 at first start, reused later, loosened modes tightened', () => {
    const dir = tmpDir();
    try {
      const a = loadOrCreateToken(dir);
      expect(a.created).toBe(true);
      expect(a.token).toMatch(/^[0-9a-f]{64}$/);
      expect(fs.statSync(path.join(dir, 'token')).mode & 0o777).toBe(0o600);
      const b = loadOrCreateToken(dir);
      expect(b).toEqual({ token: a.token, path: a.path, created: false });
      fs.chmodSync(a.path, 0o644);
      expect(loadOrCreateToken(dir).token).toBe(a.token);
      expect(fs.statSync(a.path).mode & 0o777).toBe(0o600);
      fs.writeFileSync(a.path, 'short\n');
      expect(() => loadOrCreateToken(dir)).toThrow(/holds no valid token/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('comparison and extraction', () => {
    const t = 'a'.repeat(64);
    expect(tokenMatches(t, t)).toBe(true);
    expect(tokenMatches('a'.repeat(63), t)).toBe(false);
    expect(tokenMatches(undefined, t)).toBe(false);
    expect(presentedToken({ authorization: `Bearer ${t}` })).toBe(t);
    expect(presentedToken({ authorization: `Basic ${t}` })).toBeUndefined();
    expect(presentedToken({ 'sec-websocket-protocol': `hostmemd.qmp, hostmemd.token.${t}` })).toBe(t);
    expect(presentedToken({})).toBeUndefined();
  });

  test('the subprotocol answered is the fixed hostmemd.qmp or none, never the token one', () => {
    const t = 'a'.repeat(64);
    expect(selectedSubprotocol(new Set(['hostmemd.qmp', `hostmemd.token.${t}`]))).toBe('hostmemd.qmp');
    expect(selectedSubprotocol(new Set([`hostmemd.token.${t}`]))).toBe(false);
    expect(selectedSubprotocol(new Set(['chat']))).toBe(false);
    expect(subprotocolRefusal({ 'sec-websocket-protocol': `hostmemd.token.${t}` })).toMatch(/^offer the subprotocol hostmemd\.qmp/);
    expect(subprotocolRefusal({ 'sec-websocket-protocol': `hostmemd.token.${t}, hostmemd.qmp` })).toBeUndefined();
    expect(subprotocolRefusal({ 'sec-websocket-protocol': 'chat' })).toBeUndefined();
    expect(subprotocolRefusal({})).toBeUndefined();
  });

  test('origin rule', () => {
    const lo = { bindHost: '127.0.0.1', port: 4780 };
    expect(originAllowed(undefined, undefined, lo)).toBe(true);
    expect(originAllowed('http://127.0.0.1:4780', '127.0.0.1:4780', lo)).toBe(true);
    expect(originAllowed('http://localhost:4780', 'localhost:4780', lo)).toBe(true);
    expect(originAllowed('http://[::1]:4780', '[::1]:4780', lo)).toBe(true);
    expect(originAllowed('http://127.0.0.1:4781', '127.0.0.1:4780', lo)).toBe(false);
    expect(originAllowed('https://127.0.0.1:4780', '127.0.0.1:4780', lo)).toBe(false);
    expect(originAllowed('http://evil.example:4780', 'evil.example:4780', lo)).toBe(false);
    expect(originAllowed('null', '127.0.0.1:4780', lo)).toBe(false);
    const any = { bindHost: '0.0.0.0', port: 4780 };
    expect(originAllowed('http://host.lan:4780', 'host.lan:4780', any)).toBe(true);
    expect(originAllowed('http://evil.example:4780', 'host.lan:4780', any)).toBe(false);
  });
});

describe('the web endpoint refuses strangers', () => {
  let d: WebDaemon;
  beforeAll(async () => {
    d = await startWebDaemon();
  });
  afterAll(async () => {
    await d.stop();
  });

  test('the token lives in <state-dir>/token and the daemon reports the console URL', () => {
    expect(fs.readFileSync(path.join(d.dir, 'token'), 'utf8').trim()).toBe(d.token);
    expect(d.daemon.web?.consoleUrl).toBe(`${d.url}/?token=${d.token}`);
  });

  test('/healthz is open', async () => {
    const r = await httpGet(`${d.url}/healthz`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ status: 'ok' });
  });

  test.each(['/metrics', '/api/info', '/api/backends'])('%s needs the token (401 without, 401 wrong, 200 right)', async (route) => {
    const none = await httpGet(d.url + route);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.body).not.toContain(d.token);
    expect((await httpGet(d.url + route, 'f'.repeat(64))).status).toBe(401);
    expect((await httpGet(d.url + route, d.token)).status).toBe(200);
  });

  test('the console page is served without a token but holds no data, with strict headers', async () => {
    const r = await httpGet(`${d.url}/?token=wrong`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/html/);
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    expect(r.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
    expect(r.body).not.toContain(d.token);
  });

  test('WebSocket upgrade: 401 without a token, with a wrong one, in either form', async () => {
    await expect(WsQmpClient.connect(d.url)).rejects.toThrow('HTTP 401');
    await expect(WsQmpClient.connect(d.url, { token: '0'.repeat(64) })).rejects.toThrow('HTTP 401');
    await expect(WsQmpClient.connect(d.url, { token: '0'.repeat(64), via: 'subprotocol' })).rejects.toThrow('HTTP 401');
    await expect(WsQmpClient.connect(d.url, { token: d.token.slice(1) })).rejects.toThrow('HTTP 401');
  });

  test("WebSocket upgrade: 403 for an Origin that is not the console's, even with the token", async () => {
    await expect(WsQmpClient.connect(d.url, { token: d.token, origin: 'http://evil.example' })).rejects.toThrow('HTTP 403');
    const port = new URL(d.url).port;
    await expect(WsQmpClient.connect(d.url, { token: d.token, origin: `http://evil.example:${port}` })).rejects.toThrow('HTTP 403');
    await expect(WsQmpClient.connect(d.url, { token: d.token, origin: 'null' })).rejects.toThrow('HTTP 403');
    // The console's own origin, and no Origin at all (non-browser client), are fine.
    for (const origin of [d.url, `http://localhost:${port}`, undefined]) {
      const c = await WsQmpClient.connect(d.url, { token: d.token, origin });
      expect(await c.line()).toMatch(/^\{"QMP": /);
      c.close();
    }
  });

  test('the token is never in a response header: upgrades with either subprotocol set, refusals, HTTP routes', async () => {
    // The browser's pair: 101 with the fixed name.
    const pair = await rawUpgrade(d.url, { 'sec-websocket-protocol': `hostmemd.qmp, hostmemd.token.${d.token}` });
    expect(pair.status).toBe(101);
    expect(pair.headers['sec-websocket-protocol']).toBe('hostmemd.qmp');
    // The token subprotocol alone: never echoed; refused with a clear 400 instead.
    const alone = await rawUpgrade(d.url, { 'sec-websocket-protocol': `hostmemd.token.${d.token}` });
    expect(alone.status).toBe(400);
    expect(alone.headers['sec-websocket-protocol']).toBeUndefined();
    expect(alone.body).toContain('offer the subprotocol hostmemd.qmp next to hostmemd.token.<token>');
    // With the Bearer header and some other subprotocol: no subprotocol selected.
    const other = await rawUpgrade(d.url, { authorization: `Bearer ${d.token}`, 'sec-websocket-protocol': 'chat' });
    expect(other.status).toBe(101);
    expect(other.headers['sec-websocket-protocol']).toBeUndefined();
    const seen = [pair, alone, other];
    for (const route of ['/', `/?token=${d.token}`, '/metrics', '/api/info', '/healthz', '/nope']) {
      const variants: Record<string, string>[] = [{}, { authorization: `Bearer ${d.token}` }, { 'sec-websocket-protocol': `hostmemd.token.${d.token}` }];
      for (const headers of variants) {
        const r = await httpGet(d.url + route, undefined, headers);
        seen.push({ status: r.status, headers: Object.fromEntries(r.headers.entries()), body: r.body });
      }
    }
    for (const r of seen) expect(JSON.stringify(r.headers)).not.toContain(d.token);
  });

  test('a client offering only the token subprotocol gets a clear refusal, not the token', async () => {
    await expect(WsQmpClient.connect(d.url, { token: d.token, via: 'token-subprotocol-only' })).rejects.toThrow('HTTP 400');
  });

  test('WebSocket upgrade elsewhere than /qmp: 404', async () => {
    await expect(WsQmpClient.connect(d.url, { token: d.token, path: '/other' })).rejects.toThrow('HTTP 404');
  });

  test('the token is reused by the next start on the same state dir', async () => {
    const again = parseCli(['--state-dir', d.dir, '--accel', 'none', '--ws', '127.0.0.1:0', '--qmp', `unix:${path.join(d.dir, 'second.sock')}`], {});
    if (again.kind !== 'run') throw new Error(again.output);
    const second = await startDaemon(again.options, pino({ level: 'silent' }));
    try {
      expect(second.web?.token).toBe(d.token);
    } finally {
      await second.shutdown('host-signal');
    }
  });
});

describe('--ws binding', () => {
  let logged: string[] = [];
  const start = async (args: string[], level = 'info') => {
    const dir = tmpDir();
    const cli = parseCli(['--state-dir', dir, '--accel', 'none', ...args], {});
    if (cli.kind !== 'run') throw new Error(cli.output);
    logged = [];
    const logger = pino({ level }, { write: (line: string) => void logged.push(line) });
    try {
      const daemon = await startDaemon(cli.options, logger);
      await daemon.shutdown('host-signal');
      return daemon;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  test('a non-loopback address is refused without --ws-allow-remote, with a clear message', async () => {
    await expect(start(['--ws', '0.0.0.0:0'])).rejects.toThrow(/0\.0\.0\.0 is not a loopback address.*--ws-allow-remote/);
  });

  test('--ws-allow-remote allows it (and the daemon still requires the token)', async () => {
    const d = await start(['--ws', '0.0.0.0:0', '--ws-allow-remote']);
    expect(d.web?.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    expect(logged.some((l) => /"level":40.*non-loopback address/.test(l))).toBe(true);
  });

  test('the log names the token file and the console URL, never the token (any level, start to shutdown)', async () => {
    const d = await start(['--ws', '127.0.0.1:0'], 'trace');
    const token = d.web?.token as string;
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const line = logged.find((l) => l.includes('"msg":"web console at '));
    expect(line).toBeDefined();
    const entry = JSON.parse(line as string);
    expect(entry.level).toBe(30);
    expect(entry.url).toBe(d.web?.url);
    expect(entry.tokenFile).toBe(d.web?.tokenPath);
    expect(entry.msg).toBe(`web console at ${d.web?.url}/ (open ${d.web?.url}/?token=TOKEN with TOKEN read from ${d.web?.tokenPath})`);
    for (const l of logged) expect(l).not.toContain(token);
  });

  test('a port in use stops the start with the address in the message, and leaves no socket', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as net.AddressInfo).port;
    const dir = tmpDir();
    try {
      const cli = parseCli(['--state-dir', dir, '--accel', 'none', '--ws', `127.0.0.1:${port}`], {});
      if (cli.kind !== 'run') throw new Error(cli.output);
      await expect(startDaemon(cli.options, pino({ level: 'silent' }))).rejects.toThrow(new RegExp(`^--ws 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`));
      expect(fs.existsSync(path.join(dir, 'qmp.sock'))).toBe(false);
    } finally {
      busy.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

    test('without --ws there is no web endpoint', async () => {
    const d = await start([]);
    expect(d.web).toBeUndefined();
  });

  test('--ws-limit is parsed and checked', () => {
    const ok = parseCli(['--ws-limit', 'rate=5', '--ws-limit', 'max-frame=100'], {});
    expect(ok.kind === 'run' && ok.options.wsLimits).toEqual({ ratePerSecond: 5, maxPayload: 100 });
    const bad = parseCli(['--ws-limit', 'speed=5'], {});
    expect(bad.kind === 'exit' && bad.output).toMatch(/--ws-limit speed=5: expected/);
  });
});
