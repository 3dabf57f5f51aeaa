// QMP input: bytes in, one StreamItem out per complete top-level JSON value or per error,
// reproducing QEMU's json-lexer + json-streamer + json-parser (qemu-facts §1.9, §2) including
// their exact error texts and resynchronisation. What a value means (QMP request checks, §1.4)
// is the dispatcher's job; printing values and error texts is writer.ts's.
import { JsonFloat, JsonObject, JsonValue, LONG_PARTS, LongString, MEMBER_ORDER } from './value';

export type StreamItem = { kind: 'value'; value: JsonValue } | { kind: 'error'; desc: string };

/** Longest token, and most token bytes (+1) in one message (§2.1 MAX_TOKEN_SIZE, 64 MiB). */
export const MAX_TOKEN_SIZE = 64 * 1024 * 1024;
export const TOKEN_SIZE_ERROR = 'JSON token size limit exceeded';
/** Most tokens in one message (§2.1 MAX_TOKEN_COUNT). */
export const MAX_TOKEN_COUNT = 2 * 1024 * 1024;
export const TOKEN_COUNT_ERROR = 'JSON token count limit exceeded';
/** Most open `[` plus `{` (§2.1 MAX_NESTING): 1024 is accepted, the 1025th opener is refused. */
export const MAX_NESTING = 1024;
export const NESTING_ERROR = 'JSON nesting depth limit exceeded';
/** Prefix of every lexical and syntax error (§2.2, §2.4); the three limit errors have none. */
const PARSE_ERROR = 'JSON parse error, ';
/** Most bytes of a bad token echoed in an error ("stray '...'", "invalid keyword '...'"):
 *  QEMU echoes the whole token, up to 64 MiB, and the copies of such a text cost gigabytes.
 *  A longer token is echoed as its first MAX_ECHO_BYTES bytes followed by ECHO_MARK. */
export const MAX_ECHO_BYTES = 1024;
export const ECHO_MARK = '...';
/** Estimated heap bytes per token of an unfinished message (a parsed `{}` in a list costs a JS
 *  object, a list slot and parser bookkeeping: about 26 bytes measured, rounded up). */
export const TOKEN_HEAP_COST = 32;
/** A string token whose bytes from earlier chunks reach this many is decoded as it arrives, a
 *  part per chunk fed (sessions feed 64 KiB per turn): decoding a 64 MiB string at its closing
 *  quote held the event loop for seconds. */
export const STRING_PART_BYTES = 64 * 1024;

export interface JsonStreamLimits {
  maxTokenSize: number;
  maxTokenCount: number;
  maxNesting: number;
}

// Lexer states (§2.2). A token being lexed is "open" in every state but START and RECOVERY.
const L_START = 0;
const L_RECOVERY = 1;
const L_DQ = 2; // inside "..."
const L_DQ_ESC = 3; // after a backslash in "..." (must stay L_DQ + 1)
const L_SQ = 4; // inside '...'
const L_SQ_ESC = 5; // (must stay L_SQ + 1)
const L_SIGN = 6;
const L_ZERO = 7;
const L_DIGITS = 8;
const L_MANTISSA = 9;
const L_MANTISSA_DIGITS = 10;
const L_EXP_E = 11;
const L_EXP_SIGN = 12;
const L_EXP_DIGITS = 13;
const L_KEYWORD = 14;

// Token types handed from the lexer to the streamer.
const T_LCURLY = 1;
const T_RCURLY = 2;
const T_LSQUARE = 3;
const T_RSQUARE = 4;
const T_COLON = 5;
const T_COMMA = 6;
const T_INTEGER = 7;
const T_FLOAT = 8;
const T_KEYWORD = 9;
const T_STRING = 10;

// What a byte does in the start state. Structural characters map to their token type (1..6).
const C_WS = 20;
const C_DQ = 21;
const C_SQ = 22;
const C_ZERO = 23;
const C_DIGIT = 24;
const C_MINUS = 25;
const C_LETTER = 26;
const START_CLASS = new Uint8Array(256); // 0 = lexical error: controls, uppercase, 0x80.., '%'...
// Only space, TAB, CR and LF are whitespace (§2.2).
for (const c of [0x20, 0x09, 0x0d, 0x0a]) START_CLASS[c] = C_WS;
START_CLASS[0x7b] = T_LCURLY;
START_CLASS[0x7d] = T_RCURLY;
START_CLASS[0x5b] = T_LSQUARE;
START_CLASS[0x5d] = T_RSQUARE;
START_CLASS[0x3a] = T_COLON;
START_CLASS[0x2c] = T_COMMA;
START_CLASS[0x22] = C_DQ;
START_CLASS[0x27] = C_SQ; // single-quoted strings are a QEMU extension (§2.2)
START_CLASS[0x30] = C_ZERO;
for (let c = 0x31; c <= 0x39; c++) START_CLASS[c] = C_DIGIT;
START_CLASS[0x2d] = C_MINUS;
for (let c = 0x61; c <= 0x7a; c++) START_CLASS[c] = C_LETTER; // keywords are [a-z]+ (§2.2)

// Recovery after a lexical error ends at (and re-lexes) a structural character, a control
// character other than TAB, or 0xFE/0xFF (§1.9). Everything else is swallowed silently.
const RESYNC = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) RESYNC[c] = c === 0x09 ? 0 : 1;
for (const c of [0x5b, 0x5d, 0x7b, 0x7d, 0x3a, 0x2c, 0xfe, 0xff]) RESYNC[c] = 1;

// Flags collected while lexing a string, to pick the cheapest decoding.
const F_ESCAPE = 1;
const F_HIGH = 2;

// Parser states: what the next token must be.
const P_VALUE = 0; // a value (top level, after ':' or after ',' in a list)
const P_OBJ_FIRST = 1; // after '{': a key or '}'
const P_KEY = 2; // after ',' in an object
const P_COLON = 3;
const P_OBJ_SEP = 4; // ',' or '}'
const P_ARR_FIRST = 5; // after '[': a value or ']'
const P_ARR_SEP = 6; // ',' or ']'
const P_DONE = 7; // top-level value complete
const P_ERROR = 8; // first syntax error recorded; later tokens are only counted

/** An open container. isKey: it stands where an object key belongs, which is an error once it
 *  has been parsed completely (QEMU parses the key as a value first, §2.4). */
interface Frame {
  obj: JsonObject | null;
  arr: JsonValue[] | null;
  key: string;
  isKey: boolean;
  /** Insertion order, kept once an integer-like key makes Object.keys() disagree with it. */
  order: string[] | null;
  /** Members that are long strings decoded in parts (value.ts LONG_PARTS). */
  long?: Map<string, LongString>;
}

const PEND_INITIAL = 256;
const PEND_KEEP = 64 * 1024; // larger pending buffers are dropped once their token is done

/**
 * Incremental QMP JSON parser. Feed it bytes split anywhere; it calls onItem synchronously for
 * every complete top-level value (brace/bracket depth back to 0, §2.3) and for every error.
 * Values are exact per value.ts: int64/uint64 beyond 2^53 as bigint, integral doubles as
 * JsonFloat. onItem may call reset() (the rest of the chunk is then dropped), but not feed().
 */
export class JsonStreamParser {
  private readonly maxTokenSize: number;
  private readonly maxTokenCount: number;
  private readonly maxNesting: number;

  // Lexer
  private state = L_START;
  private tokStart = 0; // start of the open token in the chunk being fed
  private pend: Buffer = Buffer.allocUnsafe(PEND_INITIAL); // open token's bytes from earlier chunks
  private pendLen = 0;
  private strFlags = 0;
  // A long string being decoded as it arrives (STRING_PART_BYTES): the token's bytes before
  // pend[0] (pendBase of them) are decoded into strParts (strChars characters), or strError
  // says why they cannot be; strHead keeps the token's first MAX_ECHO_BYTES for an echo.
  private pendBase = 0;
  private strParts: string[] = [];
  private strChars = 0;
  private strError: string | null = null;
  private strHead: Buffer | null = null;
  /** The string token being parsed, decoded already (null: decodeError says why), and its
   *  parts when it was decoded as it arrived. */
  private preDecoded: string | null | undefined = undefined;
  private preParts: LongString | undefined;
  private generation = 0; // bumped by reset() so feed() notices a reset made by onItem

  // Streamer (message splitting and limits)
  private braces = 0;
  private brackets = 0;
  private tokenCount = 0;
  private tokenSize = 0;

  // Parser
  private expect = P_VALUE;
  private err = '';
  private result: JsonValue = null;
  private readonly stack: Frame[] = [];

  constructor(
    private readonly onItem: (item: StreamItem) => void,
    limits?: Partial<JsonStreamLimits>,
  ) {
    this.maxTokenSize = limits?.maxTokenSize ?? MAX_TOKEN_SIZE;
    this.maxTokenCount = limits?.maxTokenCount ?? MAX_TOKEN_COUNT;
    this.maxNesting = limits?.maxNesting ?? MAX_NESTING;
  }

  /** True when no message is partly fed: the next byte starts a new one, so the rest of the
   *  stream can be handed to another parser (daemon handover). */
  get atBoundary(): boolean {
    return this.state === L_START && this.tokenCount === 0 && this.pendLen === 0;
  }

  /** Estimated memory held for the message being received: the open token's bytes, the
   *  decoded strings of the partial value tree (at most two bytes a character) and
   *  TOKEN_HEAP_COST per token. Bounded by the per-message limits; sessions add it up across
   *  connections (qmp/session.ts input budget). */
  get unfinishedCost(): number {
    if (this.state === L_START && this.tokenCount === 0) return 0;
    return this.pendLen + 2 * this.strChars + 2 * this.tokenSize + TOKEN_HEAP_COST * this.tokenCount;
  }

  /** Tokens of the message being received (each a live object of its partial value, or
   *  parser bookkeeping); sessions add them up across connections. */
  get unfinishedTokens(): number {
    return this.tokenCount;
  }

  /** Discards any partial token and message (QEMU re-creates its parser on disconnect, §1.7). */
  reset(): void {
    this.generation++;
    this.state = L_START;
    this.pendLen = 0;
    this.dropLongString();
    if (this.pend.length > PEND_KEEP) this.pend = Buffer.allocUnsafe(PEND_INITIAL);
    this.resetMessage();
  }

  feed(chunk: Buffer): void {
    const gen = this.generation;
    const n = chunk.length;
    const max = this.maxTokenSize;
    let i = 0;
    this.tokStart = 0; // an open token continues at the start of this chunk
    while (i < n) {
      const st = this.state;
      switch (st) {
        case L_START: {
          const c = chunk[i];
          const cls = START_CLASS[c];
          if (cls === C_WS) {
            i++;
            continue;
          }
          if (cls >= T_LCURLY && cls <= T_COMMA) {
            this.token(cls, chunk, i, i + 1);
            i++;
            if (this.generation !== gen) return;
            continue;
          }
          this.tokStart = i;
          i++;
          switch (cls) {
            case C_DQ:
              this.state = L_DQ;
              this.strFlags = 0;
              break;
            case C_SQ:
              this.state = L_SQ;
              this.strFlags = 0;
              break;
            case C_ZERO:
              this.state = L_ZERO;
              break;
            case C_DIGIT:
              this.state = L_DIGITS;
              break;
            case C_MINUS:
              this.state = L_SIGN;
              break;
            case C_LETTER:
              this.state = L_KEYWORD;
              break;
            default: // stray byte: a one-byte lexical error (§1.9)
              this.lexError(chunk, i);
              if (this.generation !== gen) return;
              continue;
          }
          break;
        }

        case L_RECOVERY:
          while (i < n && RESYNC[chunk[i]] === 0) i++;
          if (i < n) this.state = L_START; // that byte is lexed again from the start state
          continue;

        case L_DQ:
        case L_SQ: {
          const quote = st === L_DQ ? 0x22 : 0x27;
          // Plain bytes are consumed in bulk, but never past the token size limit.
          const stop = Math.min(n, this.tokStart + max - this.pendLen - this.pendBase);
          let hi = 0;
          let c = 0;
          while (i < stop) {
            c = chunk[i];
            if (c === quote || c === 0x5c || c < 0x20 || c >= 0xfe) break;
            hi |= c;
            i++;
          }
          if (hi & 0x80) this.strFlags |= F_HIGH;
          if (i >= n) continue;
          c = chunk[i++];
          if (c === quote) {
            this.endToken(T_STRING, chunk, i);
            if (this.generation !== gen) return;
            continue;
          }
          if (c < 0x20 || c >= 0xfe) {
            // Raw control characters and 0xFE/0xFF are lexical errors inside strings (§2.2).
            this.lexError(chunk, i);
            if (this.generation !== gen) return;
            continue;
          }
          if (c === 0x5c) {
            this.strFlags |= F_ESCAPE;
            this.state = st + 1;
          } else if (c & 0x80) {
            this.strFlags |= F_HIGH;
          }
          break;
        }

        case L_DQ_ESC:
        case L_SQ_ESC: {
          // Any byte 0x20..0xFD may follow a backslash; the parser judges the escape (§2.2).
          const c = chunk[i++];
          if (c < 0x20 || c >= 0xfe) {
            this.lexError(chunk, i);
            if (this.generation !== gen) return;
            continue;
          }
          if (c & 0x80) this.strFlags |= F_HIGH;
          this.state = st - 1;
          break;
        }

        case L_SIGN: {
          const c = chunk[i++];
          if (c === 0x30) this.state = L_ZERO;
          else if (c >= 0x31 && c <= 0x39) this.state = L_DIGITS;
          else {
            this.lexError(chunk, i);
            if (this.generation !== gen) return;
            continue;
          }
          break;
        }

        case L_ZERO: {
          // A leading zero followed by a digit is a lexical error ("00", §2.2); QEMU's table also
          // has no exponent after a bare zero, so "0e1" lexes as 0 then the keyword "e".
          const c = chunk[i];
          if (c >= 0x30 && c <= 0x39) {
            i++;
            this.lexError(chunk, i);
            if (this.generation !== gen) return;
            continue;
          }
          if (c === 0x2e) {
            i++;
            this.state = L_MANTISSA;
            break;
          }
          // Any other byte ends the number and is lexed again (numbers need one byte lookahead).
          this.endToken(T_INTEGER, chunk, i);
          if (this.generation !== gen) return;
          continue;
        }

        case L_DIGITS:
        case L_MANTISSA_DIGITS:
        case L_EXP_DIGITS: {
          const stop = Math.min(n, this.tokStart + max - this.pendLen - this.pendBase);
          while (i < stop && chunk[i] >= 0x30 && chunk[i] <= 0x39) i++;
          if (i >= n) continue;
          const c = chunk[i];
          if (c >= 0x30 && c <= 0x39) {
            i++; // one digit past the size limit
            break;
          }
          if (st !== L_EXP_DIGITS && (c === 0x65 || c === 0x45)) {
            i++;
            this.state = L_EXP_E;
            break;
          }
          if (st === L_DIGITS && c === 0x2e) {
            i++;
            this.state = L_MANTISSA;
            break;
          }
          this.endToken(st === L_DIGITS ? T_INTEGER : T_FLOAT, chunk, i);
          if (this.generation !== gen) return;
          continue;
        }

        case L_MANTISSA:
        case L_EXP_E:
        case L_EXP_SIGN: {
          const c = chunk[i++];
          if (c >= 0x30 && c <= 0x39) {
            this.state = st === L_MANTISSA ? L_MANTISSA_DIGITS : L_EXP_DIGITS;
          } else if (st === L_EXP_E && (c === 0x2b || c === 0x2d)) {
            this.state = L_EXP_SIGN;
          } else {
            this.lexError(chunk, i);
            if (this.generation !== gen) return;
            continue;
          }
          break;
        }

        case L_KEYWORD: {
          const stop = Math.min(n, this.tokStart + max - this.pendLen - this.pendBase);
          while (i < stop && chunk[i] >= 0x61 && chunk[i] <= 0x7a) i++;
          if (i >= n) continue;
          const c = chunk[i];
          if (c >= 0x61 && c <= 0x7a) {
            i++;
            break;
          }
          this.endToken(T_KEYWORD, chunk, i);
          if (this.generation !== gen) return;
          continue;
        }
      }
      // A byte was added to the open token: enforce the lexer's token size limit (§2.1). The
      // oversized token is dropped and lexing restarts in the start state with the next byte.
      if (i - this.tokStart + this.pendLen + this.pendBase > max) {
        this.pendLen = 0;
        this.dropLongString();
        this.state = L_START;
        this.fail(TOKEN_SIZE_ERROR);
        if (this.generation !== gen) return;
      }
    }
    if (this.state > L_RECOVERY) {
      this.appendPend(chunk, this.tokStart, n);
      if (this.state <= L_SQ_ESC && this.pendLen >= STRING_PART_BYTES) this.decodeAhead();
    }
  }

  // ---- lexer helpers

  private appendPend(b: Buffer, s: number, e: number): void {
    const need = this.pendLen + (e - s);
    if (need > this.pend.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.pend.length * 2));
      this.pend.copy(grown, 0, 0, this.pendLen);
      this.pend = grown;
    }
    b.copy(this.pend, this.pendLen, s, e);
    this.pendLen = need;
  }

  /** The open string token has STRING_PART_BYTES or more in pend: decodes what can be decoded
   *  (not a UTF-8 sequence or escape the next chunk may complete) and drops it from pend. After
   *  a decoding error only the bytes are counted: the token's value is an error either way. */
  private decodeAhead(): void {
    const pend = this.pend;
    let from = 0;
    if (this.pendBase === 0) {
      this.strHead = Buffer.from(pend.subarray(0, MAX_ECHO_BYTES));
      from = 1; // the opening quote
    }
    let to = this.pendLen;
    if (this.strError === null) {
      const part = decodeRun(pend, from, this.pendLen, this.pendLen, true);
      if (part === null) this.strError = decodeError;
      else {
        this.strParts.push(part);
        this.strChars += part.length;
        to = runEnd;
      }
    }
    pend.copy(pend, 0, to, this.pendLen);
    this.pendLen -= to;
    this.pendBase += to;
  }

  private dropLongString(): void {
    if (this.pendBase === 0) return;
    this.pendBase = 0;
    this.strParts = [];
    this.strChars = 0;
    this.strError = null;
    this.strHead = null;
  }

  /** The open token ends before chunk[end]: hand it to the streamer. */
  private endToken(type: number, chunk: Buffer, end: number): void {
    this.state = L_START;
    if (this.pendBase > 0) return this.endLongString(chunk, end);
    if (this.pendLen === 0) {
      this.token(type, chunk, this.tokStart, end);
      return;
    }
    this.appendPend(chunk, this.tokStart, end);
    const len = this.pendLen;
    this.pendLen = 0;
    this.token(type, this.pend, 0, len);
    if (this.pend.length > PEND_KEEP && this.pendLen === 0) this.pend = Buffer.allocUnsafe(PEND_INITIAL);
  }

  /** A string decoded as it arrived ends: its last part, then the streamer as usual. */
  private endLongString(chunk: Buffer, end: number): void {
    this.appendPend(chunk, this.tokStart, end);
    const len = this.pendLen;
    let value: string | null = null;
    if (this.strError === null) {
      const last = decodeRun(this.pend, 0, len - 1, len, false);
      if (last === null) this.strError = decodeError;
      else {
        // A rope of the parts: joining them flat is one fresh allocation of up to 128 MB,
        // seconds of page faults in one turn; the parts go along for printing (LONG_PARTS).
        const parts = this.strParts;
        if (last !== '') parts.push(last);
        value = '';
        for (const p of parts) value += p;
        this.preParts = { value, parts };
      }
    }
    if (value === null) decodeError = this.strError as string;
    const size = this.pendBase + len;
    this.dropLongString();
    this.pendLen = 0;
    this.preDecoded = value;
    try {
      this.token(T_STRING, this.pend, 0, len, size);
    } finally {
      this.preDecoded = undefined;
      this.preParts = undefined;
    }
    if (this.pend.length > PEND_KEEP && this.pendLen === 0) this.pend = Buffer.allocUnsafe(PEND_INITIAL);
  }

  /** Lexical error on chunk[end - 1]: QEMU reports the token so far, bad byte included (§2.2),
   *  drops the message being collected and skips input until a resync byte (§1.9). */
  private lexError(chunk: Buffer, end: number): void {
    let text: string;
    const len = this.pendLen + (end - this.tokStart);
    if (this.pendBase > 0) {
      text = echoHead(this.strHead as Buffer); // a long string: its head was kept
    } else if (len > MAX_ECHO_BYTES) {
      // Only the head is copied and decoded: the token can be 64 MiB (MAX_ECHO_BYTES).
      const fromPend = Math.min(this.pendLen, MAX_ECHO_BYTES);
      const head = Buffer.allocUnsafe(MAX_ECHO_BYTES);
      this.pend.copy(head, 0, 0, fromPend);
      chunk.copy(head, fromPend, this.tokStart, this.tokStart + MAX_ECHO_BYTES - fromPend);
      text = echoHead(head);
    } else if (this.pendLen === 0) {
      text = lenientDecode(chunk, this.tokStart, end);
    } else {
      this.appendPend(chunk, this.tokStart, end);
      text = lenientDecode(this.pend, 0, this.pendLen);
    }
    this.pendLen = 0;
    this.dropLongString();
    if (this.pend.length > PEND_KEEP) this.pend = Buffer.allocUnsafe(PEND_INITIAL);
    this.state = L_RECOVERY;
    this.fail(`${PARSE_ERROR}stray '${text}'`);
  }

  // ---- streamer (§2.3): splits messages by bracket depth, enforces limits

  /** A token b[s..e); `size`: its length in the input when only its end is in b (a long
   *  string decoded as it arrived). */
  private token(type: number, b: Buffer, s: number, e: number, size = e - s): void {
    switch (type) {
      case T_LCURLY:
        this.braces++;
        break;
      case T_RCURLY:
        this.braces--;
        break;
      case T_LSQUARE:
        this.brackets++;
        break;
      case T_RSQUARE:
        this.brackets--;
        break;
    }
    // After a limit error the message is dropped and the following tokens start new messages,
    // so the rest of a deep or huge message yields a cascade of errors, as in QEMU (§2.1).
    if (this.tokenSize + size + 1 > this.maxTokenSize) return this.fail(TOKEN_SIZE_ERROR);
    if (this.tokenCount + 1 > this.maxTokenCount) return this.fail(TOKEN_COUNT_ERROR);
    if (this.braces + this.brackets > this.maxNesting) return this.fail(NESTING_ERROR);
    this.tokenSize += size;
    this.tokenCount++;
    if (this.expect !== P_ERROR) this.parse(type, b, s, e);
    if ((this.braces > 0 || this.brackets > 0) && this.braces >= 0 && this.brackets >= 0) return;

    // Message complete. QEMU parses only now, so a syntax error is reported here, and a
    // lexical or limit error arriving earlier replaces it.
    let item: StreamItem;
    if (this.expect === P_DONE) item = { kind: 'value', value: this.result };
    else if (this.expect === P_ERROR) item = { kind: 'error', desc: this.err };
    else item = { kind: 'error', desc: `${PARSE_ERROR}premature EOI` }; // unreachable when streaming
    this.resetMessage();
    this.onItem(item);
  }

  /** The input ended (QEMU's json_message_parser_flush, for a text parsed on its own): the
   *  unfinished message's first error, or premature EOI; undefined when none is open. Call it
   *  after a delimiter has closed the last token. */
  endOfInput(): StreamItem | undefined {
    if (this.tokenCount === 0) return undefined;
    const item: StreamItem = { kind: 'error', desc: this.expect === P_ERROR ? this.err : `${PARSE_ERROR}premature EOI` };
    this.resetMessage();
    return item;
  }

  private fail(desc: string): void {
    this.resetMessage();
    this.onItem({ kind: 'error', desc });
  }

  private resetMessage(): void {
    this.braces = 0;
    this.brackets = 0;
    this.tokenCount = 0;
    this.tokenSize = 0;
    this.expect = P_VALUE;
    this.err = '';
    this.result = null;
    this.stack.length = 0;
  }

  // ---- parser (§2.4): QEMU's recursive descent, run one token at a time. Tokens arrive in the
  // order QEMU would examine them, so the first error recorded is the one QEMU reports.

  private parse(type: number, b: Buffer, s: number, e: number): void {
    switch (this.expect) {
      case P_OBJ_FIRST:
        if (type === T_RCURLY) return this.close();
        return this.parseKey(type, b, s, e);
      case P_KEY:
        return this.parseKey(type, b, s, e);
      case P_COLON:
        if (type === T_COLON) this.expect = P_VALUE;
        else this.error('missing : in object pair');
        return;
      case P_ARR_FIRST:
        if (type === T_RSQUARE) return this.close();
        return this.parseValue(type, b, s, e);
      case P_VALUE:
        return this.parseValue(type, b, s, e);
      case P_OBJ_SEP:
        if (type === T_RCURLY) this.close();
        else if (type === T_COMMA) this.expect = P_KEY;
        else this.error('expected separator in dict');
        return;
      case P_ARR_SEP:
        if (type === T_RSQUARE) this.close();
        else if (type === T_COMMA) this.expect = P_VALUE;
        else this.error('expected separator in list');
        return;
    }
  }

  private error(msg: string): void {
    this.err = PARSE_ERROR + msg;
    this.expect = P_ERROR;
  }

  private parseValue(type: number, b: Buffer, s: number, e: number): void {
    switch (type) {
      case T_LCURLY:
        this.stack.push({ obj: {}, arr: null, key: '', isKey: false, order: null });
        this.expect = P_OBJ_FIRST;
        return;
      case T_LSQUARE:
        this.stack.push({ obj: null, arr: [], key: '', isKey: false, order: null });
        this.expect = P_ARR_FIRST;
        return;
      case T_STRING: {
        const str = this.preDecoded !== undefined ? this.preDecoded : decodeString(b, s, e, this.strFlags);
        if (str === null) return this.error(decodeError);
        return this.add(str);
      }
      case T_INTEGER:
        return this.add(integerValue(b, s, e));
      case T_FLOAT: {
        const v = Number(b.toString('latin1', s, e));
        return this.add(Number.isInteger(v) ? new JsonFloat(v) : v);
      }
      case T_KEYWORD: {
        const v = keywordValue(b, s, e);
        if (v === undefined) return this.error(`invalid keyword '${keywordEcho(b, s, e)}'`);
        return this.add(v);
      }
      default:
        return this.error('expecting value');
    }
  }

  /** A key position: QEMU parses whatever value is there, then insists it is a string. */
  private parseKey(type: number, b: Buffer, s: number, e: number): void {
    switch (type) {
      case T_STRING: {
        const key = this.preDecoded !== undefined ? this.preDecoded : decodeString(b, s, e, this.strFlags);
        if (key === null) return this.error(decodeError);
        this.stack[this.stack.length - 1].key = key;
        this.expect = P_COLON;
        return;
      }
      case T_LCURLY:
      case T_LSQUARE:
        this.parseValue(type, b, s, e);
        this.stack[this.stack.length - 1].isKey = true;
        return;
      case T_KEYWORD:
        if (keywordValue(b, s, e) === undefined) return this.error(`invalid keyword '${keywordEcho(b, s, e)}'`);
        return this.error('key is not a string in object');
      case T_INTEGER:
      case T_FLOAT:
        return this.error('key is not a string in object');
      default:
        return this.error('expecting value');
    }
  }

  private close(): void {
    const f = this.stack.pop() as Frame;
    if (f.isKey) return this.error('key is not a string in object');
    if (f.order !== null) Object.defineProperty(f.obj, MEMBER_ORDER, { value: f.order });
    if (f.long !== undefined) Object.defineProperty(f.obj, LONG_PARTS, { value: f.long });
    this.add(f.obj ?? (f.arr as JsonValue[]));
  }

  private add(v: JsonValue): void {
    const depth = this.stack.length;
    if (depth === 0) {
      this.result = v;
      this.expect = P_DONE;
      return;
    }
    const f = this.stack[depth - 1];
    if (f.arr !== null) {
      f.arr.push(v);
      this.expect = P_ARR_SEP;
      return;
    }
    const obj = f.obj as JsonObject;
    const key = f.key;
    // QEMU checks for a duplicate only after parsing the value (§2.4 "duplicate key").
    if (Object.prototype.hasOwnProperty.call(obj, key)) return this.error('duplicate key');
    if (f.order !== null) f.order.push(key);
    else if (isIndexKey(key)) f.order = [...Object.keys(obj), key]; // keys so far are in order
    if (this.preParts !== undefined && v === this.preParts.value) (f.long ??= new Map()).set(key, this.preParts);
    if (key === '__proto__') {
      // An own member, not the prototype: assignment would call the __proto__ setter.
      Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
    } else {
      obj[key] = v;
    }
    this.expect = P_OBJ_SEP;
  }
}

// ---- token values

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const INT64_MIN = -(BigInt(1) << BigInt(63));
const UINT64_MAX = (BigInt(1) << BigInt(64)) - BigInt(1);

/** Integer token: int64, else (no sign) uint64, else double (§2.5); `-0` is the integer 0. */
function integerValue(b: Buffer, s: number, e: number): number | bigint | JsonFloat {
  if (e - s <= 15) {
    // At most 15 characters: |v| < 10^15, exact as a double.
    let i = s;
    const neg = b[i] === 0x2d;
    if (neg) i++;
    let v = 0;
    for (; i < e; i++) v = v * 10 + (b[i] - 0x30);
    return neg && v !== 0 ? -v : v;
  }
  const text = b.toString('latin1', s, e);
  // More than 21 characters (sign and 20 digits, no leading zeros) is beyond uint64: skip
  // BigInt, whose parsing of a 64 MiB digit string would stall the daemon.
  if (e - s > 21) return new JsonFloat(Number(text));
  const big = BigInt(text);
  if (big >= -MAX_SAFE && big <= MAX_SAFE) return Number(big);
  if (big >= INT64_MIN && big <= UINT64_MAX) return big;
  return new JsonFloat(Number(text)); // strtod; JS parsing rounds the same way
}

/** A key JavaScript orders before all others: a canonical integer below 2^32 - 1. */
function isIndexKey(k: string): boolean {
  const c = k.charCodeAt(0);
  if (c < 0x30 || c > 0x39 || k.length > 10) return false;
  return /^(?:0|[1-9][0-9]*)$/.test(k) && Number(k) < 4294967295;
}

/** A bad keyword as echoed in its error: at most MAX_ECHO_BYTES letters, then ECHO_MARK. */
function keywordEcho(b: Buffer, s: number, e: number): string {
  if (e - s <= MAX_ECHO_BYTES) return b.toString('latin1', s, e);
  return b.toString('latin1', s, s + MAX_ECHO_BYTES) + ECHO_MARK;
}

function keywordValue(b: Buffer, s: number, e: number): boolean | null | undefined {
  const len = e - s;
  if (len === 4) {
    if (b[s] === 0x74 && b[s + 1] === 0x72 && b[s + 2] === 0x75 && b[s + 3] === 0x65) return true;
    if (b[s] === 0x6e && b[s + 1] === 0x75 && b[s + 2] === 0x6c && b[s + 3] === 0x6c) return null;
  } else if (len === 5) {
    if (b[s] === 0x66 && b[s + 1] === 0x61 && b[s + 2] === 0x6c && b[s + 3] === 0x73 && b[s + 4] === 0x65) return false;
  }
  return undefined;
}

// ---- strings: QEMU's "modified UTF-8" rules (util/unicode.c, §2.4)

/** Error text of the last decodeString() that returned null. */
let decodeError = '';
/** End of the sequence read by the last modUtf8At(). */
let seqEnd = 0;

const MIN_CP = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];

/** Valid Unicode scalar value that is not a noncharacter. */
function validCodepoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false;
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  return cp < 0xd800 || cp > 0xdfff;
}

/**
 * Decodes the sequence starting at b[i] (bytes from `end` on read as NUL) the way QEMU's
 * mod_utf8_codepoint does: -1 for a stray continuation byte, 0xFE/0xFF, a truncated sequence
 * (consuming the continuation bytes present), an overlong form (except C0 80 = U+0000), a
 * surrogate, a noncharacter or anything above U+10FFFF. Sets seqEnd.
 */
function modUtf8At(b: Buffer, i: number, end: number): number {
  const c = b[i];
  if (c < 0x80) {
    seqEnd = i + 1;
    return c;
  }
  if (c >= 0xfe || (c & 0x40) === 0) {
    seqEnd = i + 1;
    return -1;
  }
  const len = c >= 0xfc ? 6 : c >= 0xf8 ? 5 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
  let cp = c & (0x7f >> len);
  let p = i + 1;
  for (let k = 1; k < len; k++) {
    const d = p < end ? b[p] : 0;
    if ((d & 0xc0) !== 0x80) {
      seqEnd = p;
      return -1;
    }
    p++;
    cp = cp * 64 + (d & 0x3f);
  }
  seqEnd = p;
  if (!validCodepoint(cp)) return -1;
  if (cp < MIN_CP[len - 2] && !(cp === 0 && len === 2)) return -1;
  return cp;
}

/**
 * Bytes as QEMU would print them inside an error message: the text ends at a NUL byte (it is a
 * C string) and every invalid sequence becomes U+FFFD (json-writer, §1.1). Used for the
 * "stray" text and for the quoted escape of "is not a valid Unicode character".
 */
function lenientDecode(b: Buffer, s: number, e: number): string {
  let out = '';
  let i = s;
  while (i < e) {
    const c = b[i];
    if (c === 0) break;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    const cp = modUtf8At(b, i, e);
    i = seqEnd;
    out += String.fromCodePoint(cp < 0 ? 0xfffd : cp);
  }
  return out;
}

/** The first MAX_ECHO_BYTES bytes of a longer bad token as echoed: decoded like the whole
 *  token would be, cut before a sequence the cut would split, then ECHO_MARK. (Only the bad
 *  byte, past the head, can be a NUL: every control byte ends a token.) */
function echoHead(head: Buffer): string {
  let end = head.length;
  // Back up to the start of a multi-byte sequence that the cut may have split (at most 5).
  for (let k = 1; k <= 5 && end - k >= 0; k++) {
    const c = head[end - k];
    if (c < 0x80) break;
    if ((c & 0xc0) === 0xc0 && c < 0xfe) {
      const need = c >= 0xfc ? 6 : c >= 0xf8 ? 5 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      if (need > k) end -= k;
      break;
    }
  }
  return lenientDecode(head, 0, end) + ECHO_MARK;
}

/** 0 when b[s..e) is valid modified UTF-8 without C0 80, 1 when valid with C0 80, -1 if not. */
function checkUtf8(b: Buffer, s: number, e: number): number {
  let sawNul = 0;
  let i = s;
  while (i < e) {
    if (b[i] < 0x80) {
      i++;
      continue;
    }
    const cp = modUtf8At(b, i, e);
    if (cp < 0) return -1;
    if (cp === 0) sawNul = 1;
    i = seqEnd;
  }
  return sawNul;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Four hex digits at b[p..p+4) (bytes from `end` on read as NUL), or -1. */
function hex4(b: Buffer, p: number, end: number): number {
  let cp = 0;
  for (let k = 0; k < 4; k++) {
    const d = p + k < end ? hexDigit(b[p + k]) : -1;
    if (d < 0) return -1;
    cp = cp * 16 + d;
  }
  return cp;
}

/** The string token b[s..e) (quotes included) as a JS string, or null with decodeError set. */
function decodeString(b: Buffer, s: number, e: number, flags: number): string | null {
  if (flags === 0) return b.toString('latin1', s + 1, e - 1); // plain ASCII
  if ((flags & F_ESCAPE) === 0) {
    const r = checkUtf8(b, s + 1, e - 1);
    if (r < 0) {
      decodeError = 'invalid UTF-8 sequence in string';
      return null;
    }
    if (r === 0) return b.toString('utf8', s + 1, e - 1);
  }
  return decodeSlow(b, s, e);
}

const SHORT_ESCAPES: Record<number, string> = {
  0x22: '"',
  0x27: "'",
  0x5c: '\\',
  0x2f: '/',
  0x62: '\b',
  0x66: '\f',
  0x6e: '\n',
  0x72: '\r',
  0x74: '\t',
};

/** Left-to-right decoding with escapes, reporting the first error as QEMU's parse_string. */
function decodeSlow(b: Buffer, s: number, e: number): string | null {
  return decodeRun(b, s + 1, e - 1, e, false);
}

/** Where the last decodeRun() stopped. */
let runEnd = 0;
/** Longest escape: a surrogate pair, \uXXXX\uXXXX. */
const MAX_ESCAPE_BYTES = 12;
/** Longest sequence modUtf8At() reads. */
const MAX_SEQUENCE_BYTES = 6;

/**
 * Decodes the string bytes b[s..end) (`e`: where the token ends, its closing quote included,
 * for escapes read past `end`). `partial`: b[s..end) is a part of a longer string, decoded up
 * to a UTF-8 sequence or escape the rest may complete (runEnd says where).
 */
function decodeRun(b: Buffer, s: number, end: number, e: number, partial: boolean): string | null {
  let out = '';
  let run = s; // start of raw bytes not yet appended
  let p = run;
  while (p < end) {
    const c = b[p];
    if (c < 0x80 && c !== 0x5c) {
      p++;
      continue;
    }
    if (partial && p + (c === 0x5c ? MAX_ESCAPE_BYTES : MAX_SEQUENCE_BYTES) > end) break;
    if (c !== 0x5c) {
      const cp = modUtf8At(b, p, end);
      if (cp < 0) {
        decodeError = 'invalid UTF-8 sequence in string';
        return null;
      }
      if (cp === 0) {
        // C0 80 is QEMU's encoding of U+0000; Buffer decoding would not accept it.
        out += b.toString('utf8', run, p) + '\u0000';
        run = seqEnd;
      }
      p = seqEnd;
      continue;
    }
    if (run < p) out += b.toString('utf8', run, p);
    const beg = p;
    const x = b[p + 1];
    p += 2;
    const short = SHORT_ESCAPES[x];
    if (short !== undefined) {
      out += short;
    } else if (x === 0x75) {
      let cp = hex4(b, p, e);
      p += 4;
      if (cp >= 0xd800 && cp <= 0xdbff && p + 1 < e && b[p] === 0x5c && b[p + 1] === 0x75) {
        // A leading surrogate followed by \u: must be a trailing surrogate.
        const trail = hex4(b, p + 2, e);
        if (trail >= 0xdc00 && trail <= 0xdfff) {
          cp = 0x10000 + ((cp & 0x3ff) << 10) + (trail & 0x3ff);
          p += 6;
        } else {
          cp = -1;
        }
      }
      if (!validCodepoint(cp)) {
        // The text quoted is the escape as far as QEMU read it, e.g. "\uD800" (§2.4).
        decodeError = `${lenientDecode(b, beg, Math.min(p, e))} is not a valid Unicode character`;
        return null;
      }
      out += String.fromCodePoint(cp);
    } else {
      decodeError = 'invalid escape sequence in string';
      return null;
    }
    run = p;
  }
  if (run < p) out += b.toString('utf8', run, p);
  runEnd = p;
  return out;
}

/** Parses one complete JSON text exactly (integers beyond 2^53 as bigint), with the same
 *  lexer and limits as the QMP stream: for files and messages that hold a single value. */
export function parseJsonText(text: string): JsonValue {
  const items: JsonValue[] = [];
  let err: string | undefined;
  const p = new JsonStreamParser((it) => {
    if (it.kind === 'value') items.push(it.value);
    else err ??= it.desc;
  });
  p.feed(Buffer.from(text));
  if (err !== undefined) throw new Error(err);
  if (items.length !== 1) throw new Error(items.length === 0 ? 'incomplete JSON' : 'more than one JSON value');
  return items[0];
}
