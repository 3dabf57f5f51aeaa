// QEMU's output formatting (qemu-facts §1.1, §1.11, §2.5): compact separators, pure-ASCII
// escapes, %.17g doubles, exact integers, and QDict member order. Expected texts were checked
// against QEMU 7.2 echoing them back as a request id.
import fc from 'fast-check';
import { encodeJson, flatCopy, formatDouble, qdictBucket, quoteLong, LONG_QUOTE_CHARS } from '../../../src/json/writer';
import { JsonFloat, JsonObject, JsonValue } from '../../../src/json/value';

describe('layout', () => {
  test('compact QEMU form', () => {
    expect(encodeJson({ a: 1, b: [1, 2] })).toBe('{"a": 1, "b": [1, 2]}');
    expect(encodeJson({})).toBe('{}');
    expect(encodeJson([])).toBe('[]');
    expect(encodeJson({ a: {}, b: [[], [{}]], c: null, d: true, e: false })).toBe(
      '{"a": {}, "b": [[], [{}]], "c": null, "d": true, "e": false}',
    );
    expect(encodeJson('x')).toBe('"x"');
    expect(encodeJson(null)).toBe('null');
  });

  test('members are printed in insertion order unless qdictOrder is asked for', () => {
    expect(encodeJson({ z: 1, a: 2, m: 3 })).toBe('{"z": 1, "a": 2, "m": 3}');
  });

  test('members whose value is undefined are left out (absent optional members)', () => {
    const v = { a: 1, b: undefined, c: 2 } as unknown as JsonObject;
    expect(encodeJson(v)).toBe('{"a": 1, "c": 2}');
    expect(encodeJson({ b: undefined } as unknown as JsonObject)).toBe('{}');
  });

  test('an own __proto__ member is printed', () => {
    const o: JsonObject = {};
    Object.defineProperty(o, '__proto__', { value: 1, enumerable: true, writable: true, configurable: true });
    expect(encodeJson(o)).toBe('{"__proto__": 1}');
  });

  test('non-JSON values are refused', () => {
    expect(() => encodeJson((() => 1) as unknown as JsonValue)).toThrow(TypeError);
  });
});

describe('strings', () => {
  test('short escapes, "/" left alone', () => {
    expect(encodeJson('"\\\b\f\n\r\t/')).toBe('"\\"\\\\\\b\\f\\n\\r\\t/"');
  });

  test('other C0 controls and DEL as \\u00XX, uppercase', () => {
    expect(encodeJson('\u0000\u0001\u000b\u001f\u007f')).toBe('"\\u0000\\u0001\\u000B\\u001F\\u007F"');
  });

  test('non-ASCII as uppercase \\uXXXX, astral characters as surrogate pairs', () => {
    expect(encodeJson('é€\ufffd')).toBe('"\\u00E9\\u20AC\\uFFFD"');
    expect(encodeJson('a😀b\u{10fffd}')).toBe('"a\\uD83D\\uDE00b\\uDBFF\\uDFFD"');
    expect(encodeJson('\u00e9\ud83d\ude00\u007f/')).toBe('"\\u00E9\\uD83D\\uDE00\\u007F/"'); // §1.10
  });

  test('what QEMU cannot hold in UTF-8 becomes U+FFFD: lone surrogates, noncharacters', () => {
    expect(encodeJson('a\ud800b\udc00')).toBe('"a\\uFFFDb\\uFFFD"');
    expect(encodeJson('\ud83d')).toBe('"\\uFFFD"');
    expect(encodeJson('\ufdd0\ufdef\ufffe\uffff\u{1fffe}\u{10ffff}')).toBe('"' + '\\uFFFD'.repeat(6) + '"');
    expect(encodeJson('\ufdcf\ufdf0\ufffd')).toBe('"\\uFDCF\\uFDF0\\uFFFD"');
  });

  test('keys are escaped the same way', () => {
    expect(encodeJson({ 'é"\n': 1 })).toBe('{"\\u00E9\\"\\n": 1}');
  });

  test('output is always printable ASCII (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }), (s) => {
        expect(encodeJson(s)).toMatch(/^"[\x20-\x7e]*"$/);
        expect(encodeJson({ [s]: s })).toMatch(/^\{"[\x20-\x7e]*": "[\x20-\x7e]*"\}$/);
      }),
    );
  });

  test('valid strings survive JSON.parse of the output (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const clean = [...s].every((ch) => {
          const cp = ch.codePointAt(0) as number;
          return !((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe);
        });
        if (clean) expect(JSON.parse(encodeJson(s))).toBe(s);
      }),
    );
  });
});

describe('numbers (§1.1, §2.5)', () => {
  test('integers', () => {
    expect(encodeJson([0, 1234, -32, -0, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER])).toBe(
      '[0, 1234, -32, 0, 9007199254740991, -9007199254740991]',
    );
    expect(encodeJson(2 ** 60)).toBe('1152921504606846976');
    expect(encodeJson(-(2 ** 63))).toBe('-9223372036854775808');
  });

  test('bigints print as decimal digits', () => {
    expect(
      encodeJson([
        BigInt('9007199254740993'),
        BigInt('9223372036854775808'),
        BigInt('18446744073709551615'),
        BigInt('-9223372036854775808'),
      ]),
    ).toBe('[9007199254740993, 9223372036854775808, 18446744073709551615, -9223372036854775808]');
  });

  test('doubles like %.17g', () => {
    const cases: Array<[number, string]> = [
      [2.5, '2.5'],
      [0.1, '0.10000000000000001'],
      [-32.12313, '-32.123130000000003'],
      [-3.22e-9, '-3.22e-09'],
      [32.43, '32.43'],
      [0.222, '0.222'],
      [1.8446744073709552e19, '1.8446744073709552e+19'],
      [-9223372036854775808, '-9.2233720368547758e+18'],
      [1e16, '10000000000000000'],
      [1e17, '1e+17'],
      [0.0001, '0.0001'],
      [0.00001, '1.0000000000000001e-05'],
      [123456.5, '123456.5'],
      [5e-324, '4.9406564584124654e-324'],
      [Number.MAX_VALUE, '1.7976931348623157e+308'],
      [1e100, '1e+100'],
      [Infinity, 'inf'],
      [-Infinity, '-inf'],
      [NaN, 'nan'],
      [-0, '-0'],
      [0, '0'],
    ];
    for (const [v, text] of cases) expect({ v, text: formatDouble(v) }).toEqual({ v, text });
  });

  test('halfway cases round to even, as printf does (JS toPrecision rounds up)', () => {
    expect(formatDouble(100000000000000.125)).toBe('100000000000000.12');
    expect(formatDouble(100000000000000.375)).toBe('100000000000000.38');
    expect(formatDouble(-100000000000000.125)).toBe('-100000000000000.12');
  });

  test('%.17g keeps every double exact (property)', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (d) => {
        const text = formatDouble(d);
        expect(Number(text)).toBe(d);
        expect(text).toMatch(/^-?(\d+(\.\d*[1-9])?|\d(\.\d*[1-9])?e[+-]\d{2,3})$/);
      }),
    );
  });

  test('plain non-integral numbers and JsonFloat print as doubles, integral numbers as integers', () => {
    expect(encodeJson([2.5, new JsonFloat(1), new JsonFloat(1e20), 1e20, new JsonFloat(-0), Infinity])).toBe(
      '[2.5, 1, 1e+20, 1e+20, -0, inf]',
    );
    expect(encodeJson({ id: new JsonFloat(2 ** 64) })).toBe('{"id": 1.8446744073709552e+19}');
  });
});

describe('QDict order (§1.1, §1.11)', () => {
  test('bucket numbers of the facts table', () => {
    const table: Record<string, number> = {
      abstract: 2, share: 3, seconds: 5, 'prealloc-context': 21, timestamp: 26, 'default-value': 30,
      reserve: 38, name: 39, extra: 41, description: 42, implements: 76, 'command-line': 82,
      'qom-type': 98, QMP: 99, prealloc: 121, 'exec-oob': 162, offset: 180, version: 184,
      'x-use-canonical-path-for-ramblock-id': 198, hugetlbsize: 204, class: 211, capabilities: 216,
      readonly: 219, minor: 225, micro: 225, qemu: 232, rom: 238, 'host-nodes': 247, enable: 252,
      path: 253, 'prealloc-threads': 265, typename: 275, paths: 290, execute: 299, property: 317,
      size: 318, package: 326, hugetlb: 348, merge: 353, event: 361, microseconds: 374, desc: 377,
      dump: 377, pmem: 381, return: 401, value: 420, type: 425, policy: 429, seal: 446, arguments: 447,
      'discard-data': 477, major: 481, 'mem-path': 486, id: 486, error: 489, foo: 490, data: 505, align: 509,
    };
    for (const [key, bucket] of Object.entries(table)) expect({ key, bucket: qdictBucket(key) }).toEqual({ key, bucket });
  });

  test('buckets of non-ASCII keys hash the UTF-8 bytes, U+0000 as C0 80', () => {
    // Checked against QEMU: "T\x01" and "42" share bucket 255.
    expect(qdictBucket('T\u0001')).toBe(255);
    expect(qdictBucket('42')).toBe(255);
    const b = qdictBucket('é');
    expect(b).toBeGreaterThanOrEqual(0);
    expect(b).toBeLessThan(512);
    expect(qdictBucket('\u0000')).not.toBe(qdictBucket(''));
  });

  test('reply, error, event and greeting shapes (§1.1)', () => {
    const q = { qdictOrder: true };
    expect(encodeJson({ id: 3, return: {} }, q)).toBe('{"return": {}, "id": 3}');
    expect(encodeJson({ error: { class: 'GenericError', desc: 'x' }, id: 'a' }, q)).toBe(
      '{"id": "a", "error": {"class": "GenericError", "desc": "x"}}',
    );
    expect(encodeJson({ event: 'STOP', data: { a: 1 }, timestamp: { seconds: 1, microseconds: 2 } }, q)).toBe(
      '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP", "data": {"a": 1}}',
    );
    const greeting = {
      QMP: { version: { qemu: { major: 10, minor: 2, micro: 50 }, package: '' }, capabilities: ['oob'] },
    };
    expect(encodeJson(greeting, q)).toBe(
      '{"QMP": {"version": {"qemu": {"micro": 50, "minor": 2, "major": 10}, "package": ""}, "capabilities": ["oob"]}}',
    );
  });

  test('within one bucket the later-inserted key comes first', () => {
    const q = { qdictOrder: true };
    expect(encodeJson({ desc: 1, dump: 2 }, q)).toBe('{"dump": 2, "desc": 1}');
    expect(encodeJson({ dump: 2, desc: 1 }, q)).toBe('{"desc": 1, "dump": 2}');
    expect(encodeJson({ id: 1, 'mem-path': 2, error: 3 }, q)).toBe('{"mem-path": 2, "id": 1, "error": 3}');
  });

  test('Memdev prints in QEMU order whatever the insertion order (§1.11)', () => {
    const memdev = { id: 'm', size: 1, merge: true, dump: true, prealloc: false, share: false, reserve: true, 'host-nodes': [], policy: 'default' };
    expect(Object.keys(JSON.parse(encodeJson(memdev, { qdictOrder: true })))).toEqual([
      'share', 'reserve', 'prealloc', 'host-nodes', 'size', 'merge', 'dump', 'policy', 'id',
    ]);
  });

  test('applies to nested objects, including inside arrays', () => {
    expect(encodeJson({ id: [{ id: 1, return: 2 }], return: { error: 1, class: 2 } }, { qdictOrder: true })).toBe(
      '{"return": {"class": 2, "error": 1}, "id": [{"return": 2, "id": 1}]}',
    );
  });
});

test('flatCopy returns the same text', () => {
  let s = '';
  for (let i = 0; i < 50; i++) s += `, "k${i}": ${i}`;
  expect(flatCopy(s)).toBe(s);
  expect(flatCopy('')).toBe('');
});

describe('long strings (quoteLong, hostmemd)', () => {
  test('quoteLong prints what the short path prints, for any UTF-16 string', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }), (s) => {
        expect(quoteLong(s)).toBe(encodeJson(s));
      }),
      { numRuns: 2000 },
    );
    for (const s of ['"\\\b\f\n\r\t\u0001\u007f', '\ud83d\ude00\udbff\udfff\ud800x\udc00\ufdd0\ufffe\u00e9']) expect(quoteLong(s)).toBe(encodeJson(s));
  });

  test('a 16 MiB non-ASCII string is quoted in well under a second per MiB', () => {
    const s = '\u00e9\u4e2d"'.repeat(LONG_QUOTE_CHARS);
    expect(encodeJson(s)).toBe('"' + '\\u00E9\\u4E2D\\"'.repeat(LONG_QUOTE_CHARS) + '"');
    const big = '\u00e9'.repeat(8 * 1024 * 1024);
    const t0 = Date.now();
    const out = encodeJson(big);
    expect(out.length).toBe(2 + 6 * big.length);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
