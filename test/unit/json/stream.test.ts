// The QMP JSON stream parser against QEMU's behaviour (qemu-facts §1.9, §2, §7.1, §7.4): message
// splitting, values, every error text, lexer recovery, the three limits, arbitrary chunking,
// and a round-trip property with json-writer. Expected texts were also checked against QEMU 7.2.
import fc from 'fast-check';
import {
  JsonStreamParser,
  StreamItem,
  MAX_NESTING,
  NESTING_ERROR,
  TOKEN_COUNT_ERROR,
  TOKEN_SIZE_ERROR,
  JsonStreamLimits,
  MAX_ECHO_BYTES,
  TOKEN_HEAP_COST,
} from '../../../src/json/stream';
import { encodeJson } from '../../../src/json/writer';
import { JsonFloat, JsonObject, JsonValue, memberKeys } from '../../../src/json/value';

/** Bytes from a string whose chars are bytes (so '\xFF' is the byte 0xFF). */
const L = (s: string): Buffer => Buffer.from(s, 'latin1');
const U = (s: string): Buffer => Buffer.from(s, 'utf8');

function parse(input: Buffer | string | Array<Buffer | string>, limits?: Partial<JsonStreamLimits>): StreamItem[] {
  const items: StreamItem[] = [];
  const p = new JsonStreamParser((it) => items.push(it), limits);
  for (const c of Array.isArray(input) ? input : [input]) p.feed(typeof c === 'string' ? L(c) : c);
  return items;
}

function parseBytewise(input: Buffer): StreamItem[] {
  const items: StreamItem[] = [];
  const p = new JsonStreamParser((it) => items.push(it));
  for (let i = 0; i < input.length; i++) p.feed(input.subarray(i, i + 1));
  return items;
}

const val = (value: JsonValue): StreamItem => ({ kind: 'value', value });
const err = (msg: string): StreamItem => ({ kind: 'error', desc: `JSON parse error, ${msg}` });
const raw = (desc: string): StreamItem => ({ kind: 'error', desc });

/** The one value a complete input yields. */
function value1(text: string | Buffer): JsonValue {
  const items = parse(text);
  expect(items).toHaveLength(1);
  const it = items[0];
  if (it.kind !== 'value') throw new Error(`expected a value, got error ${it.desc}`);
  return it.value;
}

function errors1(text: string | Buffer): string {
  const items = parse(text);
  expect(items).toHaveLength(1);
  const it = items[0];
  if (it.kind !== 'error') throw new Error(`expected an error, got ${encodeJson(it.value)}`);
  return it.desc;
}

describe('message splitting (§2.3)', () => {
  test('one value per balanced message, no newline needed, back to back', () => {
    expect(parse('{"a": 1}{"b": [2]}[3]')).toEqual([val({ a: 1 }), val({ b: [2] }), val([3])]);
    expect(parse('}{')).toEqual([err('expecting value')]); // '{' stays open
    expect(parse('}{}')).toEqual([err('expecting value'), val({})]);
  });

  test('top-level scalars are messages of their own', () => {
    expect(parse('"x" null true false 1 ')).toEqual([val('x'), val(null), val(true), val(false), val(1)]);
  });

  test('a number completes only when the next byte arrives', () => {
    const items: StreamItem[] = [];
    const p = new JsonStreamParser((it) => items.push(it));
    p.feed(L('123'));
    expect(items).toEqual([]);
    p.feed(L('\n'));
    expect(items).toEqual([val(123)]);
    p.feed(L('tru'));
    expect(items).toHaveLength(1);
    p.feed(L('e}'));
    expect(items).toEqual([val(123), val(true), err('expecting value')]);
  });

  test('whitespace is only space, TAB, CR and LF', () => {
    expect(parse(' \t\r\n{ \t"a"\r\n:\n1 }')).toEqual([val({ a: 1 })]);
    expect(parse('\x0b{}')).toEqual([err("stray '\x0b'"), val({})]);
    expect(parse('\x0c1 ')).toEqual([err("stray '\x0c'")]); // recovery swallows "1 "
  });

  test('blank input yields nothing; unbalanced input waits', () => {
    expect(parse('')).toEqual([]);
    expect(parse('\n ')).toEqual([]);
    for (const open of ['[32', '[32,', "{'abc':32", "{'abc':32,", '"abc', "'abc", '"abc\\"', '[1e', '{"a":[}']) {
      expect(parse(open)).toEqual([]);
    }
  });

  test('counts go negative: a stray closer is a complete (bad) message', () => {
    expect(parse(']')).toEqual([err('expecting value')]);
    expect(parse('[}')).toEqual([err('expecting value')]);
    expect(parse('{"a":1]')).toEqual([err('expected separator in dict')]);
    expect(parse('[1}')).toEqual([err('expected separator in list')]);
    // '}' inside an open list only balances braces: the message goes on until ']'.
    expect(parse('{"a":[}]')).toEqual([err('expecting value')]);
    expect(parse('[{]}')).toEqual([err('expecting value')]);
  });
});

describe('chunking', () => {
  const stream = U(
    '{"execute": "qmp_capabilities", "id": "a\\u00e9\\ud83d\\ude00"}\n' +
      "{'execute':'x','arguments':{'n':-12.5e3,'l':[1,[2,{}]]}}{\"id\":18446744073709551615}" +
      ' 3.25 "é😀" {]\n{\x01\n%%p [1, 2] 9007199254740993\n',
  );
  const whole = parse(stream);

  test('the sample stream gives the expected items', () => {
    expect(whole).toEqual([
      val({ execute: 'qmp_capabilities', id: 'aé😀' }),
      val({ execute: 'x', arguments: { n: new JsonFloat(-12500), l: [1, [2, {}]] } }),
      val({ id: BigInt('18446744073709551615') }),
      val(3.25),
      val('é😀'),
      err('expecting value'),
      err("stray '\x01'"),
      err("stray '%'"),
      val([1, 2]),
      val(BigInt('9007199254740993')),
    ]);
  });

  test('byte-by-byte feeding gives the same items', () => {
    expect(parseBytewise(stream)).toEqual(whole);
  });

  test('every two-way split gives the same items', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(parse([stream.subarray(0, cut), stream.subarray(cut)])).toEqual(whole);
    }
  });

  test('an object split across feeds, including inside escapes and UTF-8 sequences', () => {
    const parts = ['{"ex', 'ecute": "q\\', 'u00', 'e9\xc3', '\xa9", "id": 12', '34', '5}'];
    expect(parse(parts)).toEqual([val({ execute: 'qéé', id: 12345 })]);
  });

  test('a chunk buffer reused by the caller after feed() does not corrupt a pending token', () => {
    const items: StreamItem[] = [];
    const p = new JsonStreamParser((it) => items.push(it));
    const buf = L('{"abc');
    p.feed(buf);
    buf.fill(0x20);
    p.feed(L('def": 1}'));
    expect(items).toEqual([val({ abcdef: 1 })]);
  });
});

describe('values', () => {
  test('integers: int64, then uint64, then double (§2.5, §7.4)', () => {
    expect(value1('0 ')).toBe(0);
    expect(value1('1234 ')).toBe(1234);
    expect(value1('-32 ')).toBe(-32);
    expect(Object.is(value1('-0 '), 0)).toBe(true);
    expect(value1('9007199254740991 ')).toBe(Number.MAX_SAFE_INTEGER);
    expect(value1('-9007199254740991 ')).toBe(-Number.MAX_SAFE_INTEGER);
    expect(value1('9007199254740993 ')).toBe(BigInt('9007199254740993'));
    expect(value1('-9007199254740993 ')).toBe(BigInt('-9007199254740993'));
    expect(value1('9223372036854775807 ')).toBe(BigInt('9223372036854775807'));
    expect(value1('9223372036854775808 ')).toBe(BigInt('9223372036854775808'));
    expect(value1('18446744073709551615 ')).toBe(BigInt('18446744073709551615'));
    expect(value1('-9223372036854775808 ')).toBe(BigInt('-9223372036854775808'));
    expect(value1('18446744073709551616 ')).toEqual(new JsonFloat(18446744073709551616));
    expect(value1('-9223372036854775809 ')).toEqual(new JsonFloat(-9223372036854775808));
    expect(value1('1' + '0'.repeat(400) + ' ')).toEqual(new JsonFloat(Infinity));
  });

  test('float tokens are doubles; integral ones are JsonFloat', () => {
    expect(value1('32.43 ')).toBe(32.43);
    expect(value1('0.222 ')).toBe(0.222);
    expect(value1('-32.12313 ')).toBe(-32.12313);
    expect(value1('-32.20e-10 ')).toBe(-3.22e-9);
    expect(value1('1.0 ')).toEqual(new JsonFloat(1));
    expect(value1('1e3 ')).toEqual(new JsonFloat(1000));
    expect(value1('25E-1 ')).toBe(2.5);
    expect(value1('1e+2 ')).toEqual(new JsonFloat(100));
    const negZero = value1('-0.0 ');
    expect(negZero).toBeInstanceOf(JsonFloat);
    expect(Object.is((negZero as JsonFloat).value, -0)).toBe(true);
    expect(value1('1e400 ')).toBe(Infinity);
    expect(value1('1e-400 ')).toEqual(new JsonFloat(0));
  });

  test('QEMU lexes no exponent after a bare zero: "0e5" is 0 then keyword "e"', () => {
    expect(parse('0e5 ')).toEqual([val(0), err("invalid keyword 'e'"), val(5)]);
    expect(value1('0.5e1 ')).toEqual(new JsonFloat(5));
  });

  test('keywords; null is a value', () => {
    expect(value1('[true, false, null]')).toEqual([true, false, null]);
  });

  test('string escapes (§7.4)', () => {
    expect(value1('"\\b\\f\\n\\r\\t\\\\\\""')).toBe('\b\f\n\r\t\\"');
    expect(value1('"\\/\\\'"')).toBe("/'");
    expect(value1("'\\/\\''")).toBe("/'");
    expect(value1('"\\u0020\\u00A2\\u20AC\\uD834\\uDD1E"')).toBe(' \u00a2\u20ac\u{1d11e}');
    expect(value1('"\\u00a2\\u20ac\\ud834\\udd1e"')).toBe('\u00a2\u20ac\u{1d11e}');
    expect(value1('"\\u0000x"')).toBe('\u0000x');
    expect(value1('"\\u12345"')).toBe('\u12345');
  });

  test('both quote styles', () => {
    expect(value1(`"the bee's knees"`)).toBe("the bee's knees");
    expect(value1(`'double quote "'`)).toBe('double quote "');
  });

  test('raw UTF-8, including QEMU\'s C0 80 for U+0000 and the boundary code points', () => {
    expect(value1(U('"é€😀"'))).toBe('é€😀');
    expect(value1(L('"a\xc0\x80b"'))).toBe('a\u0000b');
    expect(value1(L('"\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbd\xf0\x90\x80\x80\xf4\x8f\xbf\xbd"'))).toBe(
      '\u0080\u07ff\u0800\ufffd\u{10000}\u{10fffd}',
    );
    expect(value1(L('"100%"'))).toBe('100%');
    expect(value1(L('"\\n\xc3\xa9\xc0\x80\\u00e9"'))).toBe('\né\u0000é');
  });

  test('objects: member order, __proto__ as an own member', () => {
    const o = value1('{"__proto__": {"polluted": 1}, "b": 2, "a": 3}') as JsonObject;
    expect(Object.keys(o)).toEqual(['__proto__', 'b', 'a']);
    expect(Object.getPrototypeOf(o)).toBe(Object.prototype);
    expect(o['__proto__']).toEqual({ polluted: 1 });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(encodeJson(o)).toBe('{"__proto__": {"polluted": 1}, "b": 2, "a": 3}');
  });

  test('keys named like Object.prototype members are ordinary keys', () => {
    expect(value1('{"constructor": 1, "hasOwnProperty": 2, "toString": 3}')).toEqual({
      constructor: 1,
      hasOwnProperty: 2,
      toString: 3,
    });
  });

  test('insertion order survives integer-like keys (memberKeys)', () => {
    const o = value1('{"T\\u0001": 1, "b": 2, "42": 3, "7": 4}') as JsonObject;
    expect(Object.keys(o)).toEqual(['7', '42', 'T\u0001', 'b']); // JavaScript's own order
    expect(memberKeys(o)).toEqual(['T\u0001', 'b', '42', '7']);
    // "T\x01" and "42" share QDict bucket 255: QEMU prints the later-inserted "42" first.
    expect(encodeJson(o, { qdictOrder: true }).indexOf('"42"')).toBeLessThan(encodeJson(o, { qdictOrder: true }).indexOf('"T'));
    delete o['b'];
    expect(memberKeys(o)).toEqual(Object.keys(o)); // stale order is not trusted
  });

  test('a large generated dict parses', () => {
    const n = 5000;
    const text = '{' + Array.from({ length: n }, (_, i) => `"k${i}": [${i}, "v${i}"]`).join(', ') + '}';
    const o = value1(text) as JsonObject;
    expect(Object.keys(o)).toHaveLength(n);
    expect(o['k4321']).toEqual([4321, 'v4321']);
  });
});

describe('errors', () => {
  test('syntax errors (§2.4)', () => {
    const cases: Array<[string, string]> = [
      ['{ "execute": }', 'expecting value'],
      ['[1,]', 'expecting value'],
      ["{'a':1,}", 'expecting value'],
      ['[32,}', 'expecting value'],
      ["{'abc':32,}", 'expecting value'],
      [':', 'expecting value'],
      [',', 'expecting value'],
      ['{,}', 'expecting value'],
      ["{32:'abc'}", 'key is not a string in object'],
      ['{1.5:1}', 'key is not a string in object'],
      ['{null:1}', 'key is not a string in object'],
      ['{true:1}', 'key is not a string in object'],
      ['{{}:1}', 'key is not a string in object'],
      ['{[1]:1}', 'key is not a string in object'],
      ["{'a' 1}", 'missing : in object pair'],
      ['{"a"}', 'missing : in object pair'],
      ["{'a':1 'b':2}", 'expected separator in dict'],
      ['[1 2]', 'expected separator in list'],
      ['{"a":1,"a":2}', 'duplicate key'],
      ['{"a":1,"b":{"a":2},"b":3}', 'duplicate key'],
      ['truer ', "invalid keyword 'truer'"],
      ['nul ', "invalid keyword 'nul'"],
      ['{truer:1}', "invalid keyword 'truer'"],
      ['[nulll]', "invalid keyword 'nulll'"],
    ];
    for (const [text, msg] of cases) expect({ text, items: parse(text) }).toEqual({ text, items: [err(msg)] });
  });

  test('the first error in QEMU\'s parse order wins', () => {
    // The value is parsed before the duplicate check, and a bad key container before its use.
    expect(errors1('{"a":1,"a":{"b" 1}}')).toBe('JSON parse error, missing : in object pair');
    expect(errors1('{"a":1,"a":truer}')).toBe("JSON parse error, invalid keyword 'truer'");
    expect(errors1('{[1 2]:1}')).toBe('JSON parse error, expected separator in list');
    expect(errors1('{"a":"\\z", "a": 1}')).toBe('JSON parse error, invalid escape sequence in string');
    expect(errors1('["\\uD800", "\\z"]')).toBe('JSON parse error, \\uD800 is not a valid Unicode character');
  });

  test('a syntax error is reported only when the message completes, after a later lexical error', () => {
    expect(parse('{"a" 1, ')).toEqual([]);
    expect(parse('{"a" 1, \x01')).toEqual([err("stray '\x01'")]);
    expect(parse('{"a" 1, "b": 2}')).toEqual([err('missing : in object pair')]);
  });

  test('escape errors (§7.4)', () => {
    const cases: Array<[string, string]> = [
      ['"\\z"', 'invalid escape sequence in string'],
      ['"\\x41"', 'invalid escape sequence in string'],
      ['"\\ux"', '\\ux" is not a valid Unicode character'],
      ['"\\u1x"', '\\u1x" is not a valid Unicode character'],
      ['"\\u12x"', '\\u12x" is not a valid Unicode character'],
      ['"\\u123x"', '\\u123x is not a valid Unicode character'],
      ['"\\u12"', '\\u12" is not a valid Unicode character'],
      ['"\\uD800"', '\\uD800 is not a valid Unicode character'],
      ['"\\uDC00"', '\\uDC00 is not a valid Unicode character'],
      ['"\\uD800\\uCAFE"', '\\uD800 is not a valid Unicode character'],
      ['"\\uDC00\\uD800"', '\\uDC00 is not a valid Unicode character'],
      ['"\\uD800\\u12"', '\\uD800 is not a valid Unicode character'],
      ['"\\uFDD0"', '\\uFDD0 is not a valid Unicode character'],
      ['"\\uFDEF"', '\\uFDEF is not a valid Unicode character'],
      ['"\\uFFFE"', '\\uFFFE is not a valid Unicode character'],
      ['"\\uD83F\\uDFFE"', '\\uD83F\\uDFFE is not a valid Unicode character'],
      ['"\\uDBFF\\uDFFF"', '\\uDBFF\\uDFFF is not a valid Unicode character'],
      ['"\\u00\xc3\xa9"', '\\u00\u00e9 is not a valid Unicode character'],
    ];
    for (const [text, msg] of cases) expect({ text, items: parse(text) }).toEqual({ text, items: [err(msg)] });
  });

  test('a lone backslash escapes the closing quote, leaving the string open', () => {
    const items: StreamItem[] = [];
    const p = new JsonStreamParser((it) => items.push(it));
    p.feed(L('"\\"'));
    expect(items).toEqual([]);
    p.feed(L('"'));
    expect(items).toEqual([val('"')]);
  });

  test('invalid raw UTF-8 in strings (Markus Kuhn cases, §2.4)', () => {
    const bad = [
      '\x80', // stray continuation byte
      '\xbf\x80',
      '\xc3', // truncated
      '\xe2\x82',
      '\xc0\xaf', // overlong '/'
      '\xe0\x80\xaf',
      '\xf0\x80\x80\xaf',
      '\xc1\xbf',
      '\xed\xa0\x80', // encoded surrogates
      '\xed\xbf\xbf',
      '\xef\xbf\xbe', // noncharacters
      '\xef\xbf\xbf',
      '\xef\xb7\x90',
      '\xf0\x9f\xbf\xbf',
      '\xf4\x90\x80\x80', // above U+10FFFF
      '\xf8\x88\x80\x80\x80', // 5- and 6-byte forms
      '\xfc\x84\x80\x80\x80\x80',
    ];
    for (const b of bad) {
      expect({ b, items: parse(L(`"a${b}z"`)) }).toEqual({ b, items: [err('invalid UTF-8 sequence in string')] });
      expect({ b, items: parse(L(`['\\n${b}']`)) }).toEqual({ b, items: [err('invalid UTF-8 sequence in string')] });
    }
  });

  test('lexical errors name the token so far, bad byte included (§2.2)', () => {
    expect(parse('@')).toEqual([err("stray '@'")]);
    expect(parse('True')).toEqual([err("stray 'T'")]);
    expect(parse('00')).toEqual([err("stray '00'")]);
    expect(parse('-01')).toEqual([err("stray '-01'")]);
    expect(parse('-x')).toEqual([err("stray '-x'")]);
    expect(parse('1.x')).toEqual([err("stray '1.x'")]);
    expect(parse('1.e5')).toEqual([err("stray '1.e'")]);
    expect(parse('1e+]')).toEqual([err("stray '1e+]'")]);
    expect(parse('{\x01')).toEqual([err("stray '\x01'")]);
    expect(parse('{\xff')).toEqual([err("stray '\ufffd'")]);
    expect(parse("{'bad \xff")).toEqual([err("stray ''bad \ufffd'")]);
    expect(parse("{'execute': 'nonexistent', 'id':'\n")).toEqual([err("stray ''\n'")]);
    // Invalid UTF-8 in the text becomes U+FFFD per QEMU sequence (one for ED A0 80), a NUL ends it.
    expect(parse('"\xed\xa0\x80\xc3\n')).toEqual([err(`stray '"\ufffd\ufffd\n'`)]);
    expect(parse('"\xc3\xa9\xf0\x9f\x98\x80\t')).toEqual([err(`stray '"é😀\t'`)]);
    expect(parse('{"a\x00')).toEqual([err(`stray '"a'`)]);
    expect(parse('\x00')).toEqual([err(`stray ''`)]);
    // 0xFE/0xFF are never allowed, not even inside strings.
    expect(parse('"a\xfeb"')).toEqual([err(`stray '"a\ufffd'`)]);
  });

  test('[0\\xFF] (§7.4): the number ends, then the stray byte, then "]" alone', () => {
    expect(parse('[0\xff]')).toEqual([err("stray '\ufffd'"), err('expecting value')]);
  });

  test('multiple values and a stray closer (§7.4)', () => {
    expect(parse('false true ')).toEqual([val(false), val(true)]);
    expect(parse('} true ')).toEqual([err('expecting value'), val(true)]);
  });
});

describe('recovery after malformed input (§1.9, §7.1)', () => {
  const next = "{ 'execute': 'no-such-cmd' }";
  const malformed: Array<[string, string]> = [
    ['{]\n', 'JSON parse error, expecting value'],
    ['{\xff', "JSON parse error, stray '\ufffd'"],
    ['{\x01', "JSON parse error, stray '\x01'"],
    ["{'bad \xff", "JSON parse error, stray ''bad \ufffd'"],
    ["{'execute': 'nonexistent', 'id':'\n", "JSON parse error, stray ''\n'"],
    ['%%p', "JSON parse error, stray '%'"],
  ];
  test.each(malformed)('%j yields one error, then the next command parses', (bad, desc) => {
    expect(parse(L(bad + next))).toEqual([raw(desc), val({ execute: 'no-such-cmd' })]);
    expect(parseBytewise(L(bad + next))).toEqual([raw(desc), val({ execute: 'no-such-cmd' })]);
  });

  test('recovery swallows ordinary bytes silently and resyncs on structural characters', () => {
    expect(parse('@abc"def\'ghi 12 true}')).toEqual([err("stray '@'"), err('expecting value')]);
    expect(parse('@abc[1]')).toEqual([err("stray '@'"), val([1])]);
    expect(parse('@x:')).toEqual([err("stray '@'"), err('expecting value')]);
  });

  test('recovery resyncs on control characters other than TAB and on 0xFE/0xFF', () => {
    expect(parse('@a\tb\n1 ')).toEqual([err("stray '@'"), val(1)]);
    expect(parse('@a\x01')).toEqual([err("stray '@'"), err("stray '\x01'")]);
    expect(parse('@a\xff\xfe')).toEqual([err("stray '@'"), err("stray '\ufffd'"), err("stray '\ufffd'")]);
  });

  test('a resync byte sent while idle costs exactly one error', () => {
    expect(parse('\xff{"execute": "x"}')).toEqual([err("stray '\ufffd'"), val({ execute: 'x' })]);
  });

  test('a lexical error drops the message being collected', () => {
    // Recovery swallows ' "y"', then the "}" resyncs and is a (bad) message of its own.
    expect(parse('{"execute": "x", "id": 1, @ "y"}{"id": 2}')).toEqual([err("stray '@'"), err('expecting value'), val({ id: 2 })]);
  });
});

describe('limits (§2.1)', () => {
  test('nesting 1024 is accepted', () => {
    const ok = '['.repeat(MAX_NESTING) + ']'.repeat(MAX_NESTING);
    const items = parse(ok);
    expect(items).toHaveLength(1);
    let v = (items[0] as { value: JsonValue }).value;
    let depth = 0;
    while (Array.isArray(v)) {
      depth++;
      v = v[0] ?? null;
    }
    expect(depth).toBe(MAX_NESTING);
  });

  test('nesting 1025: one error at the 1025th opener, then each closer is a message of its own', () => {
    const items = parse('['.repeat(1025) + ']'.repeat(1025));
    expect(items[0]).toEqual(raw(NESTING_ERROR));
    expect(items.slice(1)).toEqual(Array(1025).fill(err('expecting value')));
  });

  test('nesting counts braces and brackets together, and the cascade lexes everything after', () => {
    const items = parse('{"a":'.repeat(600) + '['.repeat(425) + '1' + ']'.repeat(425) + '}'.repeat(600));
    expect(items[0]).toEqual(raw(NESTING_ERROR));
    // After the error: "1" is a value, then 425 "]" and 600 "}" each fail.
    expect(items.slice(1)).toEqual([val(1), ...Array(1025).fill(err('expecting value'))]);
    expect(parse('{"a":'.repeat(600) + '['.repeat(424) + '1' + ']'.repeat(424) + '}'.repeat(600))).toHaveLength(1);
  });

  test('a smaller injected nesting limit', () => {
    expect(parse('[[1]]', { maxNesting: 2 })).toEqual([val([[1]])]);
    expect(parse('[[[1]]]', { maxNesting: 2 })).toEqual([
      raw(NESTING_ERROR),
      val(1),
      err('expecting value'),
      err('expecting value'),
      err('expecting value'),
    ]);
  });

  test('token count: N tokens per message are fine, N + 1 are not', () => {
    // [1,2] is 5 tokens.
    expect(parse('[1,2]', { maxTokenCount: 5 })).toEqual([val([1, 2])]);
    // The 6th token ("3") is refused and dropped; "]" then stands alone.
    expect(parse('[1,2,3]', { maxTokenCount: 5 })).toEqual([raw(TOKEN_COUNT_ERROR), err('expecting value')]);
    // The count is per message.
    expect(parse('[1,2][3,4]', { maxTokenCount: 5 })).toEqual([val([1, 2]), val([3, 4])]);
  });

  test('token size: one token longer than the limit is dropped while being lexed', () => {
    // With limit 8 the lexer refuses the 9th byte of a token ("h" of "abcdefgh...) and lexes
    // the rest afresh: here the keyword "ij", ended by the quote that opens a new string.
    expect(parse('"abcdefghij"', { maxTokenSize: 8 })).toEqual([raw(TOKEN_SIZE_ERROR), err("invalid keyword 'ij'")]);
    expect(parse('"abcdefgh"ij ', { maxTokenSize: 8 })).toEqual([raw(TOKEN_SIZE_ERROR)]); // '"ij ' stays open
    expect(parse('123456789 12 ', { maxTokenSize: 8 })).toEqual([raw(TOKEN_SIZE_ERROR), val(12)]);
    expect(parse('123456789012 ', { maxTokenSize: 8 })).toEqual([raw(TOKEN_SIZE_ERROR), err("stray '01'")]);
    expect(parse('abcdefghijk ', { maxTokenSize: 8 })).toEqual([raw(TOKEN_SIZE_ERROR), err("invalid keyword 'jk'")]);
  });

  test('token size: the token bytes of one message, plus one, must not exceed the limit', () => {
    // "abcdef" is 8 bytes: 8 + 1 > 8 although the lexer accepted it.
    expect(parse('"abcde" ', { maxTokenSize: 8 })).toEqual([val('abcde')]);
    expect(parse('"abcdef" ', { maxTokenSize: 8 })).toEqual([raw(TOKEN_SIZE_ERROR)]);
    // [ "ab" , "cd" ]: 1 + 4 + 1 + 4 + 1 = 11 token bytes; whitespace does not count.
    expect(parse('[ "ab" , "cd" ]', { maxTokenSize: 12 })).toEqual([val(['ab', 'cd'])]);
    expect(parse('[ "ab" , "cd" ]', { maxTokenSize: 11 })).toEqual([raw(TOKEN_SIZE_ERROR)]); // at "]"
  });

  test('the oversized token is detected across feeds too', () => {
    const items: StreamItem[] = [];
    const p = new JsonStreamParser((it) => items.push(it), { maxTokenSize: 8 });
    for (const c of ['"abc', 'def', 'gh', 'ij"']) p.feed(L(c));
    expect(items[0]).toEqual(raw(TOKEN_SIZE_ERROR));
  });

  test('the default limits are QEMU\'s', () => {
    const deep = parse('['.repeat(MAX_NESTING + 1));
    expect(deep).toEqual([raw(NESTING_ERROR)]);
  });
});

describe('reset()', () => {
  test('discards a partial token and message (disconnect, §1.7)', () => {
    const items: StreamItem[] = [];
    const p = new JsonStreamParser((it) => items.push(it));
    p.feed(L('{"execute":"query-na'));
    p.reset();
    p.feed(L('me"}\n'));
    expect(items).toEqual([err("invalid keyword 'me'"), err(`stray '"}\n'`)]);
  });

  test('reset from the callback drops the rest of the chunk', () => {
    const items: StreamItem[] = [];
    const p: JsonStreamParser = new JsonStreamParser((it) => {
      items.push(it);
      p.reset();
    });
    p.feed(L('{"a": 1}{"b": 2}{"c'));
    expect(items).toEqual([val({ a: 1 })]);
    p.feed(L('{"d": 4}'));
    expect(items).toEqual([val({ a: 1 }), val({ d: 4 })]);
  });
});

// ---- round trip with the writer

/** Strings the writer prints without loss: no lone surrogates, no noncharacters. */
function isClean(s: string): boolean {
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    if ((cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  }
  return true;
}
const cleanString = fc.string({ unit: 'binary', maxLength: 12 }).filter(isClean);

const { value: jsonValue } = fc.letrec<{ value: JsonValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.maxSafeInteger(),
    fc.oneof(
      fc.bigInt({ min: BigInt(Number.MAX_SAFE_INTEGER) + BigInt(1), max: (BigInt(1) << BigInt(64)) - BigInt(1) }),
      fc.bigInt({ min: -(BigInt(1) << BigInt(63)), max: -BigInt(Number.MAX_SAFE_INTEGER) - BigInt(1) }),
    ),
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
    // Integral doubles print as integers below 1e17 (and then re-parse as integers, as in QEMU).
    fc
      .tuple(fc.boolean(), fc.double({ min: 1e17, max: Number.MAX_VALUE, noNaN: true }))
      .map(([neg, d]) => new JsonFloat(neg ? -d : d)),
    cleanString,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(cleanString, tie('value'), { maxKeys: 4 }),
  ),
}));

describe('round trip with encodeJson (property)', () => {
  test('encoded values, concatenated and split anywhere, parse back to the same values', () => {
    fc.assert(
      fc.property(
        fc.array(jsonValue, { minLength: 1, maxLength: 6 }),
        fc.array(fc.constantFrom(' ', '\n', '\r\n', '\t'), { minLength: 6, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.boolean(),
        (values, seps, cuts, qdictOrder) => {
          const text = values.map((v, i) => encodeJson(v, { qdictOrder }) + seps[i]).join('');
          const bytes = Buffer.from(text, 'latin1'); // the writer's output is pure ASCII
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const chunks: Buffer[] = [];
          let at = 0;
          for (const p of points) {
            chunks.push(bytes.subarray(at, p));
            at = p;
          }
          chunks.push(bytes.subarray(at));
          const items = parse(chunks);
          expect(items).toEqual(values.map(val));
        },
      ),
      { numRuns: 300 },
    );
  });

  test('encode(parse(x)) is stable', () => {
    // In insertion order. (QDict order is not a fixed point: two keys of one hash bucket come
    // out later-inserted first, so re-parsing and re-encoding swaps them back, as QEMU would.)
    fc.assert(
      fc.property(jsonValue, (v) => {
        const once = encodeJson(v);
        const again = encodeJson(value1(once + ' '));
        expect(again).toBe(once);
      }),
      { numRuns: 300 },
    );
  });
});

describe('atBoundary (daemon handover moves the rest of a stream to another parser)', () => {
  test('wherever it is true, the rest of the input fed to a fresh parser gives the same items', () => {
    const junk = fc.constantFrom('}', ']', '{"a" 1}', "'x", '"\\q"', '[1,', '\x00', 'tru');
    fc.assert(
      fc.property(fc.array(fc.oneof(jsonValue.map((v) => encodeJson(v)), junk), { minLength: 1, maxLength: 5 }), fc.array(fc.constantFrom(' ', '\n', ''), { minLength: 5, maxLength: 5 }), (parts, seps) => {
        const bytes = Buffer.from(parts.map((p, i) => p + seps[i]).join(''), 'latin1');
        const whole = parse(bytes);
        const items: StreamItem[] = [];
        const p = new JsonStreamParser((it) => items.push(it));
        for (let i = 0; i < bytes.length; i++) {
          p.feed(bytes.subarray(i, i + 1));
          if (p.atBoundary) {
            const before = items.length;
            expect([...items, ...parse(bytes.subarray(i + 1))]).toEqual(whole);
            expect(items.length).toBe(before);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  test('false inside a message, a string, a number or a keyword; true between messages', () => {
    const p = new JsonStreamParser(() => undefined);
    expect(p.atBoundary).toBe(true);
    for (const [chunk, at] of [['{"execute": "qu', false], ['ery-version"', false], ['}', true], ['  ', true], ['1', false], ['2 ', true], ['tr', false], ['ue', false], [' ', true]] as const) {
      p.feed(L(chunk));
      expect([chunk, p.atBoundary]).toEqual([chunk, at]);
    }
  });
});

describe('bounded error texts and input cost (hostmemd, not QEMU)', () => {
  test('a bad token up to MAX_ECHO_BYTES is echoed whole, as QEMU does', () => {
    const tok = '"' + 'a'.repeat(MAX_ECHO_BYTES - 2) + '\x01';
    expect(Buffer.byteLength(tok, 'latin1')).toBe(MAX_ECHO_BYTES);
    expect(parse(tok)).toEqual([err(`stray '${tok}'`)]);
  });

  test('a longer one is echoed as its first MAX_ECHO_BYTES bytes and "..."', () => {
    const tok = '"' + 'a'.repeat(MAX_ECHO_BYTES) + '\x01';
    expect(parse(tok)).toEqual([err(`stray '${tok.slice(0, MAX_ECHO_BYTES)}...'`)]);
    // Split across chunks, the head comes from the held bytes and from the last chunk.
    const parts = [tok.slice(0, 100), tok.slice(100, 700), tok.slice(700)];
    expect(parse(parts)).toEqual([err(`stray '${tok.slice(0, MAX_ECHO_BYTES)}...'`)]);
    expect(parseBytewise(L(tok))).toEqual([err(`stray '${tok.slice(0, MAX_ECHO_BYTES)}...'`)]);
  });

  test('the attack: 4 MiB of 0x80 then a control byte gives a short error, quickly', () => {
    const input = Buffer.concat([L('{"execute":"query-version","id":"'), Buffer.alloc(4 << 20, 0x80), L('\x01')]);
    const t0 = Date.now();
    const items = parse(input);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(items).toHaveLength(1);
    const desc = (items[0] as { desc: string }).desc;
    expect(desc).toBe(`JSON parse error, stray '"${'\ufffd'.repeat(MAX_ECHO_BYTES - 1)}...'`);
  });

  test('a multi-byte sequence split by the cut is left out, not shown as U+FFFD', () => {
    const tok = '"' + 'a'.repeat(MAX_ECHO_BYTES - 2) + '\xc3\xa9\x01'; // é straddles the cut
    expect(parse(tok)).toEqual([err(`stray '"${'a'.repeat(MAX_ECHO_BYTES - 2)}...'`)]);
  });

  test('an invalid keyword longer than MAX_ECHO_BYTES is cut too', () => {
    expect(parse('x'.repeat(5000) + ' ')).toEqual([err(`invalid keyword '${'x'.repeat(MAX_ECHO_BYTES)}...'`)]);
    expect(parse('xyz ')).toEqual([err("invalid keyword 'xyz'")]);
  });

  test('integers beyond uint64 become doubles without BigInt parsing, even 4 MB long', () => {
    expect(value1('10000000000000000000000 ')).toEqual(new JsonFloat(1e22));
    expect(value1('-1000000000000000000000 ')).toEqual(new JsonFloat(-1e21));
    const t0 = Date.now();
    expect(value1('9'.repeat(4_000_000) + ' ')).toEqual(new JsonFloat(Infinity));
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  test('unfinishedCost: zero between messages, grows with tokens and held bytes', () => {
    const p = new JsonStreamParser(() => undefined);
    expect(p.unfinishedCost).toBe(0);
    p.feed(L('[{},{},'));
    expect(p.unfinishedCost).toBe(7 * 2 + 7 * TOKEN_HEAP_COST);
    p.feed(L('"abcd'));
    expect(p.unfinishedCost).toBe(5 + 7 * 2 + 7 * TOKEN_HEAP_COST);
    p.feed(L('"]'));
    expect(p.unfinishedCost).toBe(0);
    p.feed(L('{"a": '.repeat(3)));
    expect(p.unfinishedCost).toBeGreaterThan(0);
    p.reset();
    expect(p.unfinishedCost).toBe(0);
  });
});
