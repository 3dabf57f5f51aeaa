// The hostmemd web console: checks the token (?token= in the URL, then kept in
// sessionStorage and removed from the address bar), talks QMP over /qmp, and renders the
// daemon's version, KVM status, the operator caps and their use, object tree, memory chart, the
// schema-generated create form with preallocation progress, delete, live events and a raw QMP
// console, and per backend whether its memory survives a restart (query-cpr). The tree follows
// OBJECT_ADDED/OBJECT_DELETED events, not polling; only resident memory and cap use are polled.
import { h, byId, clear, formatSize, timeOf } from './dom';
import { QmpClient, QmpError, QmpEvent, Json, JsonObject } from './qmp';
import { Schema, SchemaInfo, commandForm, isFieldError, UnionForm } from './schema-form';
import { memoryChart } from './chart';
import { Terminal } from './terminal';

const TOKEN_KEY = 'hostmemd.token';
const RESIDENT_POLL_MS = 5000;
const PROGRESS_POLL_MS = 200;
const EVENTS_MAX = 200;

interface Memdev {
  id: string;
  size: number;
  share: boolean;
  prealloc: boolean;
  policy: string;
}

/** query-cpr's view of one object: does its memory survive a restart, where did it come from. */
interface CprObject {
  id: string;
  preserved: boolean;
  origin: 'created' | 'reattached' | 'reopened';
  reason?: string;
}

interface Backend {
  id: string;
  type: string;
  memdev?: Memdev;
  resident?: number;
  cpr?: CprObject;
  /** memdev-export replies sent for it (absent: never exported). */
  exports?: number;
}

let token = '';
let ui: QmpClient | undefined;
let backends: Backend[] = [];
let resident = new Map<string, number>();
let createForm: UnionForm | undefined;
let oob = false;

function takeToken(): string {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl !== null) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    // Out of the address bar (and so out of bookmarks, screenshots and history).
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

function setStatus(text: string, kind: '' | 'ok' | 'bad'): void {
  const s = byId('status');
  s.textContent = text;
  s.className = `pill ${kind}`;
}

/** Shows an error and hides every piece of data. */
function fatal(message: string): void {
  byId('app').hidden = true;
  clear(byId('app'));
  const e = byId('error');
  e.textContent = message;
  e.hidden = false;
  setStatus('no access', 'bad');
}

function api(path: string): Promise<Response> {
  return fetch(path, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
}

async function start(): Promise<void> {
  token = takeToken();
  if (!token) {
    fatal('No access token. Open this page as /?token=TOKEN, with TOKEN read from <state-dir>/token (hostmemd logs where that file is).');
    return;
  }
  let res: Response;
  try {
    res = await api('/api/info');
  } catch (e) {
    fatal(`Cannot reach hostmemd: ${String(e)}`);
    return;
  }
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    fatal('Access denied (401): the token is missing or wrong. Open this page as /?token=TOKEN, with TOKEN read from <state-dir>/token (hostmemd logs where that file is).');
    return;
  }
  if (!res.ok) {
    fatal(`hostmemd answered ${res.status} ${res.statusText}`);
    return;
  }
  const info = (await res.json()) as { name: string; version: string; qemu: { major: number; minor: number; micro: number } };
  byId('daemon-name').textContent = info.name;
  byId('daemon-version').textContent = info.version;
  byId('qemu-level').textContent = `QMP interface of QEMU ${info.qemu.major}.${info.qemu.minor}.${info.qemu.micro}`;
  byId('app').hidden = false;
  setInterval(() => {
    void refreshResident();
    // A VMM starting or ending sends no QMP event: the list is polled with the memory figures.
    void refreshVmms();
  }, RESIDENT_POLL_MS);
  await connect();
}

async function connect(): Promise<void> {
  setStatus('connecting…', '');
  const main = new QmpClient(token, 'ui');
  const raw = new QmpClient(token, 'console');
  try {
    const greeting = await main.connect();
    oob = (((greeting.QMP as JsonObject).capabilities as string[]) ?? []).includes('oob');
    await raw.connect();
  } catch (e) {
    main.close();
    raw.close();
    setStatus('disconnected', 'bad');
    // A refused upgrade is invisible to scripts: ask the HTTP side whether the token still works.
    const check = await api('/api/info').catch(() => undefined);
    if (check?.status === 401) {
      fatal('Access denied (401): the token is no longer valid.');
      return;
    }
    logEvent({ event: 'console: cannot connect', data: { reason: String(e instanceof Error ? e.message : e) } });
    setTimeout(() => void connect(), 2000);
    return;
  }
  ui = main;
  setStatus('connected', 'ok');
  const terminal = new Terminal(raw);
  main.onEvent(onEvent);
  main.onClose((why) => {
    if (ui !== main) return;
    ui = undefined;
    raw.close();
    setStatus('disconnected — reconnecting', 'bad');
    logEvent({ event: 'console: connection closed', data: { reason: why } });
    setTimeout(() => void connect(), 1000);
  });

  const [version, kvm, commands, schema] = await Promise.all([
    main.execute('query-version'),
    main.execute('query-kvm-guest-memfd'),
    main.execute('query-commands'),
    main.execute('query-qmp-schema'),
  ]);
  byId('daemon-version').title = String((version as JsonObject).package ?? '');
  renderKvm(kvm as JsonObject);
  terminal.setCommands((commands as { name: string }[]).map((c) => c.name));
  terminal.print('in', raw.greetingText ?? '');
  renderCreateForm(new Schema(schema as unknown as SchemaInfo[]));
  await refreshTree();
}

function renderKvm(k: JsonObject): void {
  const yn = (v: Json | undefined) => (v === undefined ? h('span', { class: 'muted' }, '—') : h('span', { class: v ? 'yes' : 'no' }, v ? 'yes' : 'no'));
  const hex = (v: Json | undefined) => (typeof v === 'number' ? '0x' + v.toString(16) : '—');
  clear(
    byId('kvm'),
    h(
      'dl',
      { class: 'kv' },
      h('dt', {}, 'KVM accelerator'),
      h('dd', { 'data-testid': 'kvm-enabled' }, yn(k.enabled)),
      h('dt', {}, 'guest_memfd'),
      h('dd', {}, yn(k['guest-memfd'])),
      h('dt', {}, 'API version'),
      h('dd', {}, k['api-version'] === undefined ? '—' : String(k['api-version'])),
      h('dt', {}, 'guest_memfd flags'),
      h('dd', {}, hex(k['guest-memfd-flags'])),
      h('dt', {}, 'memory attributes'),
      h('dd', {}, hex(k['memory-attributes'])),
      h('dt', {}, 'VM types'),
      h('dd', {}, hex(k['vm-types'])),
      k.unavailable !== undefined ? h('dt', {}, 'unavailable') : null,
      k.unavailable !== undefined ? h('dd', { class: 'no' }, String(k.unavailable)) : null,
    ),
  );
}

// ---- object tree ----

let refreshing: Promise<void> | undefined;
let refreshAgain = false;

/** Re-reads the tree; calls arriving meanwhile coalesce into one more pass. */
function refreshTree(): Promise<void> {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      await readTree().catch((e: unknown) => logEvent({ event: 'console: refresh failed', data: { reason: String(e) } }));
    } while (refreshAgain);
    refreshing = undefined;
  })();
  return refreshing;
}

type Prop = { name: string; type: string };
/** The parts of query-cpr the console shows. */
type CprInfo = { objects: CprObject[]; problems: { id?: string; problem: string }[]; 'journal-state'?: string; 'journal-error'?: string };

async function readTree(): Promise<void> {
  const c = ui;
  if (!c) return;
  const [root, objects, memdevs, , cpr, exported] = (await Promise.all([
    c.execute('qom-list', { path: '/' }),
    c.execute('qom-list', { path: '/objects' }),
    c.execute('query-memdev'),
    refreshResident(false),
    c.execute('query-cpr').catch(() => undefined),
    c.execute('query-memdev-exports').catch(() => []),
    refreshVmms(),
  ])) as unknown as [Prop[], Prop[], Memdev[], void, CprInfo | undefined, { id: string; exports: number }[], void];
  const exports = new Map(exported.map((e) => [e.id, e.exports]));
  const md = new Map(memdevs.map((m) => [m.id, m]));
  const restart = new Map((cpr?.objects ?? []).map((o) => [o.id, o]));
  const children = objects.filter((p) => p.type.startsWith('child<'));
  backends = children.map((p) => ({ id: p.name, type: p.type.slice(6, -1), memdev: md.get(p.name), cpr: restart.get(p.name), exports: exports.get(p.name) }));
  // A journal that cannot be written heads the list: it refuses new objects until it can.
  const journal = cpr?.['journal-state'] === 'degraded' ? [{ problem: `state journal degraded: ${cpr['journal-error'] ?? 'writes fail'}; new objects are refused until it is writable` }] : [];
  renderProblems([...journal, ...(cpr?.problems ?? [])]);
  renderTree(root, children);
  renderBackends();
}

async function refreshResident(render = true): Promise<void> {
  void refreshCaps();
  const r = await api('/api/backends').catch(() => undefined);
  if (!r?.ok) return;
  const list = (await r.json()) as { id: string; resident: number }[];
  resident = new Map(list.map((b) => [b.id, b.resident]));
  if (render) renderBackends();
}

// ---- caps (--max-objects, --max-backend-bytes, --max-clients) ----

interface CapUsage {
  limit?: number;
  used: number;
}

const CAPS: { key: 'objects' | 'backendBytes' | 'clients'; label: string; option: string; testid: string; bytes?: boolean }[] = [
  { key: 'objects', label: 'objects', option: '--max-objects', testid: 'cap-objects' },
  { key: 'backendBytes', label: 'backend memory', option: '--max-backend-bytes', testid: 'cap-backend-bytes', bytes: true },
  { key: 'clients', label: 'QMP clients', option: '--max-clients', testid: 'cap-clients' },
];

async function refreshCaps(): Promise<void> {
  const r = await api('/api/caps').catch(() => undefined);
  if (!r?.ok) return;
  const caps = (await r.json()) as Partial<Record<'objects' | 'backendBytes' | 'clients', CapUsage>>;
  const cells = CAPS.flatMap((c) => {
    const u = caps[c.key];
    if (!u) return [];
    const fmt = (n: number) => (c.bytes ? formatSize(n) : String(n));
    const text = u.limit === undefined ? `${fmt(u.used)} · no limit` : `${fmt(u.used)} / ${fmt(u.limit)}`;
    const meter = u.limit === undefined ? h('span', {}) : h('meter', { min: 0, max: u.limit, value: u.used, high: u.limit * 0.9, optimum: 0 });
    return [h('span', { title: c.option }, c.label), h('span', { class: 'used', 'data-testid': c.testid }, text), meter];
  });
  clear(byId('caps'), h('div', { class: 'caps' }, ...cells));
}

const childType = (p: Prop) => (p.type.startsWith('child<') ? p.type.slice(6, -1) : p.type);

function renderTree(root: Prop[], objects: Prop[]): void {
  const node = (name: string, type: string, kids?: HTMLElement[], id?: string) =>
    h('li', { 'data-testid': id ? 'tree-node' : undefined, 'data-id': id }, h('span', { class: 'name' }, name), ' ', h('span', { class: 'type' }, type), kids ? h('ul', {}, ...kids) : null);
  const objectNodes = objects.map((o) => {
    const b = backends.find((x) => x.id === o.name);
    const size = b?.memdev ? ` · ${formatSize(b.memdev.size)}` : '';
    return node(o.name, childType(o) + size, undefined, o.name);
  });
  const top = root
    .filter((p) => p.type.startsWith('child<'))
    .map((p) => node(p.name, childType(p), p.name === 'objects' ? objectNodes : undefined));
  clear(byId('tree'), h('ul', {}, node('/', 'container', top)));
}

function renderBackends(): void {
  const rows = backends.map((b) => {
    const m = b.memdev;
    const res = resident.get(b.id);
    const cell = deleteCell(b.id);
    return h(
      'tr',
      { 'data-testid': 'backend-row', 'data-id': b.id },
      h('td', {}, b.id),
      // An exported backend's memory is also mapped by another process (a VMM).
      h('td', {}, b.type, b.exports ? h('span', { class: 'exported', 'data-testid': 'exported', title: 'memdev-export replies sent: another process holds its fd' }, ` · exported ×${b.exports}`) : null),
      h('td', { class: 'num' }, m ? formatSize(m.size) : '—'),
      h('td', {}, m ? String(m.share) : '—'),
      h('td', {}, m ? String(m.prealloc) : '—'),
      h('td', {}, m ? m.policy : '—'),
      h('td', { class: 'num' }, res === undefined ? '—' : formatSize(res)),
      restartCell(b.cpr),
      cell,
    );
  });
  clear(byId('backend-rows'), ...(rows.length ? rows : [h('tr', { class: 'empty' }, h('td', { colspan: 9 }, 'No objects yet: create one below.'))]));
  clear(byId('chart'), memoryChart(backends.map((b) => ({ id: b.id, type: b.type, size: b.memdev?.size ?? 0, resident: resident.get(b.id) }))));
}

/** Whether the memory survives a daemon restart, and what the last start did with it. */
function restartCell(c: CprObject | undefined): HTMLElement {
  if (!c) return h('td', {}, '—');
  const keep = c.preserved ? 'kept' : 'lost (private)';
  const origin = c.origin === 'created' ? '' : ` · ${c.origin}`;
  const bad = !c.preserved;
  return h('td', { class: bad ? 'result-bad' : '', title: c.reason ?? (c.preserved ? 'memory survives a restart of hostmemd' : 'share=off: private memory cannot outlive the process'), 'data-testid': 'restart' }, keep + origin);
}

/** Journal entries or preserved fds that did not come back at the last start, and a state
 *  journal that cannot be written. */
/** query-vmms: the processes running on exported backends, and the upgrades reported. */
type VmmsInfo = {
  vmms: { pid: number; command: string; since: string; memdevs: string[]; mapped: string[]; 'upgraded-from'?: number }[];
  upgrades: { time: string; 'old-pid': number; 'new-pid': number; status: string; 'total-time-ms'?: number; 'downtime-ms'?: number; error?: string }[];
};

async function refreshVmms(): Promise<void> {
  const info = (await ui?.execute('query-vmms').catch(() => undefined)) as unknown as VmmsInfo | undefined;
  renderVmms(info);
}

function renderVmms(info: VmmsInfo | undefined): void {
  const box = byId('vmms');
  if (!info || (info.vmms.length === 0 && info.upgrades.length === 0)) {
    clear(box, h('p', { class: 'muted' }, 'None: no process has received a backend (memdev-export, hostmemd-run).'));
    return;
  }
  const vmmRows = info.vmms.map((v) =>
    h(
      'li',
      { 'data-testid': 'vmm', 'data-pid': String(v.pid) },
      h('span', { class: 'name' }, `pid ${v.pid}`),
      ' ',
      h('span', { class: 'type', title: v.command }, v.command.length > 80 ? v.command.slice(0, 80) + '…' : v.command),
      ' · maps ',
      h('span', { 'data-testid': 'vmm-mapped' }, v.mapped.length ? v.mapped.join(', ') : 'none of its backends'),
      v['upgraded-from'] !== undefined ? ` · upgraded from pid ${v['upgraded-from']}` : '',
    ),
  );
  const upgrades = info.upgrades.slice(-5).map((u) =>
    h(
      'li',
      { 'data-testid': 'vmm-upgrade' },
      `${u.time.slice(11, 19)} pid ${u['old-pid']} → ${u['new-pid']}: ${u.status}`,
      u['total-time-ms'] !== undefined ? ` in ${u['total-time-ms']} ms (downtime ${u['downtime-ms'] ?? '?'} ms)` : '',
      u.error ? ` — ${u.error}` : '',
    ),
  );
  clear(box, h('ul', { class: 'vmms' }, ...vmmRows), upgrades.length ? h('h3', {}, 'Upgrades') : '', upgrades.length ? h('ul', {}, ...upgrades) : '');
}

function renderProblems(problems: { id?: string; problem: string }[]): void {
  const box = byId('cpr-problems');
  box.hidden = problems.length === 0;
  clear(box, ...problems.map((p) => h('li', {}, p.id ? `${p.id}: ${p.problem}` : p.problem)));
}

/** The row whose deletion is being confirmed, kept across re-renders (the table is redrawn by
 *  polls and events, which must not throw away a confirmation in progress). */
let confirming: { id: string; error: string; busy: boolean } | undefined;

function deleteCell(id: string): HTMLElement {
  const cell = h('td', {});
  if (confirming?.id !== id) {
    const del = h('button', { class: 'danger', type: 'button', 'data-testid': `delete-${id}` }, 'Delete');
    del.addEventListener('click', () => {
      confirming = { id, error: '', busy: false };
      renderBackends();
    });
    clear(cell, del);
    return cell;
  }
  const c = confirming;
  const yes = h('button', { class: 'danger', type: 'button', 'data-testid': `confirm-delete-${id}` }, `Delete ${id}`);
  yes.disabled = c.busy;
  const no = h('button', { class: 'secondary', type: 'button' }, 'Cancel');
  clear(cell, yes, ' ', no, ' ', h('span', { class: 'result-bad' }, c.error));
  no.addEventListener('click', () => {
    confirming = undefined;
    renderBackends();
  });
  yes.addEventListener('click', async () => {
    c.busy = true;
    yes.disabled = true;
    try {
      await ui?.execute('object-del', { id });
      // The OBJECT_DELETED event refreshes the tree.
      if (confirming === c) confirming = undefined;
    } catch (e) {
      c.error = e instanceof QmpError ? e.desc : String(e);
      c.busy = false;
      renderBackends();
    }
  });
  return cell;
}

// ---- create ----

function renderCreateForm(schema: Schema): void {
  const form = commandForm(schema, 'object-add');
  const box = byId('create-fields');
  if (!form) {
    clear(box, h('p', { class: 'no' }, 'This daemon has no object-add in its schema.'));
    return;
  }
  createForm = form;
  clear(box, form.el);
}

byId<HTMLFormElement>('create-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void create();
});

async function create(): Promise<void> {
  const out = byId('create-result');
  const submit = byId<HTMLButtonElement>('create-submit');
  if (!createForm || !ui) return;
  let args: string;
  try {
    args = createForm.argsJson();
  } catch (e) {
    out.className = 'result-bad';
    out.textContent = isFieldError(e) ? e.message : String(e);
    return;
  }
  const c = ui;
  out.className = '';
  out.textContent = 'creating…';
  submit.disabled = true;
  const poll = startProgress(c);
  try {
    await c.execute('object-add', undefined, { argsJson: args });
    const id = (JSON.parse(args) as { id?: string }).id ?? '';
    out.className = 'result-ok';
    out.textContent = `created ${id}`;
    createForm.reset();
  } catch (e) {
    out.className = 'result-bad';
    out.textContent = e instanceof QmpError ? `${e.errorClass}: ${e.desc}` : String(e);
  } finally {
    poll();
    submit.disabled = false;
  }
}

/** While an object-add runs, asks query-prealloc out of band (it overtakes the queued
 *  object-add) and shows each preallocation's progress. Returns the stop function. */
function startProgress(c: QmpClient): () => void {
  const box = byId('progress');
  let stopped = false;
  const tick = async (): Promise<void> => {
    if (stopped) return;
    try {
      const list = (await c.execute('query-prealloc', undefined, { oob })) as { id: string; size: number; done: number; threads: number }[];
      if (stopped) return;
      box.hidden = list.length === 0;
      clear(
        box,
        ...list.map((p) =>
          h(
            'div',
            { class: 'progress-row', 'data-testid': 'prealloc-progress' },
            h('span', {}, `prealloc ${p.id}`),
            h('progress', { max: p.size, value: p.done }),
            h('span', { class: 'muted' }, `${formatSize(p.done)} / ${formatSize(p.size)} · ${p.threads} thread${p.threads === 1 ? '' : 's'}`),
          ),
        ),
      );
    } catch {
      /* disconnected: the close handler reports it */
    }
    if (!stopped) timer = setTimeout(() => void tick(), PROGRESS_POLL_MS);
  };
  // Without OOB the poll would queue behind the object-add itself: no progress then.
  let timer = oob ? setTimeout(() => void tick(), PROGRESS_POLL_MS) : undefined;
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    box.hidden = true;
    box.replaceChildren();
  };
}

// ---- events ----

let refreshTimer: ReturnType<typeof setTimeout> | undefined;

function onEvent(e: QmpEvent): void {
  logEvent(e);
  if (e.event === 'OBJECT_ADDED' || e.event === 'OBJECT_DELETED') {
    // Events of one burst (a script adding ten backends) share one refresh.
    if (refreshTimer === undefined) {
      refreshTimer = setTimeout(() => {
        refreshTimer = undefined;
        void refreshTree();
      }, 30);
    }
  }
}

function logEvent(e: { event: string; data?: JsonObject; timestamp?: QmpEvent['timestamp'] }): void {
  const list = byId('events');
  list.prepend(h('li', { 'data-event': e.event }, h('span', { class: 'muted' }, timeOf(e.timestamp)), ' ', h('span', { class: 'ev' }, e.event), ' ', e.data ? JSON.stringify(e.data) : ''));
  while (list.childElementCount > EVENTS_MAX) list.lastElementChild?.remove();
}

void start().catch((e: unknown) => fatal(`The console failed: ${e instanceof Error ? e.message : String(e)}`));
