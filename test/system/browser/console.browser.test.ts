// The web console in a real browser (Debian's chromium driven by playwright-core): it loads
// and shows the daemon, creates a backend through the schema-generated form (also seen over
// the UNIX socket), shows preallocation progress, deletes with confirmation, follows changes
// made by another client within 2 s, shows each cap (--max-objects, --max-backend-bytes,
// --max-clients) with its current use, lists the processes on exported backends (query-vmms),
// runs raw QMP with completion and history, and shows
// only an error for a wrong token. A screenshot is kept in artifacts/. Skips loudly when
// /usr/bin/chromium is absent.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { chromium, BrowserContext, Page } from 'playwright-core';
import { RawQmpClient } from '../../helpers/qmp-client';
import { ROOT } from '../../helpers/daemon';
import { WebDaemon, startWebDaemon } from '../../web/ws-client';
import { FdQmpClient } from '../../helpers/fd-client';
import * as native from '../../../src/native';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) console.warn(`*** ${CHROMIUM} not found: the browser tests of the web console are SKIPPED (apt-get install -y chromium) ***`);
const maybe = haveChromium ? describe : describe.skip;

maybe('web console in chromium', () => {
  let d: WebDaemon;
  let ctx: BrowserContext;
  let page: Page;
  let unix: RawQmpClient;
  let profile: string;
  const pageErrors: string[] = [];

  const memdevIds = async (): Promise<string[]> => ((await unix.execute('query-memdev')).return as { id: string }[]).map((m) => m.id);

  beforeAll(async () => {
    // The console under test is the current source: build it before the daemon loads it.
    const b = spawnSync(process.execPath, [path.join(ROOT, 'web', 'build.mjs')], { encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`console build failed: ${b.stderr}`);
    d = await startWebDaemon(['--max-objects', '100', '--max-backend-bytes', '64G', '--max-clients', '50']);
    unix = await RawQmpClient.negotiated(d.sock);
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-chromium-'));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1280, height: 1000 },
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${d.url}/?token=${d.token}`);
    await page.getByTestId('status').filter({ hasText: 'connected' }).waitFor({ timeout: 10000 });
  }, 60000);

  afterAll(async () => {
    unix?.close();
    await ctx?.close();
    await d?.stop();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  test('loads: name, version, KVM status, empty tree; the token leaves the address bar', async () => {
    await expect(page.locator('#daemon-name').textContent()).resolves.toBe('hostmemd');
    await expect(page.getByTestId('version').textContent()).resolves.toBe('0.1.0');
    await expect(page.getByTestId('kvm').textContent()).resolves.toContain('--accel none');
    await expect(page.getByTestId('backends').textContent()).resolves.toContain('No objects yet');
    expect(page.url()).toBe(`${d.url}/`);
    await expect(page.locator('#create-fields select[name="qom-type"] option').allTextContents()).resolves.toEqual(
      expect.arrayContaining(['memory-backend-memfd', 'memory-backend-ram', 'memory-backend-file']),
    );
  });

  test('creates a backend through the form; it shows in the tree and over the UNIX socket', async () => {
    const form = page.getByTestId('create-form');
    await form.locator('select[name="qom-type"]').selectOption('memory-backend-memfd');
    // Members of the chosen branch come from the schema (memfd has hugetlb and seal).
    await form.locator('[data-member="seal"]').waitFor();
    await form.locator('input[name="id"]').fill('web1');
    await form.locator('input[name="size"]').fill('16M');
    await form.locator('select[name="share"]').selectOption('true');
    await form.locator('select[name="prealloc"]').selectOption('true');
    await form.getByRole('button', { name: 'object-add' }).click();
    await page.getByTestId('create-result').filter({ hasText: 'created web1' }).waitFor();
    await page.locator('[data-testid="tree-node"][data-id="web1"]').waitFor();
    const row = page.locator('[data-testid="backend-row"][data-id="web1"]');
    await expect(row.textContent()).resolves.toMatch(/web1memory-backend-memfd16 MiBtruetruedefault/);
    const md = ((await unix.execute('query-memdev')).return as Record<string, unknown>[]).find((m) => m.id === 'web1');
    expect(md).toMatchObject({ id: 'web1', size: 16 * 1024 * 1024, share: true, prealloc: true, policy: 'default' });
    // The chart has a bar for it.
    await page.locator('[data-testid="memory-chart"] g[data-backend="web1"]').waitFor();
  });

  test('form errors: bad input is caught in the page, daemon errors are shown verbatim', async () => {
    const form = page.getByTestId('create-form');
    await form.locator('select[name="qom-type"]').selectOption('memory-backend-ram');
    await form.locator('input[name="id"]').fill('bad1');
    await form.locator('input[name="size"]').fill('lots');
    await form.getByRole('button', { name: 'object-add' }).click();
    await page.getByTestId('create-result').filter({ hasText: "size: 'lots' is not an integer" }).waitFor();
    await form.locator('input[name="id"]').fill('web1');
    await form.locator('input[name="size"]').fill('1M');
    await form.getByRole('button', { name: 'object-add' }).click();
    await page.getByTestId('create-result').filter({ hasText: "GenericError: attempt to add duplicate property 'web1'" }).waitFor();
  });

  test('shows preallocation progress while a large object-add runs (exec-oob query-prealloc)', async () => {
    const form = page.getByTestId('create-form');
    await form.locator('select[name="qom-type"]').selectOption('memory-backend-ram');
    await form.locator('input[name="id"]').fill('big1');
    await form.locator('input[name="size"]').fill('3G');
    await form.locator('select[name="prealloc"]').selectOption('true');
    await form.locator('input[name="prealloc-threads"]').fill('1');
    await form.getByRole('button', { name: 'object-add' }).click();
    const progress = page.locator('[data-testid="prealloc-progress"]');
    await progress.first().waitFor({ timeout: 20000 });
    await expect(progress.first().textContent()).resolves.toMatch(/prealloc big1.* \/ 3 GiB · 1 thread/);
    await page.getByTestId('create-result').filter({ hasText: 'created big1' }).waitFor({ timeout: 30000 });
    await expect(page.getByTestId('progress').isHidden()).resolves.toBe(true);
    expect(await unix.execute('object-del', { id: 'big1' })).toEqual({ return: {} });
  }, 60000);

  test('deletes with confirmation', async () => {
    // big1 was deleted over the UNIX socket at the end of the previous test. Seen in one CI
    // rehearsal under load: the page kept showing it (a suspected race between a refresh
    // started before the OBJECT_DELETED event and the one after it; open bug). Reload then, so
    // this test checks deletion; live updates have their own test below.
    const big1 = page.locator('[data-testid="tree-node"][data-id="big1"]');
    try {
      await big1.waitFor({ state: 'detached', timeout: 5000 });
    } catch {
      console.warn('*** console still showed big1 after its deletion: reloading (known race, see comment) ***');
      await page.goto(`${d.url}/?token=${d.token}`);
      await big1.waitFor({ state: 'detached', timeout: 10000 });
    }
    await page.getByTestId('delete-web1').click();
    await page.getByTestId('confirm-delete-web1').click();
    await page.locator('[data-testid="backend-row"][data-id="web1"]').waitFor({ state: 'detached' });
    await page.locator('[data-testid="tree-node"][data-id="web1"]').waitFor({ state: 'detached' });
    expect(await memdevIds()).not.toContain('web1');
  }, 60000);

  test('follows another client live: a UNIX-socket object-add appears within 2 s, object-del goes', async () => {
    const t0 = Date.now();
    expect(await unix.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'live1', size: 2097152 })).toEqual({ return: {} });
    await page.locator('[data-testid="tree-node"][data-id="live1"]').waitFor({ timeout: 2000 });
    const appeared = Date.now() - t0;
    await page.locator('[data-testid="events"] li[data-event="OBJECT_ADDED"]').filter({ hasText: 'live1' }).waitFor({ timeout: 2000 });
    const t1 = Date.now();
    expect(await unix.execute('object-del', { id: 'live1' })).toEqual({ return: {} });
    await page.locator('[data-testid="tree-node"][data-id="live1"]').waitFor({ state: 'detached', timeout: 2000 });
    console.log(`live update: added shown after ${appeared} ms, deleted gone after ${Date.now() - t1} ms`);
    expect(await unix.execute('object-add', { 'qom-type': 'memory-backend-ram', id: 'shot1', size: 8388608, prealloc: true })).toEqual({ return: {} });
    expect(await unix.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'shot2', size: 25165824, share: true })).toEqual({ return: {} });
    await page.locator('[data-testid="tree-node"][data-id="shot1"]').waitFor({ timeout: 2000 });
    await page.locator('[data-testid="tree-node"][data-id="shot2"]').waitFor({ timeout: 2000 });
  });

  test('says which backends survive a restart of the daemon (query-cpr)', async () => {
    // shot1 is private RAM (share=off), shot2 a shared memfd: only shot2's memory can be kept.
    const cell = (id: string) => page.locator(`[data-testid="backend-row"][data-id="${id}"] [data-testid="restart"]`);
    await cell('shot2').filter({ hasText: /^kept$/ }).waitFor({ timeout: 5000 });
    await cell('shot1').filter({ hasText: /^lost \(private\)$/ }).waitFor({ timeout: 5000 });
    expect(await cell('shot1').getAttribute('title')).toBe('share=off: private memory cannot outlive the process');
    expect(await page.getByTestId('cpr-problems').isHidden()).toBe(true);
  });

  test('lists the processes running on exported backends, what they map, and reported upgrades (query-vmms)', async () => {
    // This test process plays the VMM: it receives shot2's fd and maps it.
    const c = await FdQmpClient.negotiated(d.sock);
    const r = await c.executeWithFds('memdev-export', { id: 'shot2' });
    expect(r.fds).toHaveLength(1);
    const m = native.mmap(4096n, native.PROT_READ, native.MAP_SHARED, r.fds[0], 0n);
    try {
      const vmm = page.locator(`[data-testid="vmm"][data-pid="${process.pid}"]`);
      await vmm.getByTestId('vmm-mapped').filter({ hasText: /^shot2$/ }).waitFor({ timeout: 8000 });
      expect(await unix.execute('record-vmm-upgrade', { 'old-pid': 1, 'new-pid': process.pid, status: 'completed', 'total-time-ms': 14, 'downtime-ms': 3 })).toEqual({ return: {} });
      await page.locator('[data-testid="vmm-upgrade"]').filter({ hasText: `pid 1 → ${process.pid}: completed in 14 ms (downtime 3 ms)` }).waitFor({ timeout: 8000 });
      await vmm.filter({ hasText: 'upgraded from pid 1' }).waitFor({ timeout: 8000 });
    } finally {
      m.unmap();
      for (const fd of r.fds) fd.close();
      await c.close();
    }
  });

  test('shows each cap with its current use, updated as objects come and go', async () => {
    // shot1 (8 MiB) and shot2 (24 MiB) exist from the previous test.
    const objectsCap = page.getByTestId('cap-objects');
    await objectsCap.filter({ hasText: '2 / 100' }).waitFor({ timeout: 5000 });
    await page.getByTestId('cap-backend-bytes').filter({ hasText: '32 MiB / 64 GiB' }).waitFor({ timeout: 5000 });
    // This page's two WebSocket clients and the test's UNIX-socket client, at least.
    const clients = (await page.getByTestId('cap-clients').textContent()) ?? '';
    const m = /^(\d+) \/ 50$/.exec(clients);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(3);
    await expect(page.locator('[data-testid="caps"] meter').count()).resolves.toBe(3);
    // Each cap's usage follows object-add and object-del made by another client.
    expect(await unix.execute('object-add', { 'qom-type': 'memory-backend-memfd', id: 'cap1', size: 1048576 })).toEqual({ return: {} });
    await objectsCap.filter({ hasText: '3 / 100' }).waitFor({ timeout: 5000 });
    await page.getByTestId('cap-backend-bytes').filter({ hasText: '33 MiB / 64 GiB' }).waitFor({ timeout: 5000 });
    expect(await unix.execute('object-del', { id: 'cap1' })).toEqual({ return: {} });
    await objectsCap.filter({ hasText: '2 / 100' }).waitFor({ timeout: 5000 });
  });

  test('raw QMP console: Tab completes command names, Enter sends, arrow-up recalls', async () => {
    const input = page.getByTestId('console-input');
    await input.fill('query-ver');
    await input.press('Tab');
    await expect(input.inputValue()).resolves.toBe('query-version ');
    await input.press('Enter');
    const log = page.getByTestId('console-log');
    await log.locator('.line.in').filter({ hasText: '{"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "hostmemd 0.1.0"}}' }).waitFor();
    await input.fill('{"execute":"qom-li');
    await input.press('Tab');
    await expect(input.inputValue()).resolves.toBe('{"execute":"qom-list');
    await input.fill('qom-list {"path": "/objects"}');
    await input.press('Enter');
    await log.locator('.line.in').filter({ hasText: '{"name": "shot1", "type": "child<memory-backend-ram>"}' }).waitFor();
    await input.press('ArrowUp');
    await expect(input.inputValue()).resolves.toBe('qom-list {"path": "/objects"}');
    await input.press('ArrowUp');
    await expect(input.inputValue()).resolves.toBe('query-version ');
    await input.fill('{"execute": }');
    await input.press('Enter');
    await log.locator('.line.in').filter({ hasText: 'JSON parse error, expecting value' }).waitFor();
  });

  test('screenshot of the console is kept in artifacts/', async () => {
    const dir = path.join(ROOT, 'artifacts');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'web-console.png');
    await page.screenshot({ path: file, fullPage: true });
    expect(fs.statSync(file).size).toBeGreaterThan(10000);
    console.log(`web console screenshot: ${file}`);
  });

  test('a wrong token shows an error and no data', async () => {
    const bad = await ctx.newPage();
    try {
      await bad.goto(`${d.url}/?token=${'0'.repeat(64)}`);
      await bad.getByTestId('error').filter({ hasText: 'Access denied (401)' }).waitFor();
      await expect(bad.locator('#app').isHidden()).resolves.toBe(true);
      await expect(bad.locator('[data-testid="backend-row"]').count()).resolves.toBe(0);
      await expect(bad.locator('body').textContent()).resolves.not.toContain('shot1');
      const none = await ctx.newPage();
      await none.goto(`${d.url}/`);
      await none.getByTestId('error').filter({ hasText: 'No access token' }).waitFor();
      await none.close();
    } finally {
      await bad.close();
    }
  });

  test('no script errors in the page', () => {
    expect(pageErrors).toEqual([]);
  });
});
