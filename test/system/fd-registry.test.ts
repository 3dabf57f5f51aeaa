// The named-fd registry (QEMU's cpr_find_fd/cpr_save_fd): a backend first looks for a
// preserved fd of its name and maps that memory (contents intact) instead of allocating;
// object-del drops the name. And the KVM VM fd: created once, closed at shutdown.
import { TypeRegistry, registerBaseTypes } from '../../src/qom/object';
import { ObjectTree } from '../../src/qom/tree';
import { ObjectManager } from '../../src/qom/user-creatable';
import { registerBackendTypes, PreallocTracker, HostMemoryBackend } from '../../src/backends';
import { FdRegistry } from '../../src/fds/registry';
import * as native from '../../src/native';
import { RawQmpClient } from '../helpers/qmp-client';
import { startInProcess } from '../helpers/daemon';
import { fdTargets } from '../helpers/proc';

function setup(fds: FdRegistry) {
  const types = new TypeRegistry();
  registerBaseTypes(types);
  const tree = new ObjectTree(types);
  registerBackendTypes(types, {
    preallocs: new PreallocTracker(),
    fds,
    cpuCount: () => 2,
    memPathAllow: [],
    resolvePath: () => 'none',
    createGuestMemfd: () => {
      throw new Error('no KVM in this test');
    },
  });
  return new ObjectManager(tree, { added: () => undefined, deleted: () => undefined });
}

test('a memfd backend maps a preserved fd of its name, with its contents, and registers new ones', async () => {
  const fds = new FdRegistry();
  const pre = native.memfdCreate('preserved', native.MFD_CLOEXEC);
  native.ftruncate(pre, 1n << 20n);
  const m = native.mmap(1n << 20n, native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, pre, 0n);
  m.write(100, Buffer.from('kept across restart'));
  m.unmap();
  fds.adopt('keep', pre);

  const objects = setup(fds);
  const b = (await objects.add({ 'qom-type': 'memory-backend-memfd', id: 'keep', size: 1 << 20 })) as HostMemoryBackend;
  expect(b.fd).toBe(pre);
  expect(b.mapping!.read(100, 19).toString()).toBe('kept across restart');
  const fresh = (await objects.add({ 'qom-type': 'memory-backend-memfd', id: 'fresh', size: 1 << 20 })) as HostMemoryBackend;
  expect(fds.find('fresh')).toBe(fresh.fd);
  await objects.del('keep');
  await objects.del('fresh');
  expect(fds.names()).toEqual([]);
  expect(pre.isOpen).toBe(false);
});

test('the KVM VM fd exists once while the daemon runs and is closed at shutdown', async () => {
  const vmFds = () => fdTargets().filter((t) => t === 'anon_inode:kvm-vm').length;
  const before = vmFds();
  const d = await startInProcess();
  const c = await RawQmpClient.negotiated(d.sock);
  const enabled = ((await c.execute('query-kvm')).return as { enabled: boolean }).enabled;
  expect(vmFds()).toBe(before + (enabled ? 1 : 0));
  c.close();
  await d.stop();
  expect(vmFds()).toBe(before);
});
