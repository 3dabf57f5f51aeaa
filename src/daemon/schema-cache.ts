// The compiled QAPI schema model, precomputed by `npm run build` into dist/qapi-model.json so
// that a start reads one JSON file instead of parsing and checking qapi/ (~15-25 ms of a start).
// It is used only while fresh: the SHA-1 of every schema file it was made from and of the
// compiler's own files must match what is on disk now; otherwise the schema is loaded as usual.
// Run directly (node dist/daemon/schema-cache.js) to write the file.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSchema } from '../qapi/load';
import { SchemaModel } from '../qapi/model';
import { Precompiled, standaloneValidators } from '../qapi/standalone';
import { CONFIG_SYMBOLS, SCHEMA_MAIN } from './config';

/** Bumped when the file's layout changes. */
const FORMAT = 1;

/** Where the build writes the cache: dist/qapi-model.json (next to dist/daemon/). */
export const SCHEMA_CACHE = path.resolve(__dirname, '..', 'qapi-model.json');

/** The directory of the QAPI compiler that is running (dist/qapi or src/qapi under ts-jest). */
const COMPILER_DIR = path.dirname(require.resolve('../qapi/load'));

interface CacheFile {
  format: number;
  /** SHA-1 of each file the model depends on, by absolute path. */
  sources: Record<string, string>;
  model: { entities: [string, unknown][]; definitionOrder: string[]; pragmas: unknown };
}

const sha1 = (data: Buffer | string): string => crypto.createHash('sha1').update(data).digest('hex');

/** The compiler's own files: a changed compiler may build a different model from the same schema.
 *  Not the validators the build writes beside them (made from the model, after it). */
function compilerFiles(): string[] {
  return fs
    .readdirSync(COMPILER_DIR)
    .filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts') && f !== path.basename(VALIDATORS_FILE))
    .sort()
    .map((f) => path.join(COMPILER_DIR, f));
}

/** Loads the schema from qapi/, recording the SHA-1 of every file read. */
function loadRecording(mainFile: string): { model: SchemaModel; sources: Record<string, string> } {
  const sources: Record<string, string> = {};
  const model = loadSchema(mainFile, (p) => {
    const text = fs.readFileSync(p, 'utf8');
    sources[path.resolve(p)] = sha1(text);
    return text;
  });
  for (const f of compilerFiles()) sources[f] = sha1(fs.readFileSync(f));
  return { model, sources };
}

/** The cached model if `cacheFile` exists and is fresh, else undefined. Never throws. */
export function readSchemaCache(cacheFile: string = SCHEMA_CACHE): SchemaModel | undefined {
  try {
    const c = JSON.parse(fs.readFileSync(cacheFile, 'utf8')) as CacheFile;
    if (c.format !== FORMAT) return undefined;
    const compiler = compilerFiles();
    // Same compiler files (none added or removed) and same schema files, byte for byte.
    if (compiler.some((f) => !(f in c.sources))) return undefined;
    if (Object.keys(c.sources).filter((f) => f.startsWith(COMPILER_DIR + path.sep)).length !== compiler.length) return undefined;
    for (const [file, hash] of Object.entries(c.sources)) if (sha1(fs.readFileSync(file)) !== hash) return undefined;
    const m = c.model;
    return { entities: new Map(m.entities), definitionOrder: m.definitionOrder, pragmas: m.pragmas } as SchemaModel;
  } catch {
    return undefined;
  }
}

/** The schema model: from the cache when fresh, else loaded (and checked) from `mainFile`. */
export function loadSchemaCached(mainFile: string = SCHEMA_MAIN, cacheFile: string = SCHEMA_CACHE): SchemaModel {
  if (path.resolve(mainFile) === SCHEMA_MAIN) {
    const cached = readSchemaCache(cacheFile);
    if (cached) return cached;
  }
  return loadSchema(mainFile, (p) => fs.readFileSync(p, 'utf8'));
}

/** Writes the cache for `mainFile` (the build does this). */
export function writeSchemaCache(mainFile: string = SCHEMA_MAIN, cacheFile: string = SCHEMA_CACHE): void {
  const { model, sources } = loadRecording(mainFile);
  const c: CacheFile = { format: FORMAT, sources, model: { entities: [...model.entities], definitionOrder: model.definitionOrder, pragmas: model.pragmas } };
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(c));
  fs.renameSync(tmp, cacheFile);
}

/** Where the build writes the argument validators it compiles (standalone.ts): beside the
 *  QAPI compiler in dist/qapi/, so that the bundle takes them in. */
export const VALIDATORS_FILE = path.resolve(__dirname, '..', 'qapi', 'validators.js');

/** Compiles every command's argument validators for this build's schema into VALIDATORS_FILE. */
export function writeValidators(file: string = VALIDATORS_FILE): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, standaloneValidators(loadSchemaCached(), CONFIG_SYMBOLS));
  fs.renameSync(tmp, file);
}

/** The validators the build compiled, or undefined (not built: run from src/ under ts-jest, or
 *  HOSTMEMD_NO_PRECOMPILED=1 to compile them at run time as before). Never throws. */
export function loadPrecompiledValidators(): Precompiled | undefined {
  if (process.env.HOSTMEMD_NO_PRECOMPILED === '1') return undefined;
  try {
    // A literal path: the bundler takes the generated module in (it exists only in dist/).
    // eslint-disable-next-line @typescript-eslint/no-require-imports, import-x/no-unresolved
    return require('../qapi/validators') as Precompiled;
  } catch {
    return undefined;
  }
}

if (require.main === module) {
  writeSchemaCache();
  process.stdout.write(`QAPI schema model written to ${path.relative(process.cwd(), SCHEMA_CACHE)}\n`);
  writeValidators();
  process.stdout.write(`argument validators compiled to ${path.relative(process.cwd(), VALIDATORS_FILE)}\n`);
}
