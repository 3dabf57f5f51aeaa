// Builds the web console into web/dist: esbuild bundles web/src/main.ts (plain TypeScript,
// no framework) into app.js; index.html, style.css and favicon.svg are copied. No CDN: the
// daemon serves these files itself, so the console works offline. Run by `npm run build`.
import * as esbuild from 'esbuild';
/* global process, console */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'dist');

export async function buildConsole({ quiet = false } = {}) {
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  await esbuild.build({
    entryPoints: [path.join(here, 'src', 'main.ts')],
    bundle: true,
    format: 'iife',
    target: ['chrome100', 'firefox100', 'safari15'],
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    outfile: path.join(out, 'app.js'),
    logLevel: quiet ? 'silent' : 'warning',
  });
  for (const f of ['index.html', 'style.css', 'favicon.svg']) fs.copyFileSync(path.join(here, f), path.join(out, f));
  if (!quiet) console.log(`web console built into ${path.relative(process.cwd(), out) || out}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildConsole();
}
