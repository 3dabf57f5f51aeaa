// Lint: typescript-eslint recommended rules plus the layering of src/ (docs/architecture.md):
// - the layer table lint/layers.mjs: which src/ folder may import from which
//   (import-x/no-restricted-paths; a src/ folder missing from the table is an error);
// - no dependency cycles between files of src/ (import-x/no-cycle);
// - only native/ imports koffi (a zone of the same rule);
// - JSON, error, schema, protocol, QOM and command code never import sockets, files or web
//   servers (no-restricted-imports).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';
import { layers, pure, koffiFolder } from './lint/layers.mjs';

const root = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(root, 'src');
const folders = Object.keys(layers);
for (const [folder, allowed] of Object.entries(layers)) {
  for (const other of allowed) {
    if (other !== '*' && !folders.includes(other)) throw new Error(`lint/layers.mjs: ${folder} lists unknown folder ${other}`);
  }
}
// The table itself must be a DAG, or the layers would allow a cycle between folders.
const visit = (folder, seen) => {
  if (seen.includes(folder)) throw new Error(`lint/layers.mjs: layers form a cycle: ${[...seen, folder].join(' -> ')}`);
  for (const other of layers[folder]) if (other !== '*') visit(other, [...seen, folder]);
};
folders.forEach((folder) => visit(folder, []));

// One zone per folder of the table: its files may import from src/** except its own folder,
// the folders it lists and the leaf files directly in src/. The `except` globs are matched
// against absolute paths, so they are absolute. Folders not in the table are never excepted.
const leaf = `${src}/*`;
const zones = Object.entries(layers)
  .filter(([, allowed]) => !allowed.includes('*'))
  .map(([folder, allowed]) => ({
    target: `src/${folder}/**`,
    from: 'src/**',
    except: [folder, ...allowed].map((f) => `${src}/${f}/**`).concat(leaf),
    message: `Layering (lint/layers.mjs): src/${folder}/ may import ${
      allowed.length ? `only from ${allowed.map((f) => `${f}/`).join(', ')}` : 'no other src/ folder'} (besides itself and src/*.ts).`,
  }));
// The files directly in src/ are a leaf: they import no src/ folder.
zones.push({
  target: leaf,
  from: 'src/**',
  except: [leaf],
  message: 'Layering (lint/layers.mjs): the files directly in src/ are a leaf and import no src/ folder.',
});
// Only native/ loads koffi: import, import type, require() and import() alike.
zones.push({
  target: [`src/!(${koffiFolder})/**`, leaf],
  from: 'node_modules/koffi/**',
  message: `Layering: only src/${koffiFolder}/ may import koffi.`,
});

const banned = (names, message) => names.map((name) => ({ name, message }));
const io = ['net', 'node:net', 'fs', 'node:fs', 'fs/promises', 'node:fs/promises', 'ws', 'fastify'];
const pureMessage = `layering: ${pure.map((f) => `src/${f}/`).join(', ')} do no I/O and import no sockets, files or web servers`;

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'web/dist/**', 'run/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/extensions': ['.ts', '.js', '.mjs', '.cjs'],
      // Relative imports without extension ('../qmp/session', '../native' = native/index.ts)
      // resolve to .ts files; a '.js' suffix resolves to the .ts source too.
      'import-x/resolver-next': [createNodeResolver({
        extensions: ['.ts', '.d.ts', '.js', '.mjs', '.cjs', '.json', '.node'],
        extensionAlias: { '.js': ['.ts', '.js'] },
      })],
    },
    rules: {
      // An import the resolver cannot follow would slip past the two rules below.
      'import-x/no-unresolved': ['error', { commonjs: true }],
      'import-x/no-restricted-paths': ['error', { basePath: root, zones }],
      // import-x skips `import type` (and imports whose specifiers are all `type`) here: they
      // are erased at run time. A value import used only as a type still counts.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
    },
  },
  {
    // A folder under src/ that the layer table does not know.
    files: ['src/**/*'],
    ignores: [...folders.map((f) => `src/${f}/**`), 'src/*'],
    rules: {
      'no-restricted-syntax': ['error', {
        selector: 'Program',
        message: 'Layering: this folder of src/ is not in the layer table lint/layers.mjs; add it there with the folders it may import from (or move the file).',
      }],
    },
  },
  {
    // koffi is banned outside native/ by the zone above (it sees require() and import() too).
    files: pure.map((f) => `src/${f}/**`),
    rules: { 'no-restricted-imports': ['error', { paths: banned(io, pureMessage) }] },
  },
  {
    files: ['bench/**/*.mjs', 'bin/**', '**/*.cjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', Buffer: 'readonly', require: 'readonly', module: 'readonly', __dirname: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
