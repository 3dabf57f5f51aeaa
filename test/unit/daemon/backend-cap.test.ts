// The default --max-backend-bytes comes from physical memory (so a huge prealloc cannot get the
// daemon OOM-killed); an explicit size overrides it, and 0 or `none` lifts the cap.
import { parseCli, defaultMaxBackendBytes } from '../../../src/daemon/cli';

const GiB = 1024n * 1024n * 1024n;

function cap(argv: string[], total: number): bigint | undefined {
  const r = parseCli(argv, {}, total);
  if (r.kind !== 'run') throw new Error(r.output);
  return r.options.maxBackendBytes;
}

test('default: physical memory less the larger of 2 GiB and an eighth, never more than half', () => {
  expect(defaultMaxBackendBytes(Number(64n * GiB))).toBe(56n * GiB); // an eighth
  expect(defaultMaxBackendBytes(Number(8n * GiB))).toBe(6n * GiB); // 2 GiB
  expect(defaultMaxBackendBytes(Number(2n * GiB))).toBe(1n * GiB); // half
  expect(cap([], Number(16n * GiB))).toBe(14n * GiB);
  expect(cap([], Number(23n * GiB))).toBe(23n * GiB - (23n * GiB) / 8n);
});

test('an explicit size overrides the default; 0 and none mean no cap', () => {
  expect(cap(['--max-backend-bytes', '100G'], Number(8n * GiB))).toBe(100n * GiB);
  expect(cap(['--max-backend-bytes', 'none'], Number(8n * GiB))).toBeUndefined();
  expect(cap(['--max-backend-bytes', '0'], Number(8n * GiB))).toBeUndefined();
  expect(parseCli(['--max-backend-bytes', 'lots'], {})).toMatchObject({ kind: 'exit', code: 1, output: 'hostmemd: --max-backend-bytes lots: expected a size such as 64G, or none\n' });
});
