// The command handlers of src/commands (qom, accel, control) called directly, with memory
// backends on the native fake: results and QEMU's error classes and texts on bad input.
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fake from '../../fakes/native';
import { CTX, MiB, objectsFixture, ObjectsFixture } from '../../fakes/objects';
import { accelHandlers } from '../../../src/commands/accel';
import { controlHandlers } from '../../../src/commands/control';
import { KvmAccelerator } from '../../../src/accel/kvm';
import { toQmpError } from '../../../src/errors/to-qmp';
import { CommandContext, PreEncoded } from '../../../src/qmp/messages';
import { JsonValue } from '../../../src/json/value';
import { encodeJson } from '../../../src/json/writer';

let fx: ObjectsFixture;
beforeEach(() => {
  fake.reset();
  fx = objectsFixture();
});
afterEach(() => fx.close());

describe('qom handlers', () => {
  test('qom-list: root, /objects, a backend; DeviceNotFound and ambiguous paths', async () => {
    await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: MiB });
    expect(await fx.run('qom-list', { path: '/' })).toEqual([
      { name: 'type', type: 'string' },
      { name: 'objects', type: 'child<container>' },
    ]);
    expect(await fx.run('qom-list', { path: '/objects' })).toEqual([
      { name: 'type', type: 'string' },
      { name: 'm', type: 'child<memory-backend-memfd>' },
    ]);
    const props = (await fx.run('qom-list', { path: 'm' })) as { name: string; type: string }[];
    expect(props.map((p) => p.name)).toEqual([
      'type', 'share', 'size', 'dump', 'prealloc-threads', 'x-use-canonical-path-for-ramblock-id', 'policy', 'prealloc-context', 'prealloc', 'reserve', 'host-nodes', 'merge',
      'hugetlb', 'seal', 'hugetlbsize', 'guest-memfd', 'm[0]',
    ]);
    expect(props.find((p) => p.name === 'prealloc-context')!.type).toBe('link<thread-context>');
    expect(props.find((p) => p.name === 'm[0]')!.type).toBe('child<memory-region>');
    expect(await fx.error('qom-list', { path: '/nope' })).toEqual({ class: 'DeviceNotFound', desc: "Device '/nope' not found" });
    await fx.run('object-add', { 'qom-type': 'memory-backend-ram', id: 'objects', size: MiB });
    expect(await fx.error('qom-list', { path: 'objects' })).toEqual({ class: 'GenericError', desc: "Path 'objects' is ambiguous" });
    // qom-get/qom-set say DeviceNotFound for ambiguous paths too.
    expect(await fx.error('qom-get', { path: 'objects', property: 'type' })).toEqual({ class: 'DeviceNotFound', desc: "Device 'objects' not found" });
  });

  test('qom-get and qom-set on a backend, partial and absolute paths', async () => {
    await fx.run('object-add', { 'qom-type': 'memory-backend-ram', id: 'r', size: 3 * MiB, 'host-nodes': [1], policy: 'bind' });
    expect(await fx.run('qom-get', { path: '/objects/r', property: 'size' })).toBe(3 * MiB);
    expect(await fx.run('qom-get', { path: 'objects/r', property: 'host-nodes' })).toEqual([1]);
    expect(await fx.run('qom-set', { path: 'r', property: 'prealloc-threads', value: 4 })).toEqual({});
    expect(await fx.run('qom-get', { path: 'r', property: 'prealloc-threads' })).toBe(4);
    expect(await fx.error('qom-set', { path: 'r', property: 'size', value: MiB })).toEqual({ class: 'GenericError', desc: 'cannot change property size of memory-backend-ram ' });
    expect(await fx.error('qom-set', { path: 'x', property: 'size', value: MiB })).toEqual({ class: 'DeviceNotFound', desc: "Device 'x' not found" });
    expect(await fx.error('qom-get', { path: 'r', property: 'nope' })).toEqual({ class: 'GenericError', desc: "Property 'memory-backend-ram.nope' not found" });
    expect(await fx.error('qom-set', { path: 'r', property: 'policy', value: 7 })).toEqual({ class: 'GenericError', desc: "Invalid parameter type for 'policy', expected: string" });
  });

  test('object-add and object-del answer {} and change the tree and the fake', async () => {
    expect(await fx.run('object-add', { 'qom-type': 'memory-backend-shm', id: 's', size: MiB })).toEqual({});
    expect(fake.counts()).toEqual({ fds: 1, mappings: 1 });
    expect(await fx.error('object-add', { 'qom-type': 'memory-backend-shm', id: 's', size: MiB })).toEqual({
      class: 'GenericError',
      desc: "attempt to add duplicate property 's' to object (type 'container')",
    });
    expect(fake.counts()).toEqual({ fds: 1, mappings: 1 });
    expect(await fx.run('object-del', { id: 's' })).toEqual({});
    expect(await fx.error('object-del', { id: 's' })).toEqual({ class: 'GenericError', desc: "object 's' not found" });
    expect(fake.counts()).toEqual({ fds: 0, mappings: 0 });
  });

  test('query-memdev: Memdev entries in creation order with current values', async () => {
    expect(await fx.run('query-memdev')).toEqual([]);
    await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 2 * MiB });
    await fx.run('object-add', { 'qom-type': 'memory-backend-ram', id: 'r', size: MiB, merge: false, dump: false, 'host-nodes': [0, 2], policy: 'preferred', reserve: false });
    const r = await fx.handlers.get('query-memdev')!({}, CTX);
    expect(r).toBeInstanceOf(PreEncoded);
    const list = JSON.parse((r as PreEncoded).json) as Record<string, JsonValue>[];
    // Members come in QEMU's QDict order (as QEMU prints a Memdev), not the schema's.
    expect(Object.keys(list[0])).toEqual(Object.keys(list[1]));
    expect(list).toEqual([
      { id: 'm', size: 2 * MiB, merge: true, dump: true, prealloc: false, share: true, reserve: true, 'host-nodes': [], policy: 'default' },
      { id: 'r', size: MiB, merge: false, dump: false, prealloc: false, share: false, reserve: false, 'host-nodes': [0, 2], policy: 'preferred' },
    ]);
    // A later qom-set and a deletion show up.
    await fx.run('qom-set', { path: 'm', property: 'dump', value: false });
    await fx.run('qom-set', { path: 'm', property: 'prealloc', value: true });
    await fx.run('object-del', { id: 'r' });
    expect(await fx.run('query-memdev')).toEqual([{ id: 'm', size: 2 * MiB, merge: true, dump: false, prealloc: true, share: true, reserve: true, 'host-nodes': [], policy: 'default' }]);
  });

  test('query-memdev keeps sizes above 2^53 exact', async () => {
    const big = (1n << 60n) + 4096n;
    await fx.run('object-add', { 'qom-type': 'memory-backend-ram', id: 'r', size: big, reserve: false });
    const r = (await fx.handlers.get('query-memdev')!({}, CTX)) as PreEncoded;
    expect(r.json).toContain(`"size": ${big}`);
    expect(await fx.run('qom-get', { path: 'r', property: 'size' })).toBe(big);
  });

  test('qom-list-types and qom-list-properties through the handlers', async () => {
    expect(await fx.run('qom-list-types', { implements: 'memory-backend-ram' })).toEqual([{ name: 'memory-backend-ram', parent: 'memory-backend' }]);
    expect(await fx.error('qom-list-properties', { typename: 'memory-backend-nope' })).toEqual({ class: 'DeviceNotFound', desc: "Class 'memory-backend-nope' not found" });
    const shm = (await fx.run('qom-list-properties', { typename: 'memory-backend-shm' })) as { name: string }[];
    expect(shm).toHaveLength(12);
  });
});

describe('accel handlers', () => {
  const run = async (kvm: KvmAccelerator, name: string): Promise<JsonValue> =>
    (await accelHandlers({ kvm: kvm.facts, preallocs: () => fx.preallocs.list() }).get(name)!({}, CTX)) as JsonValue;

  test('without KVM: query-kvm and query-kvm-guest-memfd say why', async () => {
    const kvm = KvmAccelerator.open();
    expect(await run(kvm, 'query-kvm')).toEqual({ enabled: false, present: true });
    expect(await run(kvm, 'query-kvm-guest-memfd')).toEqual({ enabled: false, unavailable: 'cannot use /dev/kvm: open: No such file or directory' });
    expect(fake.counts().fds).toBe(0);
  });

  test('with KVM: the probe, and fds closed by close()', async () => {
    fake.kvmWithGuestMemfd();
    const kvm = KvmAccelerator.open();
    expect(await run(kvm, 'query-kvm')).toEqual({ enabled: true, present: true });
    expect(await run(kvm, 'query-kvm-guest-memfd')).toEqual({ enabled: true, 'api-version': 12, 'guest-memfd': true, 'guest-memfd-flags': 3, 'memory-attributes': 0, 'vm-types': 1 });
    expect(fake.counts().fds).toBe(2);
    kvm.close();
    expect(fake.counts().fds).toBe(0);
  });

  test('a wrong KVM API version and a failing KVM_CREATE_VM disable it and close /dev/kvm', async () => {
    fake.kvmWithGuestMemfd();
    fake.kvm.apiVersion = 11;
    expect(KvmAccelerator.open().facts.unavailable).toBe('KVM API version 11 is not the supported 12');
    expect(fake.counts().fds).toBe(0);
    fake.kvm.apiVersion = 12;
    fake.failNext('kvmCreateVm', 'EMFILE');
    expect(KvmAccelerator.open().facts.unavailable).toBe('cannot use /dev/kvm: ioctl(KVM_CREATE_VM): Too many open files');
    expect(fake.counts().fds).toBe(0);
  });

  test('query-prealloc lists the preallocations running', async () => {
    const kvm = KvmAccelerator.disabled('--accel none');
    const hold = fake.holdPrealloc();
    const adding = fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 128 * MiB, prealloc: true, 'prealloc-threads': 2 });
    await hold.waiting();
    expect(await run(kvm, 'query-prealloc')).toEqual([{ id: 'm', 'qom-type': 'memory-backend-memfd', size: BigInt(128 * MiB), done: 0n, threads: 2 }]);
    hold.release();
    await adding;
    expect(await run(kvm, 'query-prealloc')).toEqual([]);
  });
});

describe('control handlers', () => {
  const shutdowns: string[] = [];
  const handlers = controlHandlers({
    version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'hostmemd-test' },
    commandNames: () => ['qmp_capabilities', 'quit'],
    schemaJson: '[{"name": "x"}]',
    requestShutdown: (r) => void shutdowns.push(r),
  });
  const session = (negotiated: boolean, offered: string[] = ['oob']) => {
    const enabled: string[][] = [];
    const ctx: CommandContext = { session: { clientId: 'c', transport: 'unix', negotiated, offeredCapabilities: offered, completeNegotiation: (caps) => void enabled.push([...caps]) } };
    return { ctx, enabled };
  };
  const err = async (p: () => unknown) => {
    try {
      await p();
    } catch (e) {
      return toQmpError(e);
    }
    throw new Error('no error');
  };

  test('qmp_capabilities: enables offered capabilities once; unknown and repeated refused', async () => {
    const s = session(false);
    expect(await handlers.get('qmp_capabilities')!({ enable: ['oob'] }, s.ctx)).toEqual({});
    expect(s.enabled).toEqual([['oob']]);
    expect(await err(() => handlers.get('qmp_capabilities')!({ enable: ['oob', 'nope'] }, session(false).ctx))).toEqual({ class: 'GenericError', desc: 'Capability nope not available' });
    expect(await err(() => handlers.get('qmp_capabilities')!({}, session(true).ctx))).toEqual({
      class: 'CommandNotFound',
      desc: 'Capabilities negotiation is already complete, command ignored',
    });
  });

  test('query-version, query-commands, query-qmp-schema, quit', async () => {
    expect(await handlers.get('query-version')!({}, CTX)).toEqual({ qemu: { major: 7, minor: 2, micro: 0 }, package: 'hostmemd-test' });
    expect(await handlers.get('query-commands')!({}, CTX)).toEqual([{ name: 'qmp_capabilities' }, { name: 'quit' }]);
    expect(((await handlers.get('query-qmp-schema')!({}, CTX)) as PreEncoded).json).toBe('[{"name": "x"}]');
    expect(await handlers.get('quit')!({}, CTX)).toEqual({});
    expect(shutdowns).toEqual(['host-qmp-quit']);
  });

  test('query-status: QEMU 7.2\'s running machine, members in its wire order', async () => {
    const status = (await handlers.get('query-status')!({}, CTX)) as Record<string, JsonValue>;
    expect(status).toEqual({ running: true, singlestep: false, status: 'running' });
    expect(encodeJson(status, { qdictOrder: true })).toBe('{"status": "running", "singlestep": false, "running": true}');
  });
});
