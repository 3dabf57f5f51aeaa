/** Jest: unit tests, compiler golden cases and real-process integration tests. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testTimeout: 30000,
  maxWorkers: 2,
  // A failed test must not leave CI waiting on a daemon it started in-process.
  forceExit: true,
};
