// The fd registry's mirror (systemd's fd store, hostmemd-supervise's): what a restart's
// backends send to it when they claim the fds passed at start.
import { FdRegistry, FdStoreMirror } from '../../../src/fds/registry';
import type { Fd } from '../../../src/native';

const fakeFd = (n: number): Fd => ({ fd: n, isOpen: true, close: () => undefined }) as unknown as Fd;

function mirror(): FdStoreMirror & { log: string[] } {
  const log: string[] = [];
  return { log, saved: (name, fd, preserve) => log.push(`saved ${name} ${fd.fd} ${preserve}`), removed: (name) => log.push(`removed ${name}`) };
}

test('an fd the store passed back is not stored again when its backend claims it; a handover fd and a new fd are', () => {
  const m = mirror();
  const fds = new FdRegistry(m);
  const fromStore = fakeFd(10);
  const handedOver = fakeFd(11);
  fds.adopt('a', fromStore, true);
  fds.adopt('b', handedOver);
  fds.save('a', fromStore);
  fds.save('b', handedOver);
  fds.save('c', fakeFd(12));
  expect(m.log).toEqual(['saved b 11 true', 'saved c 12 true']);
  expect(fds.find('a')).toBe(fromStore);
  expect(fds.unclaimed()).toEqual([]);
});

test('a store fd not claimed under its own name, or replaced, is stored like any other', () => {
  const m = mirror();
  const fds = new FdRegistry(m);
  const a = fakeFd(10);
  fds.adopt('a', a, true);
  // Another name holds it (no restore does this, but the store must then learn the name).
  fds.save('x', a);
  expect(m.log).toEqual(['saved x 10 true']);
  const b = fakeFd(11);
  fds.adopt('b', b, true);
  fds.discardPreserved('b');
  expect(m.log).toEqual(['saved x 10 true', 'removed b']);
});
