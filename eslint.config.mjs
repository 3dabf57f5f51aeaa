// Lint: typescript-eslint recommended rules plus the layering rule of docs/architecture.md:
// protocol, schema, QOM and command code never import sockets, files, koffi or web servers.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const forbidden = ['net', 'node:net', 'fs', 'node:fs', 'fs/promises', 'node:fs/promises',
  'koffi', 'ws', 'fastify'].map((name) => ({ name, message: 'layering: only transport/, native/, daemon/ and web/ may import this' }));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'web/dist/**', 'run/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Late-bound references (a closure reads a variable assigned after it is created).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ['src/qapi/**', 'src/qmp/**', 'src/qom/**', 'src/commands/**', 'src/errors/**'],
    rules: { 'no-restricted-imports': ['error', { paths: forbidden }] },
  },
  {
    files: ['bench/**/*.mjs', 'bin/**', '**/*.cjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', Buffer: 'readonly', require: 'readonly', module: 'readonly', __dirname: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
