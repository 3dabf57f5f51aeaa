// Golden cases for the QAPI compiler front end, in the manner of QEMU's tests/qapi-schema:
// each test/qapi-schema/<case>.json has either <case>.err (the exact error message) or
// <case>.out (dumpSchema of the model). Files under include/ are helpers, not cases.
// QAPI_GOLDEN_UPDATE=1 rewrites the expectations; review every change by hand.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSchema } from '../../../src/qapi/load';
import { dumpSchema } from '../../../src/qapi/dump';
import { QapiError } from '../../../src/qapi/errors';

const DIR = path.join(__dirname, '../../qapi-schema');
const UPDATE = process.env.QAPI_GOLDEN_UPDATE === '1';

const cases = fs
  .readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort();

function run(name: string): { kind: 'err' | 'out'; text: string } {
  // Paths are relative to DIR, so messages read `case.json:3: ...` as in QEMU's .err files.
  const read = (p: string): string => fs.readFileSync(path.join(DIR, p), 'utf8');
  try {
    return { kind: 'out', text: dumpSchema(loadSchema(`${name}.json`, read)) };
  } catch (err) {
    if (!(err instanceof QapiError)) throw err;
    return { kind: 'err', text: err.message + '\n' };
  }
}

describe('qapi-schema golden cases', () => {
  it('has enough cases of each kind', () => {
    const errs = cases.filter((c) => fs.existsSync(path.join(DIR, `${c}.err`)));
    expect(errs.length).toBeGreaterThanOrEqual(40);
    expect(cases.length - errs.length).toBeGreaterThanOrEqual(5);
  });

  it.each(cases)('%s', (name) => {
    const result = run(name);
    const expected = path.join(DIR, `${name}.${result.kind}`);
    const other = path.join(DIR, `${name}.${result.kind === 'err' ? 'out' : 'err'}`);
    if (UPDATE) {
      fs.writeFileSync(expected, result.text);
      if (fs.existsSync(other)) fs.unlinkSync(other);
      return;
    }
    if (!fs.existsSync(expected)) {
      const want = fs.existsSync(other) ? fs.readFileSync(other, 'utf8') : '(no expectation file)';
      throw new Error(`${name}: expected ${path.basename(other)}:\n${want}\ngot ${result.kind}:\n${result.text}`);
    }
    expect(result.text).toBe(fs.readFileSync(expected, 'utf8'));
  });
});
