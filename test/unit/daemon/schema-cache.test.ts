// The precomputed schema model (dist/qapi-model.json): the same model as a fresh load, and
// refused as soon as any schema file it was made from changes, or the cache is damaged.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSchema } from '../../../src/qapi/load';
import { SCHEMA_MAIN } from '../../../src/daemon/config';
import { loadSchemaCached, readSchemaCache, writeSchemaCache } from '../../../src/daemon/schema-cache';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-schema-cache-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// A private copy of qapi/, so the test can change a file.
const qapiCopy = path.join(tmp, 'qapi');
fs.cpSync(path.dirname(SCHEMA_MAIN), qapiCopy, { recursive: true });
const main = path.join(qapiCopy, 'schema.json');
const cache = path.join(tmp, 'qapi-model.json');

test('a fresh cache gives the same model as loading the schema', () => {
  writeSchemaCache(main, cache);
  const cached = readSchemaCache(cache);
  const loaded = loadSchema(main, (p) => fs.readFileSync(p, 'utf8'));
  expect(cached).toBeDefined();
  expect([...cached!.entities]).toStrictEqual([...loaded.entities]);
  expect(cached!.definitionOrder).toStrictEqual(loaded.definitionOrder);
  expect(cached!.pragmas).toStrictEqual(loaded.pragmas);
});

test('any change to a schema file (an included one too) makes the cache stale', () => {
  writeSchemaCache(main, cache);
  const included = fs.readdirSync(qapiCopy).find((f) => f !== 'schema.json' && f.endsWith('.json'))!;
  const file = path.join(qapiCopy, included);
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(file, text + '\n');
  try {
    expect(readSchemaCache(cache)).toBeUndefined();
  } finally {
    fs.writeFileSync(file, text);
  }
  expect(readSchemaCache(cache)).toBeDefined();
});

test('a missing, damaged or other-format cache is not used; loading falls back to qapi/', () => {
  expect(readSchemaCache(path.join(tmp, 'nonexistent.json'))).toBeUndefined();
  fs.writeFileSync(path.join(tmp, 'bad.json'), '{"format": 1, "sources": {');
  expect(readSchemaCache(path.join(tmp, 'bad.json'))).toBeUndefined();
  writeSchemaCache(main, cache);
  const c = JSON.parse(fs.readFileSync(cache, 'utf8'));
  fs.writeFileSync(path.join(tmp, 'old.json'), JSON.stringify({ ...c, format: 0 }));
  expect(readSchemaCache(path.join(tmp, 'old.json'))).toBeUndefined();
  const m = loadSchemaCached(SCHEMA_MAIN, path.join(tmp, 'nonexistent.json'));
  expect(m.entities.get('object-add')?.meta).toBe('command');
});
