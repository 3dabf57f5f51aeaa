// memdev-export of a KVM guest_memfd: the reply carries the gmem fd and the VM fd it belongs to.
// The receiver maps the gmem and sees the daemon's memory, binds it to a memslot of the
// exported VM (KVM_SET_USER_MEMORY_REGION2 succeeds), and a fresh VM of its own refuses it:
// EINVAL (a guest_memfd is bound to the VM that created it, guest-memfd-facts §2). The kernel
// answers VM ioctls only in the address space that created the VM (EIO elsewhere, facts §2),
// so the binding is shown with the daemon in this process (the same mm); a receiver in another
// process gets EIO on the VM fd. Needs a usable /dev/kvm with guest_memfd MMAP and INIT_SHARED:
// skipped loudly otherwise (this development machine has no /dev/kvm: not run here).
import * as native from '../../src/native';
import { startInProcess, InProcess } from '../helpers/daemon';
import { FdQmpClient, readThroughFd, withMapping } from '../helpers/fd-client';
import { kvmUsable } from '../helpers/native';
import { announceSkip } from '../helpers/qemu';

const MiB = 1 << 20;
const EINVAL = 22;
const usable = kvmUsable();
if (!usable) announceSkip('guest_memfd export (KVM_SET_USER_MEMORY_REGION2 on the exported VM fd)', '/dev/kvm is missing or not usable here');
const maybe = usable ? describe : describe.skip;

maybe('guest_memfd export', () => {
  let d: InProcess;
  let c: FdQmpClient;
  beforeAll(async () => {
    d = await startInProcess(['--accel', 'kvm']);
    c = await FdQmpClient.negotiated(d.sock);
  });
  afterAll(async () => {
    await c?.close();
    await d?.stop();
  });

  test('the receiver maps it, binds it to the exported VM, and a VM of its own refuses it', async () => {
    const caps = (await c.execute('query-kvm-guest-memfd')).reply.return as { 'guest-memfd'?: boolean; 'guest-memfd-flags'?: number };
    if (!caps['guest-memfd'] || ((caps['guest-memfd-flags'] ?? 0) & 3) !== 3) {
      announceSkip('guest_memfd export', 'KVM lacks guest_memfd with MMAP and INIT_SHARED');
      return;
    }
    expect((await c.execute('object-add', { 'qom-type': 'memory-backend-guest-memfd', id: 'g', size: 2 * MiB })).reply).toEqual({ return: {} });
    const a = await c.executeWithFds('memdev-export', { id: 'g' });
    expect(a.reply).toEqual({ return: { id: 'g', type: 'memory-backend-guest-memfd', size: 2 * MiB, offset: 0, 'page-size': 4096, share: true, readonly: false, fds: ['memory', 'kvm-vm'] } });
    const [gmem, vm] = a.fds;
    // The same pages as the daemon's: written through this copy, read through another export.
    withMapping(gmem, 2 * MiB, (m) => m.write(MiB, Buffer.from('in the guest_memfd')), { writable: true });
    const b = await c.executeWithFds('memdev-export', { id: 'g' });
    expect(readThroughFd(b.fds[0], MiB, 18).toString()).toBe('in the guest_memfd');
    for (const fd of b.fds) fd.close();

    const m = native.mmap(BigInt(2 * MiB), native.PROT_READ | native.PROT_WRITE, native.MAP_SHARED, gmem);
    const own = native.kvmOpen();
    const fresh = native.kvmCreateVm(own, 0);
    try {
      const slot = { slot: 7, flags: native.KVM_MEM_GUEST_MEMFD, guestPhysAddr: 0x100000n, memorySize: BigInt(2 * MiB), mapping: m, guestMemfd: gmem };
      expect(() => native.kvmSetUserMemoryRegion2(vm, slot)).not.toThrow();
      let err: unknown;
      try {
        native.kvmSetUserMemoryRegion2(fresh, slot);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(native.SysError);
      expect((err as native.SysError).errno).toBe(EINVAL);
    } finally {
      fresh.close();
      own.close();
      m.unmap();
      for (const fd of a.fds) fd.close();
    }
  });
});
