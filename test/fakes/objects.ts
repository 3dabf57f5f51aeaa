// A small object world assembled the way src/daemon/main.ts does it (TypeRegistry with the
// base and backend types, ObjectTree, FdRegistry, PreallocTracker, ObjectManager with event
// hooks, the KVM accelerator, the qom command handlers), for unit tests on the native fake.
//
// Only for test files that mock the native layer first (see test/fakes/native.ts):
//     jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
// otherwise importing this loads koffi and the real syscalls.
import { TypeRegistry, registerBaseTypes } from '../../src/qom/object';
import { ObjectTree } from '../../src/qom/tree';
import { ObjectLimits, ObjectManager, ObjectPersistence, UserCreatable } from '../../src/qom/user-creatable';
import { HostMemoryBackend, PreallocEntry, PreallocTracker, registerBackendTypes } from '../../src/backends';
import { FdRegistry, FdStoreMirror } from '../../src/fds/registry';
import { KvmAccelerator } from '../../src/accel/kvm';
import { qomHandlers } from '../../src/commands/qom';
import { QmpErrorBody, toQmpError } from '../../src/errors/to-qmp';
import { CommandContext, Handler, PreEncoded } from '../../src/qmp/messages';
import { JsonValue } from '../../src/json/value';

export interface FixtureOptions {
  limits?: ObjectLimits;
  /** What os.availableParallelism() would say (the prealloc thread cap). */
  cpus?: number;
  /** Open the (fake) KVM accelerator; by default it is disabled as with --accel none. */
  kvm?: boolean;
  fdMirror?: FdStoreMirror;
  /** --mem-path-allow (default: '/', unconfined). */
  memPathAllow?: string[];
}

/** A command context for handlers that do not look at the session. */
export const CTX: CommandContext = {
  session: { clientId: 'test', transport: 'unix', negotiated: true, offeredCapabilities: [], completeNegotiation: () => undefined },
};

export function objectsFixture(opts: FixtureOptions = {}) {
  const types = new TypeRegistry();
  registerBaseTypes(types);
  const tree = new ObjectTree(types);
  const hooks: { persistence?: ObjectPersistence; prealloc?: (e: PreallocEntry) => void } = {};
  const preallocs = new PreallocTracker((e) => hooks.prealloc?.(e));
  const fds = new FdRegistry(opts.fdMirror);
  const kvm = opts.kvm ? KvmAccelerator.open() : KvmAccelerator.disabled('--accel none');
  const services = {
    preallocs,
    fds,
    cpuCount: () => opts.cpus ?? 4,
    memPathAllow: opts.memPathAllow ?? ['/'],
    resolvePath: (p: string) => {
      const r = tree.resolve(p);
      return r.kind === 'found' ? { typeName: r.obj.typeName } : r.kind;
    },
    createGuestMemfd: (size: bigint) => kvm.createSharedGuestMemfd(size),
  };
  registerBackendTypes(types, services);
  /** Object events, in order: 'added:ID' and 'deleted:ID'. */
  const events: string[] = [];
  const objects = new ObjectManager(
    tree,
    {
      added: (o) => events.push(`added:${o.name}`),
      deleted: (o) => events.push(`deleted:${o.name}`),
    },
    opts.limits,
    // A stand-in for the state journal that tests can swap (setPersistence).
    {
      admit: (id) => hooks.persistence?.admit?.(id) ?? Promise.resolve(),
      added: (o, options) => hooks.persistence?.added(o, options) ?? Promise.resolve(),
      deleting: (o) => hooks.persistence?.deleting(o) ?? Promise.resolve(),
      changed: (o, property) => hooks.persistence?.changed(o, property) ?? Promise.resolve(),
    },
  );
  /** Records object-add/del/qom-set in `p` from now on. */
  const setPersistence = (p: ObjectPersistence): void => void (hooks.persistence = p);
  /** Calls `fn` on every preallocation progress report. */
  const onPrealloc = (fn: (e: PreallocEntry) => void): void => void (hooks.prealloc = fn);
  const handlers: Map<string, Handler> = qomHandlers(tree, objects);

  /** Runs a qom handler; a PreEncoded answer is parsed (numbers as JS numbers). */
  const run = async (command: string, args: Record<string, JsonValue> = {}): Promise<JsonValue> => {
    const h = handlers.get(command);
    if (!h) throw new Error(`no handler for ${command}`);
    const r = await h(args, CTX);
    if (r instanceof PreEncoded) return JSON.parse(r.json) as JsonValue;
    return r as JsonValue;
  };
  /** Runs a handler expected to fail, and returns the QMP error it would reply with. */
  const error = async (command: string, args: Record<string, JsonValue> = {}): Promise<QmpErrorBody> => {
    try {
      await run(command, args);
    } catch (e) {
      return toQmpError(e);
    }
    throw new Error(`${command} succeeded`);
  };
  const backend = (id: string): HostMemoryBackend => {
    const o = objects.get(id);
    if (!(o instanceof HostMemoryBackend)) throw new Error(`no backend ${id}`);
    return o;
  };
  const add = (qomType: string, id: string, props: Record<string, JsonValue> = {}): Promise<UserCreatable> => objects.add({ 'qom-type': qomType, id, ...props });
  const close = (): void => {
    objects.releaseAll('exit');
    kvm.close();
  };
  return { types, tree, objects, fds, preallocs, kvm, services, events, handlers, run, error, backend, add, close, setPersistence, onPrealloc };
}

export type ObjectsFixture = ReturnType<typeof objectsFixture>;

/** The QMP error an object-add (or any promise) fails with (an error that is not a QmpError
 *  comes out as the daemon would send it: 'internal error: ...'). */
export async function qmpError(p: Promise<unknown>): Promise<QmpErrorBody> {
  try {
    await p;
  } catch (e) {
    return toQmpError(e);
  }
  throw new Error('expected a failure');
}

export const MiB = 1 << 20;
export const GiB = 1 << 30;
