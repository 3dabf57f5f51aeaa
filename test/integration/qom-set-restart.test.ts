// issue 13 item 1: whatever qom-set does to a live fd-backed backend, a SIGKILL and a restart
// under the keeper of the fd store bring the object back with its bytes. Every settable property
// (from qom-list-properties) of every fd-backed backend type (from qom-list-types) is set to
// another value on its own backend, or refused; the patterns written into the daemon's
// mappings through /proc/PID/mem must survive, and the fds must stay in the store under their
// names until object-del, after which the same ids can be created again.
import * as path from 'node:path';
import { ServiceManager } from '../helpers/service-manager';
import { RawQmpClient } from '../helpers/qmp-client';
import { backendPatternIntact, writeBackendPattern } from '../helpers/proc';
import { kvmUsable } from '../helpers/native';
import { announceSkip } from '../helpers/qemu';
import { anotherValue, PropertyInfo, settable } from '../helpers/property-values';
import type { JsonValue } from '../../src/json/value';

jest.setTimeout(120000);
const KVM = kvmUsable();
if (!KVM) announceSkip('qom-set-restart test: memory-backend-guest-memfd and memfd guest-memfd=on', '/dev/kvm is not usable here');

/** Creation arguments of the fd-backed (shared) variants, by type; `kvm` ones need /dev/kvm.
 *  A memory-backend type not listed here fails the test rather than going untested. */
const CREATE: Record<string, { args: Record<string, unknown>; kvm?: boolean }[]> = {
  'memory-backend-ram': [{ args: { share: true } }],
  'memory-backend-file': [{ args: { share: true } }],
  'memory-backend-memfd': [{ args: {} }, { args: { 'guest-memfd': true }, kvm: true }],
  'memory-backend-shm': [{ args: {} }],
  'memory-backend-guest-memfd': [{ args: {}, kvm: true }],
};

interface Case {
  id: string;
  type: string;
  args: Record<string, unknown>;
  size: bigint;
  prop: string;
  before?: JsonValue;
  value?: JsonValue;
  refused?: string;
}

const label = (c: Case): string =>
  `${c.type}${Object.keys(c.args).length ? JSON.stringify(c.args) : ''} ${c.prop}=${JSON.stringify(c.value)} (${c.refused === undefined ? 'accepted' : `refused: ${c.refused}`})`;

type Cpr = { objects: { id: string; origin: string; reason?: string }[]; problems: { id?: string; problem: string }[] };

let sm: ServiceManager;
let sock: string;
beforeEach(() => {
  sm = new ServiceManager();
  sock = sm.listen('qmp');
});
afterEach(async () => {
  await sm.close();
});

test('every settable property of every fd-backed backend, set live, survives SIGKILL and restart with the bytes', async () => {
  await sm.start();
  const c = await RawQmpClient.negotiated(sock);
  const ok = async (command: string, args: Record<string, unknown>): Promise<unknown> => {
    const r = await c.execute(command, args);
    if (!('return' in r)) throw new Error(`${command} ${JSON.stringify(args)}: ${JSON.stringify(r)}`);
    return r.return;
  };

  const types = ((await ok('qom-list-types', { implements: 'memory-backend' })) as { name: string }[]).map((t) => t.name);
  expect(types.filter((t) => !(t in CREATE))).toEqual([]);
  const cases: Case[] = [];
  const propsOf = new Map<string, PropertyInfo[]>();
  for (const type of types) {
    const props = settable((await ok('qom-list-properties', { typename: type })) as PropertyInfo[]);
    propsOf.set(type, props);
    for (const v of CREATE[type]) {
      if (v.kvm && !KVM) continue;
      // Distinct sizes find each backend's mapping in /proc/PID/maps.
      for (const p of props) cases.push({ id: `c${cases.length}`, type, args: v.args, prop: p.name, size: (2n << 20n) + BigInt(cases.length) * 65536n });
    }
  }
  expect(cases.length).toBeGreaterThan(40);

  // Create and fill each backend, then change (or try to change) its property.
  const pid1 = sm.proc!.pid!;
  for (const k of cases) {
    const args: Record<string, unknown> = { 'qom-type': k.type, id: k.id, size: Number(k.size), ...k.args };
    if (k.type === 'memory-backend-file') args['mem-path'] = path.join(sm.stateDir, 'files', k.id);
    await ok('object-add', args);
    writeBackendPattern(pid1, k);
    const p = propsOf.get(k.type)!.find((x) => x.name === k.prop)!;
    k.before = (await ok('qom-get', { path: `/objects/${k.id}`, property: k.prop })) as JsonValue;
    k.value = anotherValue(p, k.before);
    const r = await c.execute('qom-set', { path: `/objects/${k.id}`, property: k.prop, value: k.value });
    if ('error' in r) k.refused = (r.error as { desc: string }).desc;
  }
  const ids = cases.map((k) => k.id);
  // Nothing left the store, nothing was added under another name.
  expect(await sm.storeSettles(ids, 15000)).toEqual([...ids].sort());
  c.close();

  await sm.kill();
  await sm.start();
  const pid2 = sm.proc!.pid!;
  const c2 = await RawQmpClient.negotiated(sock);
  const cpr = (await c2.execute('query-cpr')).return as Cpr;
  const origin = Object.fromEntries(cpr.objects.map((o) => [o.id, o]));
  const wrong: string[] = [];
  for (const k of cases) {
    const o = origin[k.id];
    if (!o) {
      wrong.push(`${label(k)}: not restored`);
      continue;
    }
    if (o.origin !== 'reattached' && o.origin !== 'reopened') wrong.push(`${label(k)}: ${o.origin} (${o.reason})`);
    else if (!backendPatternIntact(pid2, k)) wrong.push(`${label(k)}: bytes lost`);
    // A refused value changed nothing; an accepted one reads back, or (a property QEMU takes
    // without effect after creation) the value the memory was made with.
    const after = (await c2.execute('qom-get', { path: `/objects/${k.id}`, property: k.prop })).return;
    const allowed = k.refused === undefined ? [k.before, k.value] : [k.before];
    if (!allowed.some((a) => JSON.stringify(a) === JSON.stringify(after))) wrong.push(`${label(k)}: reads back ${JSON.stringify(after)}`);
  }
  expect({ wrong, problems: cpr.problems }).toEqual({ wrong: [], problems: [] });
  expect(await sm.storeSettles(ids)).toEqual([...ids].sort());

  // In the restarted daemon too: set again, then object-del empties the store, and every id
  // can be created again (no stale fd left under any name).
  for (const k of cases) {
    const now = (await c2.execute('qom-get', { path: `/objects/${k.id}`, property: k.prop })).return as JsonValue;
    await c2.execute('qom-set', { path: `/objects/${k.id}`, property: k.prop, value: anotherValue(propsOf.get(k.type)!.find((x) => x.name === k.prop)!, now) });
    expect([k.id, await c2.execute('object-del', { id: k.id })]).toEqual([k.id, { return: {} }]);
  }
  expect(await sm.storeSettles([], 15000)).toEqual([]);
  for (const k of cases) {
    const args: Record<string, unknown> = { 'qom-type': k.type, id: k.id, size: Number(k.size), ...k.args };
    if (k.type === 'memory-backend-file') args['mem-path'] = path.join(sm.stateDir, 'files', k.id);
    expect([label(k), await c2.execute('object-add', args)]).toEqual([label(k), { return: {} }]);
  }
  expect(await sm.storeSettles(ids, 15000)).toEqual([...ids].sort());
  c2.close();
});
