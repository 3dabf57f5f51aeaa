// Build step: bundles the compiled daemon (dist/daemon/main.js and everything it requires,
// npm packages included) into one file, dist/daemon/main.bundle.js, which bin/hostmemd loads.
// Start-up was mostly module loading (~110 files resolved, read and wrapped one by one): one
// file cuts that (issue 16). koffi stays outside (a native addon). The bundle sits next to
// main.js so that the __dirname-relative paths (qapi/, dist/qapi-model.json, web/dist) are
// the same; keepNames keeps class and function names as they were (error texts, logs).
import { build } from 'esbuild';
import * as path from 'node:path';
import Module, { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = path.join(ROOT, 'dist', 'daemon');
// koffi is required by its file, relative to the bundle, as found now: resolving the package
// name at every start (node_modules walk, package.json exports) cost ~5 ms before the greeting.
// Its entry then finds the platform's binary (util, fs, module, package.json, a platform probe)
// and wraps it in deprecation shims hostmemd never calls: ~6 ms more. The bundle requires a
// small module written here instead, which loads the binary this build's koffi loaded, by its
// file; if that file is gone or is another koffi version, it falls back to koffi's entry.
const requireHere = createRequire(path.join(OUT_DIR, 'main.js'));
const koffiFile = requireHere.resolve('koffi');
const koffi = requireHere('koffi');
const binary = Object.keys(requireHere.cache).find((f) => f.endsWith('.node') && f.includes('koffi'));
const rel = (f) => './' + path.relative(OUT_DIR, f).split(path.sep).join('/');
const shim = path.join(OUT_DIR, 'koffi-native.js');
writeFileSync(
  shim,
  `'use strict';
// Written by tools/bundle.mjs: koffi ${koffi.version}'s native module, loaded by its file.
let native;
try {
  native = ${binary ? `require(${JSON.stringify(rel(binary))})` : 'undefined'};
  if (native && native.version !== ${JSON.stringify(koffi.version)}) native = undefined;
} catch {
  native = undefined;
}
module.exports = native ?? require(${JSON.stringify(rel(koffiFile))});
`,
);
const koffiPath = './koffi-native.js';
const [WRAP_HEAD, WRAP_TAIL] = Module.wrapper;
await build({
  entryPoints: [path.join(ROOT, 'dist', 'daemon', 'main.js')],
  outfile: path.join(ROOT, 'dist', 'daemon', 'main.bundle.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // The web console's packages load only with --ws (main.ts imports web/ lazily): left out of the
  // bundle they cost a start without --ws nothing, not even parsing.
  external: ['fastify', '@fastify/*', 'prom-client', 'ws'],
  plugins: [{ name: 'koffi-by-path', setup: (b) => b.onResolve({ filter: /^koffi$/ }, () => ({ path: koffiPath, external: true })) }],
  keepNames: true,
  // The file is the CommonJS wrapper function itself (Module.wrap's text), so bin/hostmemd
  // compiles it as read: wrapping it there made a second copy of the 0.8 MB source at every
  // start, young garbage for the scavenger before the greeting.
  banner: { js: WRAP_HEAD },
  footer: { js: WRAP_TAIL },
  // Smaller to read and hash at every start; names kept (keepNames), so logs and errors read
  // as before.
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  // schema-cache.ts's require.resolve('../qapi/load') finds dist/qapi/load.js, which tsc still writes.
  logOverride: { 'require-resolve-not-external': 'silent' },
});

// A V8 code cache of the bundle, made after its modules have run (so the functions start-up
// calls are compiled in it): bin/hostmemd hands it to vm.Script and skips most compiling. A
// cache V8 rejects (another node version or flags) only costs the compile it would have anyway.
const { spawnSync } = await import('node:child_process');
// eslint-disable-next-line no-undef -- a node script
const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'hostmemd'), '--write-code-cache'], { stdio: 'inherit' });
if (r.status !== 0) throw new Error('writing the code cache failed');
