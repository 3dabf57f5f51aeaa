// The journal's fast reading of its own lines (parseOwnLine): JSON.parse's value, taken only
// when it is exactly the value the exact QMP parser (parseJsonText) gives, whatever the line.
import fc from 'fast-check';
import { parseOwnLine } from '../../../src/journal/journal';
import { parseJsonText } from '../../../src/json/stream';
import { encodeJson } from '../../../src/json/writer';
import { JsonFloat, memberKeys } from '../../../src/json/value';
import type { JsonValue } from '../../../src/json/value';

/** The exact parser's answer: its value, or its refusal. */
function exact(line: string): { value: JsonValue } | { error: string } {
  try {
    return { value: parseJsonText(line) };
  } catch (e) {
    return { error: String(e) };
  }
}

function fast(line: string): { value: JsonValue } | { error: string } {
  try {
    return { value: parseOwnLine(line) };
  } catch (e) {
    return { error: String(e) };
  }
}

/** Values compared with their kinds (a JsonFloat is not a number) and member order. */
function shape(v: JsonValue): unknown {
  if (v instanceof JsonFloat) return { float: v.value };
  if (typeof v === 'bigint') return { bigint: String(v) };
  if (Array.isArray(v)) return v.map(shape);
  if (v !== null && typeof v === 'object') return memberKeys(v).map((k) => [k, shape(v[k])]);
  if (typeof v === 'number' && Object.is(v, -0)) return { negativeZero: true };
  return v;
}

test.each([
  '{"version": 1, "id": "m0", "seq": 3, "args": {"qom-type": "memory-backend-memfd", "id": "m0", "size": 1048576}}',
  '{"a": 1.0}',
  '{"a": -0}',
  '{"a": 1e5}',
  '{"a": 0.1}',
  '{"a": 9007199254740993}',
  '{"a": 18446744073709551615}',
  '{"a": 1, "a": 2}',
  '{"b": 1, "10": 2, "2": 3}',
  '{"10": 1, "2": 2}',
  '{"s": "a\\"b\\\\c\\n\\/"}',
  '{"s": "\\u00e9"}',
  '{"s": "é"}',
  '{ "a" :  [1 , 2 ] }',
  '{"a": "x y", "b": " "}',
  '{"a": [1, 2,]}',
  '{"a": 01}',
  '{"a": \'x\'}',
  '[]',
  '"text"',
])('%s: the exact parser\'s answer', (line) => {
  const want = exact(line);
  const got = fast(line);
  if ('error' in want) expect(got).toHaveProperty('error');
  else {
    expect('value' in got).toBe(true);
    expect(shape((got as { value: JsonValue }).value)).toEqual(shape(want.value));
  }
});

test('property: any JSON object, as the writer makes it or as JSON.stringify does, reads as the exact parser reads it', () => {
  // Objects: the journal's lines are objects (the exact parser wants a delimited top level).
  fc.assert(
    fc.property(fc.dictionary(fc.string({ unit: 'binary' }), fc.jsonValue({ stringUnit: 'binary' })), fc.boolean(), (v, ours) => {
      let line = JSON.stringify(v);
      if (ours) {
        // The writer writes values the exact parser made; one it refuses is never written.
        const made = exact(line);
        if ('error' in made) return;
        line = encodeJson(made.value);
      }
      const want = exact(line);
      const got = fast(line);
      if ('error' in want) expect(got).toHaveProperty('error');
      else expect(shape((got as { value: JsonValue }).value)).toEqual(shape(want.value));
    }),
    { numRuns: 3000 },
  );
});
