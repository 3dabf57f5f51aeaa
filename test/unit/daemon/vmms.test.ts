// The registry of processes running on exported memory (src/daemon/vmms.ts): identified by pid
// and start time, pruned when gone, "mapped" read from /proc/PID/maps; upgrades kept in order.
import * as fs from 'node:fs';
import { VmmRegistry, fileKey } from '../../../src/daemon/vmms';

/** A file this process maps (node's own binary), as "major:minor inode". */
function selfMappedKey(): string {
  const st = fs.statSync(process.execPath, { bigint: true });
  return fileKey(st.dev, st.ino);
}

test('fileKey splits dev_t as /proc/PID/maps prints it', () => {
  expect(fileKey(0x0801n, 42n)).toBe('8:1 42');
  // major 0x123 (low 12 bits at 8..19), minor 0x45678 (low 8 at 0..7, rest at 20..)
  expect(fileKey((0x123n << 8n) | 0x78n | (0x456n << 20n), 7n)).toBe(`${0x123}:${0x45678} 7`);
});

test('a holder is listed with what it maps; upgrades are recorded and mark the successor', () => {
  const r = new VmmRegistry();
  r.exported({ pid: process.pid, uid: 0 }, 'ram0');
  r.exported({ pid: process.pid, uid: 0 }, 'ram1');
  const key = selfMappedKey();
  const list = r.list((id) => (id === 'ram0' ? key : undefined));
  expect(list).toEqual([expect.objectContaining({ pid: process.pid, memdevs: ['ram0', 'ram1'], mapped: ['ram0'] })]);
  expect(list[0].command).toContain('node');
  r.recordUpgrade({ 'old-pid': 1, 'new-pid': process.pid, status: 'completed', 'total-time-ms': 14 });
  expect(r.list(() => undefined)[0]['upgraded-from']).toBe(1);
  expect(r.upgrades()).toEqual([expect.objectContaining({ 'old-pid': 1, 'new-pid': process.pid, status: 'completed', 'total-time-ms': 14 })]);
});

test('a process that is gone is dropped; one that never existed is not recorded', () => {
  const r = new VmmRegistry();
  r.exported({ pid: 0x3fffffff, uid: 0 }, 'ram0');
  expect(r.list(() => undefined)).toEqual([]);
});
