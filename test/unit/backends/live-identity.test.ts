// issue 13 item 1: a qom-set on a live fd-backed backend never parts it from its fd. For every
// settable property of every fd-backed backend (listed by qom-list-types/qom-list-properties,
// not by hand), set to another value or refused: the fd registry and the fd-store mirror keep
// the same open fd under the name it was made with; object-del removes it everywhere and the id
// can be used again; and the object re-created from what the journal recorded (creation
// arguments plus the qom-sets it was told of) claims the preserved fd: the same memory.
// On the native fake, with a fake KVM so that guest_memfd is covered too.
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fake from '../../fakes/native';
import { MiB, objectsFixture, ObjectsFixture } from '../../fakes/objects';
import { FdStoreMirror } from '../../../src/fds/registry';
import type { JsonValue } from '../../../src/json/value';
import type { Fd as RealFd } from '../../../src/native';
import { anotherValue, PropertyInfo, settable } from '../../helpers/property-values';

/** The registry's fds are the fake's at run time; only their static types differ. */
const asFake = (fd: RealFd | undefined): fake.Fd => fd as unknown as fake.Fd;
const asReal = (fd: fake.Fd): RealFd => fd as unknown as RealFd;

const DIR = '/nonexistent-hostmemd-fake';

/** Creation arguments of the fd-backed (shared) variants, by type; a type not listed here
 *  fails the test below rather than being skipped. */
const CREATE: Record<string, Record<string, JsonValue>[]> = {
  'memory-backend-ram': [{ share: true }],
  'memory-backend-file': [{ share: true, 'mem-path': `${DIR}/guest.mem` }],
  'memory-backend-memfd': [{}, { 'guest-memfd': true }],
  'memory-backend-shm': [{}],
  'memory-backend-guest-memfd': [{}],
};

/** systemd's fd store as the registry's mirror sees it: a copy of each saved fd by name. */
class Store implements FdStoreMirror {
  readonly fds = new Map<string, fake.Fd>();
  readonly removals: string[] = [];
  saved(name: string, fd: RealFd): void {
    this.fds.get(name)?.close();
    this.fds.set(name, asFake(fd).dup());
  }
  removed(name: string): void {
    this.removals.push(name);
    this.fds.get(name)?.close();
    this.fds.delete(name);
  }
}

// The cases, from a throwaway fixture's type registry.
const probe = objectsFixture();
const TYPES = (probe.types.list('memory-backend') as { name: string }[]).map((t) => t.name);
const CASES: [string, string, Record<string, JsonValue>, PropertyInfo][] = [];
for (const type of TYPES) {
  const props = settable(probe.types.listProperties(type) as unknown as PropertyInfo[]);
  for (const args of CREATE[type] ?? [{}]) {
    const label = Object.keys(args).length ? `${type} ${JSON.stringify(args)}` : type;
    for (const p of props) CASES.push([label, type, args, p]);
  }
}
probe.close();

test('every memory-backend type has creation arguments here', () => {
  expect(TYPES.filter((t) => !(t in CREATE))).toEqual([]);
});

let fx: ObjectsFixture;
let store: Store;
/** The journal stand-in: creation arguments, then the values of the qom-sets it was told of. */
let journal: Record<string, JsonValue>;

function start(): void {
  store = new Store();
  fx = objectsFixture({ kvm: true, fdMirror: store, memPathAllow: [DIR] });
  fx.setPersistence({
    added: async () => undefined,
    deleting: async () => undefined,
    changed: async (o, property) => void (journal[property] = o.getProperty(property)),
  });
}

beforeEach(() => {
  fake.reset();
  fake.kvmWithGuestMemfd();
  fake.addDir(DIR);
  start();
});
afterEach(() => {
  fx.close();
  for (const fd of store.fds.values()) fd.close();
});

/** Creates backend `b`, then qom-sets `p` to another value; says whether it was accepted. */
async function createAndSet(type: string, args: Record<string, JsonValue>, p: PropertyInfo): Promise<{ fd: fake.Fd; accepted: boolean }> {
  journal = { 'qom-type': type, id: 'b', size: MiB, ...args };
  await fx.objects.add(journal);
  expect(fx.fds.names()).toEqual(['b']);
  const fd = asFake(fx.fds.find('b'));
  const value = anotherValue(p, await fx.run('qom-get', { path: '/objects/b', property: p.name }));
  const accepted = await fx.run('qom-set', { path: '/objects/b', property: p.name, value }).then(
    () => true,
    () => false,
  );
  return { fd, accepted };
}

describe.each(CASES.map(([label, type, args, p]) => [`${label}: ${p.name}`, type, args, p] as const))('%s', (_name, type, args, p) => {
  test('the fd stays registered and stored under its name; object-del removes it; the id is free again', async () => {
    const { fd } = await createAndSet(type, args, p);
    expect(fx.fds.names()).toEqual(['b']);
    expect(asFake(fx.fds.find('b'))).toBe(fd);
    expect(fd.isOpen).toBe(true);
    expect([...store.fds.keys()]).toEqual(['b']);
    expect(fake.fileOf(store.fds.get('b')!)).toBe(fake.fileOf(fd));
    expect(store.removals).toEqual([]);
    expect(fx.backend('b').keeping().fdName).toBe('b');

    await fx.run('object-del', { id: 'b' });
    expect(fd.isOpen).toBe(false);
    expect(fx.fds.names()).toEqual([]);
    expect(fx.fds.find('b')).toBeUndefined();
    expect(store.removals).toEqual(['b']);
    expect([...store.fds.keys()]).toEqual([]);

    await fx.objects.add({ 'qom-type': type, id: 'b', size: MiB, ...args });
    expect(fx.fds.names()).toEqual(['b']);
    expect(fx.backend('b').reattached).toBe(false);
    await fx.run('object-del', { id: 'b' });
    expect(fx.fds.names()).toEqual([]);
  });

  test('re-created from what the journal recorded, it claims the preserved fd (the same memory)', async () => {
    const { fd } = await createAndSet(type, args, p);
    const memory = fake.fileOf(fd);
    // The process ends (SIGKILL's effect on the fds: the store's copies stay).
    fx.close();
    const kept = store;
    start();
    for (const [name, f] of kept.fds) fx.fds.adopt(name, asReal(f));
    kept.fds.clear();
    await fx.objects.add(journal);
    const b = fx.backend('b');
    expect(b.reattached).toBe(true);
    expect(fake.fileOf(asFake(b.fd))).toBe(memory);
    expect(fx.fds.unclaimed()).toEqual([]);
    expect([...store.fds.keys()]).toEqual(['b']);
    await fx.run('object-del', { id: 'b' });
    expect(store.removals).toEqual(['b']);
  });
});

test('qom-sets QEMU takes without effect are not journaled; others are', async () => {
  const { accepted } = await createAndSet('memory-backend-memfd', {}, { name: 'hugetlb', type: 'bool' });
  expect(accepted).toBe(true);
  for (const [property, value] of [
    ['seal', false],
    ['x-use-canonical-path-for-ramblock-id', true],
    ['policy', 'bind'],
    ['host-nodes', [0]],
    ['dump', false],
    ['prealloc-threads', 3],
  ] as const) {
    await fx.run('qom-set', { path: 'b', property, value: value as JsonValue });
  }
  expect(await fx.run('qom-get', { path: 'b', property: 'hugetlb' })).toBe(true);
  expect(journal).toEqual({ 'qom-type': 'memory-backend-memfd', id: 'b', size: MiB, dump: false, 'prealloc-threads': 3 });
  // The RAMBlock keeps the name it was made with, as in QEMU.
  expect(fx.backend('b').memName).toBe('b');
});
