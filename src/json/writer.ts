// QMP output: JSON values to text exactly as QEMU's json-writer prints them (qemu-facts §1.1):
// compact `{"a": 1, "b": [1, 2]}`, pure ASCII with uppercase \uXXXX escapes, doubles as C's
// %.17g, and optionally members in QDict hash-bucket order (§1.11). Framing (CRLF) and message
// shapes are the session's job; parsing is stream.ts's.
import { JsonFloat, JsonValue, memberKeys } from './value';

/** QDict hash table size (qobject/qdict.c QDICT_BUCKET_MAX, §1.1). */
export const QDICT_BUCKETS = 512;

export interface EncodeOptions {
  /** Print every object's members in the order a QEMU QDict iterates them (§1.1). */
  qdictOrder?: boolean;
}

/**
 * Encodes a value as QEMU would. Object members whose value is `undefined` are left out (an
 * absent optional member). Members are taken in insertion order (memberKeys(): parsed objects
 * remember it even for integer-like keys, which Object.keys() would list first).
 * @throws TypeError for values that are not JSON (functions, symbols).
 */
export function encodeJson(v: JsonValue, opts?: EncodeOptions): string {
  return enc(v, opts?.qdictOrder === true);
}

function enc(v: JsonValue | undefined, qdict: boolean): string {
  switch (typeof v) {
    case 'string':
      return quote(v);
    case 'number':
      return formatNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return v.toString(); // int64 as %PRId64, uint64 as %PRIu64
    case 'undefined':
      return 'null';
    case 'object': {
      if (v === null) return 'null';
      if (v instanceof JsonFloat) return formatDouble(v.value);
      if (Array.isArray(v)) {
        const n = v.length;
        if (n === 0) return '[]';
        let out = '[' + enc(v[0], qdict);
        for (let i = 1; i < n; i++) out += ', ' + enc(v[i], qdict);
        return out + ']';
      }
      let keys = memberKeys(v);
      if (qdict && keys.length > 1) keys = qdictKeyOrder(keys);
      let out = '';
      for (const k of keys) {
        const m = v[k];
        if (m === undefined) continue;
        out += (out === '' ? '{' : ', ') + quote(k) + ': ' + enc(m, qdict);
      }
      return out === '' ? '{}' : out + '}';
    }
    default:
      throw new TypeError(`encodeJson: cannot encode a ${typeof v}`);
  }
}

/**
 * A flat copy of encoded text that is kept for long (a cache). encodeJson builds its result by
 * concatenation, which V8 keeps as a tree of string pieces (a "rope"): a 200-character Memdev
 * held that way costs ~1.4 KB instead of ~0.2 KB. The output is ASCII, so latin1 is lossless.
 */
export function flatCopy(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}

// ---- strings (json-writer.c quoted_str)

/** Printable ASCII other than `"` and `\`: printed as is. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const HEX = '0123456789ABCDEF';

function u4(c: number): string {
  return '\\u' + HEX[(c >> 12) & 15] + HEX[(c >> 8) & 15] + HEX[(c >> 4) & 15] + HEX[c & 15];
}

/** Strings at least this long are quoted into a buffer (quoteLong): concatenating millions of
 *  escapes took seconds for a huge non-ASCII id echoed in a reply. */
export const LONG_QUOTE_CHARS = 4096;

function quote(s: string): string {
  if (PLAIN.test(s)) return '"' + s + '"';
  if (s.length >= LONG_QUOTE_CHARS) return quoteLong(s);
  let out = '"';
  let run = 0; // start of characters not yet copied
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) continue;
    if (run < i) out += s.slice(run, i);
    run = i + 1;
    switch (c) {
      case 0x22:
        out += '\\"';
        continue;
      case 0x5c:
        out += '\\\\';
        continue;
      case 0x08:
        out += '\\b';
        continue;
      case 0x0c:
        out += '\\f';
        continue;
      case 0x0a:
        out += '\\n';
        continue;
      case 0x0d:
        out += '\\r';
        continue;
      case 0x09:
        out += '\\t';
        continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        // Astral character: a surrogate pair, unless it is a noncharacter (U+xFFFE/U+xFFFF),
        // which QEMU's decoder rejects and prints as U+FFFD.
        i++;
        run = i + 1;
        out += (d & 0x3fe) === 0x3fe && (c & 0x3f) === 0x3f ? '\\uFFFD' : u4(c) + u4(d);
        continue;
      }
    }
    // Lone surrogates and noncharacters are not valid UTF-8 for QEMU either: U+FFFD.
    if ((c >= 0xd800 && c <= 0xdfff) || (c >= 0xfdd0 && c <= 0xfdef) || c >= 0xfffe) out += '\\uFFFD';
    else out += u4(c);
  }
  if (run < n) out += s.slice(run);
  return out + '"';
}

/** What quote() prints, for a long string: the exact length first, then the bytes (ASCII). */
export function quoteLong(s: string): string {
  return '"' + quoteBody(s) + '"';
}

/** quote() without the quotes, into a buffer sized first. */
function quoteBody(s: string): string {
  const n = s.length;
  let len = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) len += c === 0x22 || c === 0x5c ? 2 : 1;
    else if (c === 0x08 || c === 0x0c || c === 0x0a || c === 0x0d || c === 0x09) len += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      const d = s.charCodeAt(++i);
      len += (d & 0x3fe) === 0x3fe && (c & 0x3f) === 0x3f ? 6 : 12;
    } else len += 6;
  }
  const b = Buffer.allocUnsafe(len);
  let o = 0;
  const esc = (x: number): void => {
    b[o++] = 0x5c;
    b[o++] = x;
  };
  const u = (c: number): void => {
    b[o++] = 0x5c;
    b[o++] = 0x75;
    b[o++] = HEX.charCodeAt((c >> 12) & 15);
    b[o++] = HEX.charCodeAt((c >> 8) & 15);
    b[o++] = HEX.charCodeAt((c >> 4) & 15);
    b[o++] = HEX.charCodeAt(c & 15);
  };
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) {
      if (c === 0x22 || c === 0x5c) esc(c);
      else b[o++] = c;
      continue;
    }
    switch (c) {
      case 0x08:
        esc(0x62);
        continue;
      case 0x0c:
        esc(0x66);
        continue;
      case 0x0a:
        esc(0x6e);
        continue;
      case 0x0d:
        esc(0x72);
        continue;
      case 0x09:
        esc(0x74);
        continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      const d = s.charCodeAt(++i);
      if ((d & 0x3fe) === 0x3fe && (c & 0x3f) === 0x3f) u(0xfffd);
      else {
        u(c);
        u(d);
      }
      continue;
    }
    if ((c >= 0xd800 && c <= 0xdfff) || (c >= 0xfdd0 && c <= 0xfdef) || c >= 0xfffe) u(0xfffd);
    else u(c);
  }
  return b.toString('latin1');
}

// ---- incremental encoding (a value too large to print in one event-loop turn)

/** Characters of a long string quoted per piece by encodeJsonPieces (up to 6 bytes each). */
export const PIECE_CHARS = 32 * 1024;

/** Whether printing `v` is large work: a string of PIECE_CHARS or more, or more than
 *  PIECE_CHARS strings' worth of members and characters in all. Stops counting there. */
export function encodingIsLarge(v: JsonValue | undefined): boolean {
  return weigh(v, PIECE_CHARS) < 0;
}

/** `budget` less the weight of v (negative once exceeded; counting stops there). */
function weigh(v: JsonValue | undefined, budget: number): number {
  if (typeof v === 'string') return budget - v.length;
  if (typeof v !== 'object' || v === null || v instanceof JsonFloat) return budget - 1;
  if (Array.isArray(v)) {
    budget -= 1;
    for (let i = 0; i < v.length && budget >= 0; i++) budget = weigh(v[i], budget);
    return budget;
  }
  budget -= 1;
  for (const k of Object.keys(v)) {
    if (budget < 0) break;
    budget = weigh(v[k], budget - k.length);
  }
  return budget;
}

/**
 * encodeJson()'s text as a sequence of pieces, each small work to make: a long string is
 * quoted PIECE_CHARS characters at a time, containers member by member. The concatenation
 * is exactly encodeJson(v, opts). For values encodingIsLarge() finds large; the caller takes
 * pieces a turn's worth at a time.
 */
export function* encodeJsonPieces(v: JsonValue, opts?: EncodeOptions, parts?: readonly string[]): Generator<string, void, undefined> {
  if (typeof v === 'string' && parts !== undefined && parts.reduce((n, p) => n + p.length, 0) === v.length) {
    // A long string decoded in parts (value.ts LONG_PARTS): quoted a part at a time, never
    // read whole (a part ends between characters: decoded strings hold no lone surrogate).
    yield '"';
    for (const p of parts) yield* p.length < 2 * PIECE_CHARS ? [quoteBody(p)] : quotePieces(p, false);
    yield '"';
    return;
  }
  yield* pieces(v, opts?.qdictOrder === true);
}

function* pieces(v: JsonValue | undefined, qdict: boolean): Generator<string, void, undefined> {
  if (typeof v === 'string') {
    if (v.length < PIECE_CHARS) yield quote(v);
    else yield* quotePieces(v);
    return;
  }
  if (typeof v !== 'object' || v === null || v instanceof JsonFloat) {
    yield enc(v, qdict);
    return;
  }
  if (Array.isArray(v)) {
    if (v.length === 0) return yield '[]';
    for (let i = 0; i < v.length; i++) {
      yield i === 0 ? '[' : ', ';
      yield* member(v[i], qdict);
    }
    return yield ']';
  }
  let keys = memberKeys(v);
  if (qdict && keys.length > 1) keys = qdictKeyOrder(keys);
  let first = true;
  for (const k of keys) {
    const m = v[k];
    if (m === undefined) continue;
    yield (first ? '{' : ', ') + quote(k) + ': ';
    first = false;
    yield* member(m, qdict);
  }
  yield first ? '{}' : '}';
}

/** A member: printed at once when small (a generator per scalar would be slow). */
function* member(v: JsonValue, qdict: boolean): Generator<string, void, undefined> {
  if ((typeof v === 'object' && v !== null && !(v instanceof JsonFloat)) || (typeof v === 'string' && v.length >= PIECE_CHARS)) yield* pieces(v, qdict);
  else yield enc(v, qdict);
}

/** quote(s) in pieces of PIECE_CHARS characters, never splitting a surrogate pair
 *  (`quotes`: false for the body alone). */
function* quotePieces(s: string, quotes = true): Generator<string, void, undefined> {
  if (quotes) yield '"';
  const n = s.length;
  for (let i = 0; i < n; ) {
    let j = Math.min(n, i + PIECE_CHARS);
    const last = s.charCodeAt(j - 1);
    if (j < n && last >= 0xd800 && last <= 0xdbff) j--; // its trailing half is in the next piece
    yield quoteBody(s.slice(i, j));
    i = j;
  }
  if (quotes) yield '"';
}

// ---- numbers

const TWO_63 = 2 ** 63;
const TWO_64 = 2 ** 64;

/** A plain number: integral values are QEMU integers, the rest doubles (value.ts). */
function formatNumber(v: number): string {
  if (Number.isSafeInteger(v)) return v === 0 ? '0' : String(v); // -0 is the integer 0
  if (Number.isInteger(v) && v >= -TWO_63 && v < TWO_64) return BigInt(v).toString();
  return formatDouble(v);
}

/**
 * C's printf("%.17g") (json-writer.c, §1.1): 17 significant digits, trailing zeros dropped,
 * exponent form when the exponent is below -4 or above 16; inf/nan spelt like glibc.
 */
export function formatDouble(v: number): string {
  if (v !== v) return 'nan';
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  const neg = v < 0;
  const a = neg ? -v : v;
  const [digits, exp] = roundTo17(a);
  let end = 17;
  while (end > 1 && digits.charCodeAt(end - 1) === 0x30) end--;
  const d = digits.slice(0, end);
  let out: string;
  if (exp < -4 || exp >= 17) {
    const ax = exp < 0 ? -exp : exp;
    out = d[0] + (end > 1 ? '.' + d.slice(1) : '') + (exp < 0 ? 'e-' : 'e+') + (ax < 10 ? '0' : '') + ax;
  } else if (exp >= 0) {
    out = end <= exp + 1 ? d + '0'.repeat(exp + 1 - end) : d.slice(0, exp + 1) + '.' + d.slice(exp + 1);
  } else {
    out = '0.' + '0'.repeat(-exp - 1) + d;
  }
  return neg ? '-' + out : out;
}

/** The 17 significant digits of a > 0 (finite) and its decimal exponent, as in "d.dddde+X". */
function roundTo17(a: number): [string, number] {
  const [digits, exp] = splitPrecision(a.toPrecision(17));
  // toPrecision rounds halfway cases up, printf to even. A tie needs the exact value to have
  // exactly 18 significant digits ending in 5; only then does the answer differ.
  const [d18] = splitPrecision(a.toPrecision(18));
  if (d18.charCodeAt(17) !== 0x35) return [digits, exp];
  const exact = exactDigits(a);
  if (exact.length !== 18 || exact.charCodeAt(17) !== 0x35) return [digits, exp];
  if ((exact.charCodeAt(16) - 0x30) % 2 === 0) return [exact.slice(0, 17), exp]; // round down to even
  return [digits, exp];
}

/** toPrecision() output to (significant digits, decimal exponent of the first one). */
function splitPrecision(s: string): [string, number] {
  const e = s.indexOf('e');
  if (e >= 0) return [s.slice(0, e).replace('.', ''), Number(s.slice(e + 1))];
  const dot = s.indexOf('.');
  const int = dot < 0 ? s : s.slice(0, dot);
  const frac = dot < 0 ? '' : s.slice(dot + 1);
  if (int !== '0') return [int + frac, int.length - 1];
  let z = 0;
  while (frac.charCodeAt(z) === 0x30) z++;
  return [frac.slice(z), -(z + 1)];
}

/** All significant decimal digits of the exact binary value of a > 0, trailing zeros dropped. */
function exactDigits(a: number): string {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, a);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << BigInt(32)) | BigInt(lo);
  let e2: number;
  if (biased === 0) {
    e2 = -1074; // subnormal
  } else {
    mant |= BigInt(1) << BigInt(52);
    e2 = biased - 1075;
  }
  // a = mant * 2^e2 = mant * 5^-e2 / 10^-e2 when e2 < 0.
  const n = e2 >= 0 ? mant << BigInt(e2) : mant * BigInt(5) ** BigInt(-e2);
  return n.toString().replace(/0+$/, '');
}

// ---- QDict member order (§1.1, §1.11)

const bucketCache = new Map<string, number>();
const BUCKET_CACHE_MAX = 4096;

/**
 * QEMU's QDict bucket of a key: tdb_hash(key) % 512 over the key's bytes in modified UTF-8
 * (U+0000 as C0 80), all arithmetic in 32-bit unsigned (qobject/qdict.c, §1.1).
 */
export function qdictBucket(key: string): number {
  const cached = bucketCache.get(key);
  if (cached !== undefined) return cached;
  let ascii = true;
  for (let i = 0; i < key.length && ascii; i++) {
    const c = key.charCodeAt(i);
    ascii = c > 0 && c < 0x80;
  }
  let bytes: ArrayLike<number>;
  if (ascii) {
    const a = new Array<number>(key.length);
    for (let i = 0; i < key.length; i++) a[i] = key.charCodeAt(i);
    bytes = a;
  } else {
    bytes = modifiedUtf8(key);
  }
  let h = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) h = (h + (bytes[i] << (i * 5 % 24))) >>> 0;
  const bucket = ((Math.imul(1103515243, h) + 12345) >>> 0) % QDICT_BUCKETS;
  if (bucketCache.size >= BUCKET_CACHE_MAX) bucketCache.clear();
  bucketCache.set(key, bucket);
  return bucket;
}

function modifiedUtf8(s: string): Uint8Array {
  const utf8 = Buffer.from(s, 'utf8');
  let nuls = 0;
  for (const b of utf8) if (b === 0) nuls++;
  if (nuls === 0) return utf8;
  const out = new Uint8Array(utf8.length + nuls);
  let j = 0;
  for (const b of utf8) {
    if (b === 0) {
      out[j++] = 0xc0;
      out[j++] = 0x80;
    } else {
      out[j++] = b;
    }
  }
  return out;
}

/** Keys in QDict iteration order: bucket ascending, later insertion first within a bucket.
 *  Used for output, and wherever hostmemd must meet a request's members in QEMU's order. */
export function qdictKeyOrder(keys: string[]): string[] {
  const n = keys.length;
  const buckets = new Array<number>(n);
  const order = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    buckets[i] = qdictBucket(keys[i]);
    order[i] = i;
  }
  order.sort((x, y) => buckets[x] - buckets[y] || y - x);
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) out[i] = keys[order[i]];
  return out;
}
