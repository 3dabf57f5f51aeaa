// The build compiles every command's argument validator ahead of time (src/qapi/standalone.ts,
// written by dist/daemon/schema-cache.js into dist/qapi/validators.js, bundled with the
// daemon): the daemon takes one for every command of the built schema, so nothing is left for
// ajv to compile at run time (the first object-add after a start does not wait for it).
import * as path from 'path';

const DIST = path.resolve(__dirname, '../../dist');
/* eslint-disable @typescript-eslint/no-require-imports */
const { loadPrecompiledValidators, loadSchemaCached, readSchemaCache } = require(path.join(DIST, 'daemon/schema-cache.js'));
const { ArgValidator } = require(path.join(DIST, 'qapi/validate.js'));
const { CONFIG_SYMBOLS } = require(path.join(DIST, 'daemon/config.js'));
/* eslint-enable @typescript-eslint/no-require-imports */

test('dist holds a validator for every command of the built schema, and each is taken', () => {
  const pre = loadPrecompiledValidators();
  expect(pre).toBeDefined();
  const v = new ArgValidator(loadSchemaCached(), CONFIG_SYMBOLS, false, undefined, pre);
  expect(Object.keys(pre.hashes).length).toBeGreaterThan(20);
  expect(v.precompiledCount).toBe(Object.keys(pre.hashes).length);
  // Nothing to compile: the warm-up has no step, and ajv's compiler is never needed.
  expect(v.warmUpStep()).toBe(false);
  const args = { 'qom-type': 'memory-backend-memfd', id: 'm', size: 1048576, 'host-nodes': [0], policy: 'bind' };
  expect(v.validate('object-add', args)).toEqual({ ok: true, value: args });
  expect(v.validate('object-add', { 'qom-type': 'memory-backend-memfd', id: 'm', size: 'x' })).toEqual({ ok: false, desc: "Parameter 'size' expects uint64" });
});

test('the validators written beside the QAPI compiler leave the build\'s schema model cache fresh', () => {
  // The cache is checked against the compiler's files in dist/qapi/; the validators are made
  // after it (on a first build they did not exist yet when the cache was written).
  expect(readSchemaCache()).toBeDefined();
});

test('HOSTMEMD_NO_PRECOMPILED=1 leaves them out (validators compiled at run time, as before)', () => {
  process.env.HOSTMEMD_NO_PRECOMPILED = '1';
  try {
    expect(loadPrecompiledValidators()).toBeUndefined();
  } finally {
    delete process.env.HOSTMEMD_NO_PRECOMPILED;
  }
});
