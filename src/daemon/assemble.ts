// Assembly, the daemon's first phase: builds every part in dependency order (schema and
// validators, accelerator, fd registry, object model and backends, journal, command table,
// dispatcher, monitor) and wires them through the event bus. Nothing here listens or restores;
// every resource that must be let go registers its step on the teardown stack as it is made.
import * as os from 'node:os';
import { loadPrecompiledValidators, loadSchemaCached } from './schema-cache';
import { buildCommandTable } from '../qapi/command-table';
import { buildIntrospection } from '../qapi/introspect';
import { ArgValidator } from '../qapi/validate';
import { SchemaModel } from '../qapi/model';
import { encodeJson } from '../json/writer';
import { JsonValue } from '../json/value';
import { Dispatcher, DispatchCommand } from '../qmp/dispatcher';
import { Monitor, VersionInfo } from '../qmp/monitor';
import { Handler } from '../qmp/messages';
import { controlHandlers } from '../commands/control';
import { accelHandlers } from '../commands/accel';
import { MemdevReplies, QomListReplies, qomHandlers } from '../commands/qom';
import { cprHandlers, cprInfo, CprServices } from '../commands/cpr';
import { hmpHandlers } from '../commands/hmp';
import { objectAddArgs } from './object-keyval';
import { vmmHandlers } from '../commands/vmm';
import { VmmRegistry, fileKey } from './vmms';
import * as native from '../native';
import { exportHandlers } from '../commands/export';
import { fdHandlers } from '../commands/fds';
import { ImportedFds } from '../fds/imported';
import { KvmAccelerator, KvmProbe } from '../accel/kvm';
import { TypeRegistry, registerBaseTypes } from '../qom/object';
import { ObjectTree } from '../qom/tree';
import { ObjectManager, UserCreatable } from '../qom/user-creatable';
import { registerBackendTypes, PreallocTracker, HostMemoryBackend } from '../backends';
import { FdRegistry, FdStoreMirror } from '../fds/registry';
import { Journal } from '../journal/journal';
import { ObjectJournal } from '../journal/object-journal';
import { FdStoreGone, SdNotifier, validFdName } from '../service/sd-notify';
import { PACKAGE_STRING, QEMU_LEVEL } from '../version';
import { CONFIG_SYMBOLS, SCHEMA_MAIN } from './config';
import { DaemonOptions } from './cli';
import { EventBus } from './event-bus';
import { Teardown } from './teardown';
import type { Logger } from './logger';

/** Objects a warm-up step encodes (query-memdev and qom-list pieces): a few ms a turn. */
const ENCODE_STEP = 200;

/** The parts the later phases (restore, listen, stop) work with. */
export interface Parts {
  model: SchemaModel;
  validator: ArgValidator;
  /** Every command of the schema, implemented or not (metrics count by these names). */
  schemaCommands: string[];
  kvm: KvmAccelerator;
  fds: FdRegistry;
  objects: ObjectManager;
  journal: ObjectJournal;
  preallocs: PreallocTracker;
  monitor: Monitor;
  /** Runs the commands; an early monitor (AssemblyContext.monitor) is given it once the
   *  restore is done (Monitor.serve). */
  dispatcher: Dispatcher;
  /** Fds clients passed (getfd, add-fd). */
  imported: ImportedFds;
  backends(): HostMemoryBackend[];
  /** Processes running on exported backends (memdev-export feeds it). */
  vmms: VmmRegistry;
  /** Work deferred past the greeting (issue 16: start-up), run one step per event-loop turn;
   *  each step returns whether more is left. The first command still works before they run. */
  warmUpSteps: (() => boolean)[];
}

/** What assembly needs from outside: the bus, the teardown stack, the notifier, and the
 *  daemon's own handover (cpr-handover runs it). */
export interface AssemblyContext {
  options: DaemonOptions;
  logger: Logger;
  bus: EventBus;
  teardown: Teardown;
  notifier: SdNotifier;
  /** Directories mem-path may lie in (mem-path-allow.ts). */
  memPathAllow: readonly string[];
  /** The monitor that greets already (early.ts): its commands wait for serve(). */
  monitor?: Monitor;
  /** Runs a handover up to the point of no return; the returned step completes it. */
  handover(channel: string, freezeTimeoutMs?: number): Promise<() => Promise<void>>;
}

export function assemble(ctx: AssemblyContext): Parts {
  const { options, logger, bus, teardown, notifier } = ctx;
  // The interface, from qapi/: precomputed by the build (dist/qapi-model.json) when fresh.
  const model = loadSchemaCached(SCHEMA_MAIN);
  const table = buildCommandTable(model, CONFIG_SYMBOLS);
  const validator = new ArgValidator(model, CONFIG_SYMBOLS, false, undefined, loadPrecompiledValidators());
  const kvm = options.accel === 'kvm' ? KvmAccelerator.open(options.kvmProbeOverride as Partial<KvmProbe>) : KvmAccelerator.disabled('--accel none');
  teardown.add('kvm', () => kvm.close());
  if (kvm.facts.unavailable) logger.warn({ reason: kvm.facts.unavailable }, 'guest_memfd backends unavailable');
  const fds = new FdRegistry(notifier.enabled ? fdStoreMirror(notifier, logger) : undefined);
  // Fds clients pass (getfd, add-fd): closed with their connection, or at exit.
  const imported = new ImportedFds();
  teardown.add('imported fds', () => imported.closeAll());
  const preallocs = new PreallocTracker((e) => bus.emit('prealloc-progress', e));
  const types = new TypeRegistry();
  registerBaseTypes(types);
  const tree = new ObjectTree(types);
  registerBackendTypes(types, {
    preallocs,
    fds,
    cpuCount: () => os.availableParallelism(),
    memPathAllow: ctx.memPathAllow,
    resolvePath: (p) => {
      const r = tree.resolve(p);
      return r.kind === 'found' ? { typeName: r.obj.typeName } : r.kind;
    },
    createGuestMemfd: (size) => kvm.createSharedGuestMemfd(size),
    guestMemfdVm: () => kvm.dupVmFd(),
    openFdset: (p, mode) => imported.openFromSet(p, mode),
  });
  const journal = new ObjectJournal(new Journal(options.stateDir), fds, logger);
  // An orderly stop writes the entry files and empties the log (a checkpoint), so a stopped
  // daemon leaves one file per object; a successor (handover) owns the journal, so nothing is
  // written then.
  teardown.add('journal', async (mode) => {
    if (mode === 'exit') await journal.journal.settle();
    journal.close();
  });
  const objects = new ObjectManager(
    tree,
    { added: (o) => bus.emit('object-added', o), deleted: (o) => bus.emit('object-deleted', o) },
    { maxObjects: options.maxObjects, maxBytes: options.maxBackendBytes },
    journal,
  );
  // The memory stays in the fd store and the objects in the journal: only object-del ends them.
  teardown.add('objects', (mode) => objects.releaseAll(mode === 'exit' ? 'exit' : 'kept'));
  const backends = (): HostMemoryBackend[] => [...objects.list()].filter((o): o is HostMemoryBackend => o instanceof HostMemoryBackend);

  // query-memdev and qom-list /objects answer from blocks of entries encoded as objects are
  // added, changed (qom-set) and deleted.
  const memdevs = new MemdevReplies();
  const lists = new QomListReplies();
  // Objects added before the warm-up starts (a restore's 1,000, before READY) are encoded by
  // its first step, ENCODE_STEP at a time; a query that comes first encodes what it lacks.
  let unencoded: UserCreatable[] | undefined = [];
  const encode = (o: UserCreatable): void => {
    memdevs.refresh(o);
    lists.refresh(o);
  };
  bus.on('object-added', (o) => (unencoded ? unencoded.push(o) : encode(o)));
  const encodeStep = (): boolean => {
    for (const o of unencoded?.splice(0, ENCODE_STEP) ?? []) if (objects.get(o.name) === o) encode(o);
    if (unencoded?.length === 0) unencoded = undefined;
    return unencoded !== undefined;
  };
  bus.on('object-deleted', (o) => {
    memdevs.removed(o);
    lists.removed(o);
  });

  const vmms = new VmmRegistry();
  const version: VersionInfo = { qemu: { ...QEMU_LEVEL }, package: PACKAGE_STRING };
  const handlers = new Map<string, Handler>();
  const implemented = (): string[] => table.filter((c) => handlers.has(c.name)).map((c) => c.name);
  // query-qmp-schema's text (~10,000 members in QDict order): made after the greeting, or on
  // the first query-qmp-schema if that comes first.
  let schemaText: string | undefined;
  const schemaJson = (): string => (schemaText ??= encodeJson(buildIntrospection(model, CONFIG_SYMBOLS) as unknown as JsonValue, { qdictOrder: true }));
  const cprServices: CprServices = { journalDir: journal.journal.dir, fdStore: notifier.enabled, objects: () => objects.list(), cpr: journal, handover: ctx.handover };
  const groups = [
    controlHandlers({ version, commandNames: implemented, schemaJson, requestShutdown: (reason) => bus.emit('shutdown-requested', reason) }),
    accelHandlers({ kvm: kvm.facts, preallocs: () => preallocs.list() }),
    cprHandlers(cprServices),
    qomHandlers(tree, objects, memdevs, lists),
    vmmHandlers({
      vmms: () => vmms.list((id) => backendFileKey(backends().find((b) => b.name === id))) as unknown as JsonValue[],
      upgrades: () => vmms.upgrades() as unknown as JsonValue[],
      recordUpgrade: (r) => vmms.recordUpgrade(r),
    }),
    exportHandlers({
      get: (id) => objects.get(id),
      objects: () => objects.list(),
      preallocating: (id) => [...preallocs.running.values()].some((e) => e.id === id),
      exported: (e) => {
        if (e.peer) vmms.exported(e.peer, e.id);
        bus.emit('memdev-exported', e);
      },
    }),
    fdHandlers(imported),
    hmpHandlers({
      version,
      tree,
      objects,
      // HMP's object_add: keyval (or JSON) text, then the checks of a QMP object-add.
      objectArgs: (text) => objectAddArgs(text, model, CONFIG_SYMBOLS, validator),
      cpr: () => cprInfo(cprServices),
      changed: (obj) => memdevs.changed(obj),
    }),
  ];
  for (const g of groups) g.forEach((h, n) => handlers.set(n, h));
  // object-add runs on behalf of its client: /dev/fdset/N names only that client's fds.
  const objectAdd = handlers.get('object-add');
  if (objectAdd) handlers.set('object-add', (a, cctx) => imported.runAs(cctx.session.clientId, () => objectAdd(a, cctx)));
  const commands = new Map<string, DispatchCommand>(table.map((c) => [c.name, { name: c.name, allowOob: c.allowOob, handler: handlers.get(c.name) }]));
  const dispatcher = new Dispatcher(commands, validator, {
    onCommand: (command, cctx, error, startNs) => bus.emit('command-done', { command, client: cctx.session.clientId, error, startNs }),
    onUnexpected: (e, command) => logger.error({ err: e, command }, 'unexpected error in command'),
  });
  bus.on('client-disconnected', ({ client }) => imported.clientGone(client));
  const monitor = ctx.monitor ?? new Monitor({ dispatcher, version, maxClients: options.maxClients, negotiationTimeoutMs: options.negotiationTimeoutMs });
  const warmUpSteps = [
    encodeStep,
    (): boolean => (schemaJson(), false),
    (): boolean => validator.warmUpStep(),
  ];
  return { model, validator, schemaCommands: table.map((c) => c.name), kvm, fds, objects, journal, preallocs, monitor, dispatcher, imported, backends, vmms, warmUpSteps };
}

/** The "major:minor inode" of a backend's memory file, as /proc/PID/maps shows it. */
function backendFileKey(b: HostMemoryBackend | undefined): string | undefined {
  if (!b?.fd?.isOpen) return undefined;
  try {
    const st = native.fstat(b.fd);
    return fileKey(st.dev, st.ino);
  } catch {
    return undefined;
  }
}

/** Every backend fd goes to systemd's fd store as soon as it exists (before the reply), and
 *  leaves it on object-del; a restarted daemon gets them back by name. */
function fdStoreMirror(notifier: SdNotifier, logger: Logger): FdStoreMirror {
  return {
    saved: (name, fd, preserve) => {
      // A private mapping's pages are not in its fd: storing the fd would keep nothing.
      if (!preserve) return;
      if (!validFdName(name)) throw new Error(`'${name}' cannot name an fd in systemd's fd store`);
      try {
        notifier.storeFd(name, fd);
      } catch (err) {
        // The backend answers "cannot preserve the memory of 'X': the fd store is gone".
        if (err instanceof FdStoreGone) logger.error({ object: name, notifySocket: notifier.socketPath }, 'the fd store is gone (its service manager or hostmemd-supervise died): refusing memory it cannot preserve');
        throw err;
      }
    },
    removed: (name) => {
      try {
        notifier.removeFd(name);
      } catch (err) {
        logger.error({ err }, 'sd_notify FDSTOREREMOVE failed');
      }
    },
  };
}
