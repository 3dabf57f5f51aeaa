/** Jest, in three tiers (each a project; `npm test` runs them all):
 *  - unit:        test/unit — no processes, no sockets, no root; the native layer is faked
 *                 where a test asks for it (test/fakes/native.ts). Seconds.
 *  - integration: test/integration, test/web, test/fuzz (short mode) — the real daemon (in-process or as a child
 *                 process) on temporary sockets and state directories, real memfd syscalls.
 *  - system:      test/system — needs something of the host: /dev/kvm, QEMU 7.2, chromium,
 *                 systemd; each test skips loudly where its requirement is missing.
 *  No forceExit: every test closes what it opens. */
const base = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
};
const tier = (name, roots) => ({ ...base, displayName: name, roots: roots.map((r) => `<rootDir>/${r}`), testMatch: ['**/*.test.ts'] });

module.exports = {
  testTimeout: 30000,
  maxWorkers: 2,
  projects: [tier('unit', ['test/unit']), tier('integration', ['test/integration', 'test/web', 'test/fuzz']), tier('system', ['test/system'])],
};
