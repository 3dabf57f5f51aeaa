// TypeRegistry, QomObject properties and ObjectManager (object-add/object-del transactions,
// caps, events, the state-journal hooks), with memory backends on the native fake and a small
// user-creatable test type whose completion a test controls.
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fake from '../../fakes/native';
import { MiB, objectsFixture, qmpError, ObjectsFixture } from '../../fakes/objects';
import { PropertyDef, QomObject, RegisteredType, TypeRegistry, registerBaseTypes } from '../../../src/qom/object';
import { ObjectPersistence, UserCreatable } from '../../../src/qom/user-creatable';
import { JsonValue } from '../../../src/json/value';
import { genericError } from '../../../src/errors/qmp-error';

/** A user-creatable object that logs its lifecycle; `fail` makes complete() throw. */
class Probe extends UserCreatable {
  static log: string[] = [];
  color = 'red';
  fail = false;
  inUse = false;
  gate?: Promise<void>;
  async complete(): Promise<void> {
    Probe.log.push(`complete:${this.name}`);
    await this.gate;
    if (this.fail) throw genericError(`probe ${this.name} failed`);
  }
  release(): void {
    Probe.log.push(`release:${this.name}`);
  }
  override canBeDeleted(): boolean {
    return !this.inUse;
  }
  override chargedBytes(): bigint {
    return 10n;
  }
}

const PROBE_PROPS: PropertyDef<Probe>[] = [
  {
    name: 'color',
    type: 'string',
    defaultValue: 'red',
    get: (o) => o.color,
    set: (o, v, phase) => {
      Probe.log.push(`set:color=${String(v)}:${phase}`);
      if (v === 'blue' && phase === 'live') throw genericError('blue only at creation');
      o.color = String(v);
    },
  },
  { name: 'fail', type: 'bool', set: (o, v) => void (o.fail = v === true) },
  { name: 'secret', type: 'string', set: () => undefined },
  { name: 'ro', type: 'string', get: () => 'x' },
];

let fx: ObjectsFixture;
let probeType: RegisteredType;
beforeEach(() => {
  fake.reset();
  Probe.log = [];
  fx = objectsFixture();
  probeType = fx.types.register({ name: 'probe', parent: 'object', userCreatable: true, properties: PROBE_PROPS as unknown as PropertyDef[], create: (id) => new Probe(probeType, id) });
  fx.types.register({ name: 'plain', parent: 'object', create: (id) => new Probe(probeType, id) });
  fx.types.register({ name: 'not-creatable', parent: 'object', userCreatable: true, create: (id) => new QomObject(probeType, id) });
});
afterEach(() => fx.close());

const addProbe = (id: string, props: Record<string, JsonValue> = {}) => fx.objects.add({ 'qom-type': 'probe', id, ...props });

describe('TypeRegistry', () => {
  test('parents must exist; properties are inherited parents first', () => {
    const reg = new TypeRegistry();
    registerBaseTypes(reg);
    expect(() => reg.register({ name: 'x', parent: 'nope' })).toThrow('QOM type x: unknown parent nope');
    const t = reg.register({ name: 'child', parent: 'object', properties: [{ name: 'p', type: 'int' }] });
    expect([...t.properties.keys()]).toEqual(['type', 'p']);
    expect(reg.isA(t, 'object')).toBe(true);
    expect(reg.isA(t, 'container')).toBe(false);
  });

  test('qom-list-types: implements, abstract only on request, parent named', async () => {
    const all = (await fx.run('qom-list-types', { implements: 'memory-backend' })) as JsonValue[];
    expect(all).toEqual(['ram', 'file', 'memfd', 'shm', 'guest-memfd'].map((k) => ({ name: `memory-backend-${k}`, parent: 'memory-backend' })));
    const withAbstract = (await fx.run('qom-list-types', { implements: 'memory-backend', abstract: true })) as JsonValue[];
    expect(withAbstract[0]).toEqual({ name: 'memory-backend', abstract: true, parent: 'object' });
    expect(((await fx.run('qom-list-types')) as { name: string }[]).map((t) => t.name)).toContain('container');
    expect(await fx.run('qom-list-types', { implements: 'nothing' })).toEqual([]);
  });

  test('qom-list-properties: descriptions and defaults; unknown class', async () => {
    const props = (await fx.run('qom-list-properties', { typename: 'memory-backend-memfd' })) as Record<string, JsonValue>[];
    expect(props[0]).toEqual({ name: 'type', type: 'string' });
    expect(props.find((p) => p.name === 'seal')).toEqual({ name: 'seal', type: 'bool', description: 'Seal the memfd against growing and shrinking', 'default-value': true });
    expect(props.find((p) => p.name === 'policy')).toMatchObject({ type: 'HostMemPolicy', 'default-value': 'default' });
    expect(props.find((p) => p.name === 'size')).toEqual({ name: 'size', type: 'int', description: 'Size of the memory in bytes' });
    expect(await fx.error('qom-list-properties', { typename: 'nope' })).toEqual({ class: 'DeviceNotFound', desc: "Class 'nope' not found" });
  });
});

describe('QomObject properties', () => {
  test('not found, not readable, not writable, children', async () => {
    await addProbe('p');
    expect(await fx.error('qom-get', { path: 'p', property: 'nope' })).toEqual({ class: 'GenericError', desc: "Property 'probe.nope' not found" });
    expect(await fx.error('qom-get', { path: 'p', property: 'secret' })).toEqual({ class: 'GenericError', desc: "Property 'probe.secret' is not readable" });
    expect(await fx.error('qom-set', { path: 'p', property: 'ro', value: 'y' })).toEqual({ class: 'GenericError', desc: "Property 'probe.ro' is not writable" });
    expect(await fx.error('qom-set', { path: 'p', property: 'type', value: 'y' })).toEqual({ class: 'GenericError', desc: "Property 'probe.type' is not writable" });
    expect(await fx.error('qom-set', { path: '/', property: 'objects', value: 'y' })).toEqual({ class: 'GenericError', desc: "Property 'container.objects' is not writable" });
    expect(await fx.run('qom-get', { path: 'p', property: 'type' })).toBe('probe');
    expect(await fx.run('qom-get', { path: '/', property: 'objects' })).toBe('/objects');
  });

  test('setters see the phase: init at object-add, live at qom-set', async () => {
    await addProbe('p', { color: 'blue' });
    expect(await fx.error('qom-set', { path: 'p', property: 'color', value: 'blue' })).toEqual({ class: 'GenericError', desc: 'blue only at creation' });
    await fx.run('qom-set', { path: 'p', property: 'color', value: 'green' });
    expect(Probe.log).toEqual(['set:color=blue:init', 'complete:p', 'set:color=blue:live', 'set:color=green:live']);
    expect(await fx.run('qom-get', { path: 'p', property: 'color' })).toBe('green');
  });
});

describe('object-add', () => {
  test('refusals in QEMU order: id syntax, type, abstract, not user-creatable', async () => {
    const e = async (args: Record<string, JsonValue>) => (await qmpError(fx.objects.add(args))).desc;
    expect(await e({ 'qom-type': 'probe', id: '1x' })).toBe("Parameter 'id' expects an identifier");
    expect(await e({ 'qom-type': 'nope', id: '1x' })).toBe("Parameter 'id' expects an identifier");
    expect(await e({ 'qom-type': 'nope', id: 'x' })).toBe('invalid object type: nope');
    expect(await e({ 'qom-type': 'memory-backend', id: 'x' })).toBe("object type 'memory-backend' is abstract");
    expect(await e({ 'qom-type': 'plain', id: 'x' })).toBe("object type 'plain' isn't supported by object-add");
    expect(await e({ 'qom-type': 'not-creatable', id: 'x' })).toBe("object type 'not-creatable' isn't supported by object-add");
    expect(await e({ 'qom-type': 'container', id: 'x' })).toBe("object type 'container' isn't supported by object-add");
    expect(Probe.log).toEqual([]);
  });

  test('a duplicate id: setters run first, then the duplicate text, and the new object is released', async () => {
    await addProbe('p');
    Probe.log = [];
    expect(await qmpError(addProbe('p', { color: 'green' }))).toEqual({ class: 'GenericError', desc: "attempt to add duplicate property 'p' to object (type 'container')" });
    expect(Probe.log).toEqual(['set:color=green:init', 'release:p']);
    expect((fx.objects.get('p') as Probe).color).toBe('red');
    expect(fx.events).toEqual(['added:p']);
  });

  test('two concurrent adds of one id: only one wins', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    fx.types.get('probe')!.info.create = (id) => Object.assign(new Probe(probeType, id), { gate });
    const first = addProbe('p');
    const second = qmpError(addProbe('p'));
    expect(await second).toEqual({ class: 'GenericError', desc: "attempt to add duplicate property 'p' to object (type 'container')" });
    open();
    await first;
    expect([...fx.objects.list()].map((o) => o.name)).toEqual(['p']);
    expect(fx.objects.usage.objects).toBe(1);
  });

  test('a failing setter or complete() releases the object and leaves the tree and caps as they were', async () => {
    expect((await qmpError(addProbe('p', { fail: true }))).desc).toBe('probe p failed');
    expect(Probe.log).toEqual(['complete:p', 'release:p']);
    expect(fx.objects.get('p')).toBeUndefined();
    expect(fx.objects.usage).toEqual({ objects: 0, bytes: 0n });
    expect(fx.events).toEqual([]);
    expect((await qmpError(fx.add('memory-backend-memfd', 'm', { size: MiB, seal: 3 }))).desc).toBe("Invalid parameter type for 'seal', expected: boolean");
    expect(fake.counts()).toEqual({ fds: 0, mappings: 0 });
  });

  test('objects are listed in creation order and reachable by path', async () => {
    await addProbe('b');
    await addProbe('a');
    await fx.add('memory-backend-ram', 'r', { size: MiB });
    expect([...fx.objects.list()].map((o) => o.name)).toEqual(['b', 'a', 'r']);
    expect(fx.tree.resolve('/objects/r')).toMatchObject({ kind: 'found' });
    expect(fx.objects.get('r')!.canonicalPath()).toBe('/objects/r');
  });
});

describe('caps', () => {
  test('--max-objects: the refusal text; a deleted object frees its slot', async () => {
    fx.close();
    fx = objectsFixture({ limits: { maxObjects: 2 } });
    await fx.add('memory-backend-ram', 'a', { size: MiB });
    await fx.add('memory-backend-ram', 'b', { size: MiB });
    expect(await qmpError(fx.add('memory-backend-ram', 'c', { size: MiB }))).toEqual({ class: 'GenericError', desc: 'object limit reached: 2 objects exist and --max-objects is 2' });
    expect(fake.counts().mappings).toBe(2);
    await fx.objects.del('a');
    await fx.add('memory-backend-ram', 'c', { size: MiB });
    expect(fx.objects.usage).toEqual({ objects: 2, bytes: BigInt(2 * MiB) });
  });

  test('--max-backend-bytes: the refusal text, checked before any allocation; failures give bytes back', async () => {
    fx.close();
    fx = objectsFixture({ limits: { maxBytes: BigInt(3 * MiB) } });
    await fx.add('memory-backend-memfd', 'a', { size: 2 * MiB });
    fake.clearCalls();
    expect(await qmpError(fx.add('memory-backend-memfd', 'b', { size: 2 * MiB }))).toEqual({
      class: 'GenericError',
      desc: `backend memory limit reached: ${2 * MiB} bytes requested, ${MiB} of ${3 * MiB} bytes (--max-backend-bytes) left`,
    });
    expect(fake.callsOf('memfdCreate')).toEqual([]);
    fake.failNext('mmap', 'ENOMEM');
    await qmpError(fx.add('memory-backend-memfd', 'b', { size: MiB }));
    expect(fx.objects.usage).toEqual({ objects: 1, bytes: BigInt(2 * MiB) });
    await fx.add('memory-backend-memfd', 'b', { size: MiB });
    expect(fx.objects.usage).toEqual({ objects: 2, bytes: BigInt(3 * MiB) });
  });
});

describe('caps at restore', () => {
  test('restored objects are admitted past lowered caps; object-add is refused until under them', async () => {
    fx.close();
    fx = objectsFixture({ limits: { maxObjects: 1, maxBytes: BigInt(3 * MiB) } });
    const restore = { persist: false, restore: () => undefined };
    for (const id of ['a', 'b', 'c']) await fx.objects.add({ 'qom-type': 'memory-backend-memfd', id, size: 2 * MiB }, restore);
    expect(fx.objects.usage).toEqual({ objects: 3, bytes: BigInt(6 * MiB) });
    expect(fx.objects.overCaps()).toBe('3 objects exist and --max-objects is 1');
    expect(await qmpError(fx.add('memory-backend-memfd', 'd', { size: MiB }))).toEqual({ class: 'GenericError', desc: 'object limit reached: 3 objects exist and --max-objects is 1' });
    await fx.objects.del('a');
    await fx.objects.del('b');
    expect(fx.objects.overCaps()).toBeUndefined();
    expect(await qmpError(fx.add('memory-backend-memfd', 'd', { size: MiB }))).toEqual({ class: 'GenericError', desc: 'object limit reached: 1 objects exist and --max-objects is 1' });
    await fx.objects.del('c');
    await fx.add('memory-backend-memfd', 'd', { size: MiB });
    expect(fx.objects.usage).toEqual({ objects: 1, bytes: BigInt(MiB) });
  });

  test('bytes over a lowered --max-backend-bytes: nothing is left, object-add refused', async () => {
    fx.close();
    fx = objectsFixture({ limits: { maxBytes: BigInt(3 * MiB) } });
    await fx.objects.add({ 'qom-type': 'memory-backend-memfd', id: 'a', size: 4 * MiB }, { persist: false, restore: () => undefined });
    expect(fx.objects.overCaps()).toBe(`${4 * MiB} bytes are in use and --max-backend-bytes is ${3 * MiB}`);
    expect(await qmpError(fx.add('memory-backend-memfd', 'b', { size: MiB }))).toEqual({
      class: 'GenericError',
      desc: `backend memory limit reached: ${MiB} bytes requested, 0 of ${3 * MiB} bytes (--max-backend-bytes) left`,
    });
  });

  test('a restore check that refuses: nothing allocated, nothing counted, the id free', async () => {
    fake.clearCalls();
    const gone = genericError('memory gone');
    await expect(fx.objects.add({ 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB }, { persist: false, restore: () => { throw gone; } })).rejects.toBe(gone);
    expect(fake.callsOf('memfdCreate')).toEqual([]);
    expect(fx.objects.usage).toEqual({ objects: 0, bytes: 0n });
    await fx.add('memory-backend-memfd', 'm', { size: MiB });
  });
});

describe('object-del', () => {
  test('not found, in use, then gone with release and the deleted event', async () => {
    await addProbe('p');
    expect(await fx.error('object-del', { id: 'q' })).toEqual({ class: 'GenericError', desc: "object 'q' not found" });
    (fx.objects.get('p') as Probe).inUse = true;
    expect(await fx.error('object-del', { id: 'p' })).toEqual({ class: 'GenericError', desc: "object 'p' is in use, can not be deleted" });
    (fx.objects.get('p') as Probe).inUse = false;
    expect(await fx.run('object-del', { id: 'p' })).toEqual({});
    expect(Probe.log.slice(-1)).toEqual(['release:p']);
    expect(fx.events).toEqual(['added:p', 'deleted:p']);
    expect(await fx.error('qom-get', { path: '/objects/p', property: 'type' })).toEqual({ class: 'DeviceNotFound', desc: "Device '/objects/p' not found" });
    expect(fx.objects.usage).toEqual({ objects: 0, bytes: 0n });
  });

  test('releaseAll releases every object without events', async () => {
    await addProbe('p');
    await fx.add('memory-backend-memfd', 'm', { size: MiB });
    fx.objects.releaseAll('exit');
    expect(fake.counts()).toEqual({ fds: 0, mappings: 0 });
    expect(Probe.log).toContain('release:p');
    expect(fx.events).toEqual(['added:p', 'added:m']);
    expect(fx.objects.usage).toEqual({ objects: 0, bytes: 0n });
  });
});

describe('the state journal hooks', () => {
  const journal = (over: Partial<ObjectPersistence> = {}): { log: string[]; p: ObjectPersistence } => {
    const log: string[] = [];
    return {
      log,
      p: {
        added: async (o, options) => void log.push(`added:${o.name}:${Object.keys(options).join(',')}:announced=${fx.events.includes(`added:${o.name}`)}`),
        deleting: async (o) => void log.push(`deleting:${o.name}:released=${Probe.log.includes(`release:${o.name}`)}`),
        changed: async (o, prop) => void log.push(`changed:${o.name}.${prop}`),
        ...over,
      },
    };
  };

  test('added before the event, deleting before the release, changed after qom-set; persist:false skips', async () => {
    const j = journal();
    fx.setPersistence(j.p);
    await addProbe('p', { color: 'green' });
    await fx.objects.add({ 'qom-type': 'probe', id: 'q' }, { persist: false });
    await fx.run('qom-set', { path: 'p', property: 'color', value: 'pink' });
    await fx.run('qom-set', { path: '/', property: 'type', value: 'x' }).catch(() => undefined);
    await fx.run('object-del', { id: 'p' });
    expect(j.log).toEqual(['added:p:qom-type,id,color:announced=false', 'changed:p.color', 'deleting:p:released=false']);
  });

  test('a failing record undoes object-add: released, no event, caps given back', async () => {
    fx.setPersistence(journal({ added: async () => Promise.reject(new Error('disk full')) }).p);
    expect(await qmpError(fx.add('memory-backend-memfd', 'm', { size: MiB }))).toEqual({ class: 'GenericError', desc: "cannot record object 'm' in the state journal: disk full" });
    expect(fake.counts()).toEqual({ fds: 0, mappings: 0 });
    expect(fx.fds.names()).toEqual([]);
    expect(fx.events).toEqual([]);
    expect(fx.objects.usage).toEqual({ objects: 0, bytes: 0n });
  });

  test('a failing forget keeps the object usable; a concurrent delete of it is refused', async () => {
    await fx.add('memory-backend-memfd', 'm', { size: MiB });
    let reject!: (e: Error) => void;
    fx.setPersistence(journal({ deleting: () => new Promise<void>((_r, j) => (reject = j)) }).p);
    const first = fx.error('object-del', { id: 'm' });
    expect(await fx.error('object-del', { id: 'm' })).toEqual({ class: 'GenericError', desc: "object 'm' not found" });
    reject(new Error('EIO'));
    expect(await first).toEqual({ class: 'GenericError', desc: "cannot remove object 'm' from the state journal: EIO" });
    expect(fx.objects.get('m')).toBeDefined();
    expect(fake.counts()).toEqual({ fds: 1, mappings: 1 });
    expect(fx.events).toEqual(['added:m']);
  });
});
