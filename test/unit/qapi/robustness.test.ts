// Whatever the text, the front end either returns a model or throws a QapiError with a
// location: never a TypeError from a half-checked expression. Mutates the golden schemas
// (deletions, duplications, token swaps) and feeds them through loadSchema.
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { loadSchema } from '../../../src/qapi/load';
import { QapiError } from '../../../src/qapi/errors';

const DIR = path.join(__dirname, '../../qapi-schema');
const sources = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => fs.readFileSync(path.join(DIR, f), 'utf8'));

/** Pieces of schema text worth splicing in: keys, values, punctuation. */
const SNIPPETS = [
  "'data'", "'base'", "'if'", "'features'", "'boxed': true", "'type'", "'name'", "[ 'int' ]", "{ }", '[ ]', ',', ':',
  "'*x'", "'Color'", "'q_empty'", "'QType'", "'any'", "'deprecated'", "{ 'not': 'A' }", 'true', 'false', '}', ']',
];

function outcome(text: string): 'ok' | 'error' {
  const read = (p: string): string => {
    if (p === 'm.json') return text;
    return fs.readFileSync(path.join(DIR, p), 'utf8');
  };
  try {
    loadSchema('m.json', read);
    return 'ok';
  } catch (err) {
    if (err instanceof QapiError && err.message.length > 0) return 'error';
    throw err;
  }
}

describe('robustness', () => {
  it('never crashes on mutated schemas', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: sources.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 40 }), fc.constantFrom(...SNIPPETS, '')), { minLength: 1, maxLength: 3 }),
        (which, edits) => {
          let text = sources[which];
          for (const [at, len, insert] of edits) {
            const i = text.length === 0 ? 0 : at % text.length;
            text = text.slice(0, i) + insert + text.slice(i + len);
          }
          expect(['ok', 'error']).toContain(outcome(text));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
