// Long values handled a part per event-loop turn (issue 13): a string token decoded as its
// chunks arrive must give the value or error the whole token gives, and a value printed in
// pieces must be exactly encodeJson's (and a reply exactly encodeReply's) text.
import { JsonStreamParser, StreamItem, STRING_PART_BYTES, MAX_ECHO_BYTES } from '../../../src/json/stream';
import { encodeJson, encodeJsonPieces, encodingIsLarge, PIECE_CHARS } from '../../../src/json/writer';
import { JsonValue, longParts } from '../../../src/json/value';
import { encodeReply, encodeReplyPieces } from '../../../src/qmp/session';
import type { Reply } from '../../../src/qmp/messages';

/** A small seeded PRNG (mulberry32): failures name the seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Pieces of string content: plain, multi-byte, escapes (good and bad), broken UTF-8, U+0000.
const GOOD = ['a', 'xyz ', 'é', '€', '😀', '\\n', '\\"', '\\\\', '\\u00e9', '\\ud83d\\ude00', '\\/', '\xc0\x80'];
const BAD = ['\x80', '\xe2\x82', '\\q', '\\ud800x', '\\u12', '\xed\xa0\x80', '\xef\xbf\xbe', '\x01'];

function content(r: () => number, bytes: number, bad: boolean): Buffer {
  const parts: Buffer[] = [];
  let n = 0;
  let badAt = bad ? Math.floor(r() * bytes) : -1;
  while (n < bytes) {
    let s: string;
    if (badAt >= 0 && n >= badAt) {
      s = BAD[Math.floor(r() * BAD.length)];
      badAt = -1;
    } else if (r() < 0.5) s = 'p'.repeat(1 + Math.floor(r() * 300));
    else s = GOOD[Math.floor(r() * GOOD.length)];
    const b = Buffer.from(s, s === '😀' || s === 'é' || s === '€' ? 'utf8' : 'latin1');
    parts.push(b);
    n += b.length;
  }
  return Buffer.concat(parts);
}

function parseChunks(chunks: Buffer[]): StreamItem[] {
  const items: StreamItem[] = [];
  const p = new JsonStreamParser((it) => items.push(it));
  for (const c of chunks) p.feed(c);
  return items;
}

/** Splits b at random points, pieces no longer than `max`. */
function split(r: () => number, b: Buffer, max: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; ) {
    const n = 1 + Math.floor(r() * max);
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('long strings decoded as they arrive', () => {
  test('same values and errors as the whole token, whatever the chunking (200 cases)', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const bytes = STRING_PART_BYTES + Math.floor(r() * 3 * STRING_PART_BYTES);
      const body = content(r, bytes, r() < 0.4);
      const asKey = r() < 0.3;
      const msg = Buffer.concat([Buffer.from(asKey ? '{"execute": "x", "' : '{"execute": "x", "id": "'), body, Buffer.from(asKey ? '": 1}' : '"}'), Buffer.from('{"execute": "y"}')]);
      const whole = parseChunks([msg]);
      const sliced = parseChunks(split(r, msg, r() < 0.5 ? 64 * 1024 : 20_000));
      expect({ seed, items: sliced }).toEqual({ seed, items: whole });
    }
  });

  test('a long string cut by a control byte echoes its first bytes, as a whole token does', () => {
    const msg = Buffer.concat([Buffer.from('{"execute": "x", "id": "'), Buffer.alloc(5 * STRING_PART_BYTES, 0x80), Buffer.from([0x01]), Buffer.from('{"execute": "y"}')]);
    const whole = parseChunks([msg]);
    expect(parseChunks(split(rng(7), msg, 64 * 1024))).toEqual(whole);
    expect(whole[0].kind === 'error' && whole[0].desc.length).toBeLessThan(MAX_ECHO_BYTES * 3 + 100);
  });

  test('the token size limit counts the bytes already decoded', () => {
    const limits = { maxTokenSize: 3 * STRING_PART_BYTES };
    const msg = Buffer.concat([Buffer.from('["'), Buffer.alloc(4 * STRING_PART_BYTES, 'a'), Buffer.from('"]')]);
    const items: StreamItem[] = [];
    const p = new JsonStreamParser((it) => items.push(it), limits);
    for (const c of split(rng(3), msg, 64 * 1024)) p.feed(c);
    expect(items[0]).toEqual({ kind: 'error', desc: 'JSON token size limit exceeded' });
  });

  test('a long id keeps its parts, and is printed from them exactly as encodeJson prints it', () => {
    for (const unit of ['é', '😀', 'a\\u00e9\\n', 'x']) {
      const msg = Buffer.from(`{"execute": "x", "id": "${unit.repeat(3 * STRING_PART_BYTES)}", "z": 1}`);
      const items = parseChunks(split(rng(5), msg, 64 * 1024));
      expect(items.length).toBe(1);
      const v = (items[0] as { value: Record<string, JsonValue> }).value;
      const parts = longParts(v, 'id');
      expect(parts !== undefined && parts.length).toBeGreaterThan(2);
      expect([...encodeJsonPieces(v.id, {}, parts)].join('')).toBe(encodeJson(v.id));
      expect(longParts(v, 'z')).toBeUndefined();
      v.id = 'other';
      expect(longParts(v, 'id')).toBeUndefined();
    }
  });

  test('unfinishedCost counts the decoded part', () => {
    const p = new JsonStreamParser(() => undefined);
    p.feed(Buffer.from('["'));
    p.feed(Buffer.alloc(4 * STRING_PART_BYTES, 'a'));
    expect(p.unfinishedCost).toBeGreaterThanOrEqual(4 * STRING_PART_BYTES);
  });
});

describe('values printed in pieces', () => {
  const cases: [string, JsonValue][] = [
    ['long ASCII', 'x'.repeat(3 * PIECE_CHARS + 5)],
    ['long non-ASCII', 'é€'.repeat(2 * PIECE_CHARS)],
    // A surrogate pair across every piece boundary, lone surrogates, noncharacters, controls.
    ['surrogates', 'a'.repeat(PIECE_CHARS - 1) + '😀'.repeat(PIECE_CHARS) + '\ud800' + '\udc00x' + '\ufffe\u0001"\\'],
    ['pair split by the cut', 'b'.repeat(PIECE_CHARS - 1) + '\ud83d\ude00' + 'c'.repeat(PIECE_CHARS)],
    ['many members', { a: Array.from({ length: PIECE_CHARS / 2 }, (_, i) => (i % 3 === 0 ? i : i % 3 === 1 ? 's' + i : [i, { k: 'v' }])), '12': 'x'.repeat(PIECE_CHARS), z: null }],
  ];
  test.each(cases)('%s: the pieces make encodeJson\'s text', (_name, v) => {
    expect(encodingIsLarge(v)).toBe(true);
    expect([...encodeJsonPieces(v, { qdictOrder: true })].join('')).toBe(encodeJson(v, { qdictOrder: true }));
    expect([...encodeJsonPieces(v)].join('')).toBe(encodeJson(v));
    const replies: Reply[] = [
      { hasId: true, id: v, result: { qemu: { major: 7 } } },
      { hasId: true, id: v, error: { class: 'GenericError', desc: 'x' } },
    ];
    for (const reply of replies) {
      expect([...encodeReplyPieces(reply)].join('')).toBe(encodeReply(reply));
    }
  });

  test('small ids are not large', () => {
    expect(encodingIsLarge(1)).toBe(false);
    expect(encodingIsLarge('abc'.repeat(100))).toBe(false);
    expect(encodingIsLarge({ a: [1, 2, 3] })).toBe(false);
  });
});
