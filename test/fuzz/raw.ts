// Fuzz inputs over raw bytes: random bytes, JSON token soup, broken UTF-8 inside strings,
// deep nesting around the 1024 limit, huge numbers and strings, and pipelines of complete
// messages (whose replies are counted), each split at random points into several writes.
// Generators never produce a command that ends the daemon (quit, cpr-handover): token soup
// draws command names from a fixed harmless list.
import fc from 'fast-check';

export interface RawInput {
  /** What to send, in separate writes or WebSocket frames. */
  chunks: Buffer[];
  /** Replies expected before the next sync, when the input is a known number of complete
   *  messages (the sync then needs no reset byte); undefined for arbitrary bytes. */
  expect?: number;
  kind: string;
}

export interface RawLimits {
  /** Longest generated string or number literal (bytes). */
  maxString: number;
  /** Deepest nesting tried (a little past the daemon's 1024, to hit the limit). */
  maxDepth: number;
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Harmless commands for token soup and pipelines (none ends the daemon or creates much). */
const SAFE_COMMANDS = ['query-version', 'query-commands', 'qom-list', 'qom-get', 'query-memdev', 'query-cpr', 'qom-list-types', 'object-del', 'no-such-command', 'qmp_capabilities', 'query-prealloc'];

const TOKENS = [
  '{', '}', '[', ']', ':', ',', ' ', '\n', '\t', '"execute"', '"arguments"', '"id"', '"exec-oob"', '"control"',
  ...SAFE_COMMANDS.map((c) => `"${c}"`), '"path"', '"/objects"', '"property"', '"size"', '"qom-type"',
  'true', 'false', 'null', 'tru', 'nul', '0', '-0', '1', '-1', '1.5', '1e999', '-1e-999', '9223372036854775807',
  '18446744073709551616', '-9223372036854775809', '0x10', '01', '.5', '1.', '1e', '"', "'", "'single'", '"\\u00', '"\\ud800"',
  '"\\udc00\\ud800"', '"\\u0000"', '"\\x"', '\\', '"a\nb"', '\x00', '\x7f', '\xfe', '\xff', '\xc0\x80', '\xed\xa0\x80', '\xf4\x90\x80\x80',
];

/** Random bytes, any length up to 512. */
const randomBytes = fc.uint8Array({ maxLength: 512 }).map((a): RawInput => ({ chunks: [Buffer.from(a)], kind: 'bytes' }));

/** A soup of JSON-ish tokens. */
const tokenSoup = fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }).map((t): RawInput => ({ chunks: [b(t.join(''))], kind: 'tokens' }));

/** A string value containing invalid or unusual UTF-8: stray continuations, overlong forms,
 *  surrogates, code points past U+10FFFF, truncated sequences, 0xFE/0xFF, control bytes. */
const badUtf8 = fc
  .tuple(
    fc.constantFrom('{"execute":"', '{"execute":"qom-list","arguments":{"path":"', '{"execute":"query-version","id":"', '{"', '"', "{'execute':'"),
    fc.array(fc.oneof(fc.integer({ min: 0x80, max: 0xff }), fc.constantFrom(0xc0, 0xc1, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xf8, 0xfc, 0xfe, 0xff, 0x00, 0x1f, 0x41)), { maxLength: 40 }),
    fc.constantFrom('"}', '"}}', '"', '', "'}"),
  )
  .map(([head, bytes, tail]): RawInput => ({ chunks: [Buffer.concat([b(head), Buffer.from(bytes), b(tail)])], kind: 'utf8' }));

const nesting = (lim: RawLimits) =>
  fc
    .tuple(fc.integer({ min: 1, max: lim.maxDepth }), fc.constantFrom('[', '{"a":', '[{"b":'), fc.boolean(), fc.boolean())
    .map(([n, open, close, wrapped]): RawInput => {
      const closer = open === '[' ? ']' : open === '{"a":' ? '}' : '}]';
      const body = open.repeat(n) + '1' + (close ? closer.repeat(n) : '');
      const text = wrapped ? `{"execute":"qom-list","arguments":{"path":${body}}}` : body;
      return { chunks: [b(text)], kind: 'nesting' };
    });

/** A length up to the limit, mostly short: long inputs cost the daemon (and this client) time
 *  in proportion, and a few of them per batch exercise the same paths as many. */
const length = (lim: RawLimits) => fc.oneof({ arbitrary: fc.integer({ min: 0, max: 300 }), weight: 30 }, { arbitrary: fc.integer({ min: 0, max: lim.maxString }), weight: 1 });

const hugeNumber = (lim: RawLimits) =>
  fc
    .tuple(fc.constantFrom('', '-'), length(lim).map((n) => Math.max(1, n)), fc.constantFrom('', '.5', 'e308', 'e-400', 'e99999999999'), fc.constantFrom('size', 'path', 'id'))
    .map(([sign, n, tail, where]): RawInput => {
      const num = sign + '9'.repeat(n) + tail;
      const text = where === 'id' ? `{"execute":"query-version","id":${num}}` : `{"execute":"qom-set","arguments":{"path":"/objects/x","property":"${where}","value":${num}}}`;
      return { chunks: [b(text)], kind: 'number' };
    });

const hugeString = (lim: RawLimits) =>
  fc
    // No 0xFF unit: each such byte is an error of its own (one reply per byte, as in QEMU),
    // which badUtf8 covers at short lengths.
    .tuple(length(lim), fc.constantFrom('a', '\\u0041', '\xc3\xa9', '\\"', '\\n'), fc.constantFrom('execute', 'id', 'path', 'key'))
    .map(([n, unit, where]): RawInput => {
      const s = unit.repeat(Math.ceil(n / unit.length));
      const text =
        where === 'execute' ? `{"execute":"${s}"}` : where === 'id' ? `{"execute":"query-version","id":"${s}"}` : where === 'path' ? `{"execute":"qom-list","arguments":{"path":"${s}"}}` : `{"${s}":1}`;
      return { chunks: [b(text)], kind: 'string' };
    });

/** A JSON value that is harmless as a message: fast-check's JSON, never naming a command. */
const jsonMessage = fc.json({ maxDepth: 4 }).filter((j) => !/quit|cpr-handover|human-monitor/.test(j));

/** Complete messages back to back: each gets exactly one reply (a top-level non-object gets
 *  QEMU's "QMP input must be a JSON object"), so the count is checked. */
const pipeline = fc
  .array(
    fc.oneof(
      fc.constantFrom(...SAFE_COMMANDS).map((c) => `{"execute":"${c}"}`),
      fc.tuple(fc.constantFrom(...SAFE_COMMANDS), jsonMessage).map(([c, a]) => `{"execute":"${c}","arguments":${a},"id":${a}}`),
      jsonMessage,
    ),
    { minLength: 1, maxLength: 50 },
  )
  .map((msgs): RawInput => ({ chunks: [b(msgs.join('\n'))], expect: msgs.length, kind: 'pipeline' }));

/** Splits an input's bytes at random points into up to 8 writes. */
function splitAt(input: RawInput, cuts: number[]): RawInput {
  const whole = Buffer.concat(input.chunks);
  const at = [...new Set(cuts.map((c) => Math.floor(c * whole.length)))].sort((x, y) => x - y);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    chunks.push(whole.subarray(prev, c));
    prev = c;
  }
  chunks.push(whole.subarray(prev));
  return { ...input, chunks };
}

/** Every raw input kind, each possibly split. */
export function rawInput(lim: RawLimits): fc.Arbitrary<RawInput> {
  const base = fc.oneof(
    { arbitrary: randomBytes, weight: 3 },
    { arbitrary: tokenSoup, weight: 4 },
    { arbitrary: badUtf8, weight: 3 },
    { arbitrary: nesting(lim), weight: 1 },
    { arbitrary: hugeNumber(lim), weight: 1 },
    { arbitrary: hugeString(lim), weight: 1 },
    { arbitrary: pipeline, weight: 3 },
  );
  return fc.tuple(base, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 })).map(([i, cuts]) => (cuts.length ? splitAt(i, cuts) : i));
}
