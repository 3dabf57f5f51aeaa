// Stage 1 of the QAPI compiler: text → expression trees plus doc blocks (facts §3.1).
// Lexes QEMU's JSON-ish schema syntax, follows `include` through the caller's reader and
// records `pragma`s. It checks only the grammar; what the keys mean is left to expr.ts, and
// names and types to schema.ts. No I/O here: files arrive through `readFile`.

import { QapiError, QapiParseError, QapiSemError, readErrorReason } from './errors';
import { QapiDoc, DocBuilder } from './doc';
import { QapiSourceInfo } from './source';
import { Pragmas } from './model';

/** A parsed value. Objects are Maps so key order is kept and no key is special. */
export type QValue = string | boolean | QValue[] | QDict;
export type QDict = Map<string, QValue>;

export interface ParsedExpr {
  expr: QDict;
  info: QapiSourceInfo;
  doc?: QapiDoc;
}

export interface ParseResult {
  exprs: ParsedExpr[];
  docs: QapiDoc[];
  pragmas: Pragmas;
}

export type SchemaReader = (path: string) => string;

export function isDict(v: QValue | undefined): v is QDict {
  return v instanceof Map;
}

/** Parses `mainFile` and everything it includes. Throws QapiError. */
export function parseSchema(mainFile: string, readFile: SchemaReader): ParseResult {
  let src: string;
  try {
    src = readFile(mainFile);
  } catch (err) {
    // QEMU: QAPISchema.__init__ turns OSError into a location-less QAPIError.
    throw new QapiError(`can't read schema file '${mainFile}': ${readErrorReason(err)}`);
  }
  const ctx: ParseContext = {
    readFile,
    included: new Set(),
    out: { exprs: [], docs: [], pragmas: newPragmas() },
  };
  parseFile(mainFile, src, undefined, ctx);
  return ctx.out;
}

export function newPragmas(): Pragmas {
  return {
    docRequired: false,
    commandNameExceptions: [],
    commandReturnsExceptions: [],
    documentationExceptions: [],
    memberNameExceptions: [],
  };
}

interface ParseContext {
  readFile: SchemaReader;
  /** Normalised paths of every file parsed so far (repeated includes are skipped). */
  included: Set<string>;
  out: ParseResult;
}

/** Token kinds: punctuation as itself, `'` string, `t`/`f` booleans, `#` comment, null EOF. */
type Tok = '{' | '}' | ':' | ',' | '[' | ']' | "'" | 't' | 'f' | '#' | null;

const CH_NL = 10;
/** Runs of blanks other than newline, skipped natively: the interpreter is slow on a cold
 *  start and the daemon loads the schema once, cold. */
const BLANKS = /[ \t\r\v\f]+/y;
/** A string without escapes or bad characters, up to its closing quote. */
const PLAIN_STRING = /[\x20-\x26\x28-\x5b\x5d-\x7e]*'/y;

function isSpace(c: number): boolean {
  if (c === 32 || (c >= 9 && c <= 13)) return true;
  return c > 127 && /\s/.test(String.fromCharCode(c));
}

/** Characters that end a stray token in error messages (QEMU shows up to the next
 *  structural, whitespace or quote character). */
function endsStray(c: number): boolean {
  return '[]{}:,\'"'.includes(String.fromCharCode(c)) || isSpace(c);
}

export class SchemaParser {
  private readonly src: string;
  private tok: Tok = null;
  private val: string | boolean | undefined;
  /** Start of the current token. */
  private pos = 0;
  private cursor = 0;
  private lineStart = 0;
  private line = 1;

  constructor(
    readonly file: string,
    text: string,
    private readonly parent?: QapiSourceInfo,
  ) {
    // Python reads text with universal newlines, so QEMU accepts CRLF files; do the same.
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');
    // QEMU appends a final newline so every line, comment and string ends with one.
    this.src = text === '' || !text.endsWith('\n') ? text + '\n' : text;
  }

  /** The location of the current line; a fresh object each time, since expr.ts sets `defn`
   *  on an expression's info (QEMU shares one per line, so two definitions on one line would
   *  report each other's name). */
  info(): QapiSourceInfo {
    return { file: this.file, line: this.line, parent: this.parent };
  }

  /** 1-based column of the current token, a tab advancing to the next tab stop (1, 9, 17,
   *  ...). QEMU's formula `(col + 7) % 8 + 1` leaves a tab at column 1 in place; we count
   *  tabs as editors and GCC do. */
  col(): number {
    let col = 1;
    for (let i = this.lineStart; i < this.pos; i++) {
      col = this.src.charCodeAt(i) === 9 ? (((col - 1) >> 3) << 3) + 9 : col + 1;
    }
    return col;
  }

  parseError(text: string): QapiParseError {
    return new QapiParseError(this.info(), text, this.col());
  }

  /** The current token. A method, not a field read, so TypeScript does not narrow it across
   *  `accept()` calls. */
  token(): Tok {
    return this.tok;
  }

  /** Reads the next token. With `skipComment` false, comment lines come back as `#` tokens
   *  (used inside doc blocks); a `##` always does, since it opens a doc block. */
  accept(skipComment = true): void {
    const src = this.src;
    for (;;) {
      let c = src.charCodeAt(this.cursor);
      if (c === 32 || c === 9) {
        BLANKS.lastIndex = this.cursor;
        BLANKS.test(src);
        this.cursor = BLANKS.lastIndex;
        c = src.charCodeAt(this.cursor);
      }
      this.pos = this.cursor;
      this.cursor++;
      this.val = undefined;
      switch (c) {
        case 35: {
          // '#'
          let keep = !skipComment;
          if (src.charCodeAt(this.cursor) === 35) keep = true;
          this.cursor = src.indexOf('\n', this.cursor);
          if (keep) {
            this.tok = '#';
            this.val = src.slice(this.pos, this.cursor);
            return;
          }
          continue;
        }
        case 123: case 125: case 58: case 44: case 91: case 93:
          this.tok = src[this.pos] as Tok;
          return;
        case 39:
          this.tok = "'";
          this.val = this.lexString();
          return;
        case CH_NL:
          if (this.cursor === src.length) {
            this.tok = null;
            return;
          }
          this.line++;
          this.lineStart = this.cursor;
          continue;
        default:
          if (src.startsWith('true', this.pos)) {
            this.tok = 't';
            this.val = true;
            this.cursor += 3;
            return;
          }
          if (src.startsWith('false', this.pos)) {
            this.tok = 'f';
            this.val = false;
            this.cursor += 4;
            return;
          }
          if (!isSpace(c)) {
            let end = this.pos + 1;
            while (end < src.length && !endsStray(src.charCodeAt(end))) end++;
            throw this.parseError(`stray '${src.slice(this.pos, end)}'`);
          }
      }
    }
  }

  /** Reads a single-quoted string whose opening quote is at `pos`. Only printable ASCII,
   *  and `\\` is the only escape (facts §3.1). Errors point at the opening quote. */
  private lexString(): string {
    const src = this.src;
    PLAIN_STRING.lastIndex = this.cursor;
    if (PLAIN_STRING.test(src)) {
      const out = src.slice(this.cursor, PLAIN_STRING.lastIndex - 1);
      this.cursor = PLAIN_STRING.lastIndex;
      return out;
    }
    let out = '';
    let esc = false;
    for (;;) {
      const c = src.charCodeAt(this.cursor);
      this.cursor++;
      if (c === CH_NL) throw this.parseError(`missing terminating "'"`);
      if (esc) {
        if (c !== 92) throw this.parseError(`unknown escape \\${src[this.cursor - 1]}`);
        esc = false;
      } else if (c === 92) {
        esc = true;
        continue;
      } else if (c === 39) {
        return out;
      }
      if (c < 32 || c >= 127) throw this.parseError('funny character in string');
      out += src[this.cursor - 1];
    }
  }

  getExpr(): QValue {
    switch (this.token()) {
      case '{':
        this.accept();
        return this.getMembers();
      case '[':
        this.accept();
        return this.getValues();
      case "'":
      case 't':
      case 'f': {
        const v = this.val as string | boolean;
        this.accept();
        return v;
      }
      default:
        throw this.parseError(`expected '{', '[', string, or boolean`);
    }
  }

  private getMembers(): QDict {
    const dict: QDict = new Map();
    if (this.token() === '}') {
      this.accept();
      return dict;
    }
    if (this.token() !== "'") throw this.parseError(`expected string or '}'`);
    for (;;) {
      const key = this.val as string;
      this.accept();
      if (this.token() !== ':') throw this.parseError(`expected ':'`);
      this.accept();
      // Reported at the value, after the colon, as QEMU does.
      if (dict.has(key)) throw this.parseError(`duplicate key '${key}'`);
      dict.set(key, this.getExpr());
      if (this.token() === '}') {
        this.accept();
        return dict;
      }
      if (this.token() !== ',') throw this.parseError(`expected ',' or '}'`);
      this.accept();
      if (this.token() !== "'") throw this.parseError('expected string');
    }
  }

  private getValues(): QValue[] {
    const list: QValue[] = [];
    if (this.token() === ']') {
      this.accept();
      return list;
    }
    if (this.token() !== '{' && this.token() !== '[' && this.token() !== "'" && this.token() !== 't' && this.token() !== 'f') {
      throw this.parseError(`expected '{', '[', ']', string, or boolean`);
    }
    for (;;) {
      list.push(this.getExpr());
      if (this.token() === ']') {
        this.accept();
        return list;
      }
      if (this.token() !== ',') throw this.parseError(`expected ',' or ']'`);
      this.accept();
    }
  }

  /** Reads a doc block; the current token is its opening `##` comment. */
  getDoc(info: QapiSourceInfo): QapiDoc {
    if (this.val !== '##') throw this.parseError(`junk after '##' at start of documentation comment`);
    const doc = new DocBuilder(info, this);
    this.accept(false);
    while (this.token() === '#') {
      const text = this.val as string;
      if (text.startsWith('##')) {
        if (text !== '##') throw this.parseError(`junk after '##' at end of documentation comment`);
        this.accept();
        return doc.finish();
      }
      doc.append(text);
      this.accept(false);
    }
    throw this.parseError(`documentation comment must end with '##'`);
  }
}

function parseFile(file: string, text: string, parent: QapiSourceInfo | undefined, ctx: ParseContext): void {
  ctx.included.add(normPath(file));
  const p = new SchemaParser(file, text, parent);
  let curDoc: QapiDoc | undefined;
  p.accept();
  while (p.token() !== null) {
    const info = p.info();
    if (p.token() === '#') {
      rejectExprDoc(curDoc);
      curDoc = p.getDoc(info);
      ctx.out.docs.push(curDoc);
      continue;
    }
    const expr = p.getExpr();
    if (!isDict(expr)) throw new QapiSemError(info, 'top-level expression must be an object');
    if (expr.has('include')) {
      rejectExprDoc(curDoc);
      if (expr.size !== 1) throw new QapiSemError(info, `invalid 'include' directive`);
      const include = expr.get('include');
      if (typeof include !== 'string') throw new QapiSemError(info, `value of 'include' must be a string`);
      includeFile(include, pyJoin(pyDirname(file), include), info, ctx);
    } else if (expr.has('pragma')) {
      rejectExprDoc(curDoc);
      if (expr.size !== 1) throw new QapiSemError(info, `invalid 'pragma' directive`);
      const pragma = expr.get('pragma');
      if (!isDict(pragma)) throw new QapiSemError(info, `value of 'pragma' must be an object`);
      for (const [name, value] of pragma) setPragma(ctx.out.pragmas, name, value, info);
    } else {
      if (curDoc && curDoc.symbol === undefined) {
        throw new QapiSemError(curDoc.info, 'definition documentation required');
      }
      ctx.out.exprs.push({ expr, info, doc: curDoc });
    }
    curDoc = undefined;
  }
  rejectExprDoc(curDoc);
}

function rejectExprDoc(doc: QapiDoc | undefined): void {
  if (doc?.symbol !== undefined) {
    throw new QapiSemError(doc.info, `documentation for '${doc.symbol}' is not followed by the definition`);
  }
}

function includeFile(include: string, path: string, info: QapiSourceInfo, ctx: ParseContext): void {
  const norm = normPath(path);
  // A loop is an include of any file on the chain that led here (the current file included).
  for (let inf: QapiSourceInfo | undefined = info; inf; inf = inf.parent) {
    if (normPath(inf.file) === norm) throw new QapiSemError(info, `inclusion loop for ${include}`);
  }
  if (ctx.included.has(norm)) return;
  let text: string;
  try {
    text = ctx.readFile(path);
  } catch (err) {
    throw new QapiSemError(info, `can't read include file '${path}': ${readErrorReason(err)}`);
  }
  parseFile(path, text, info, ctx);
}

/** Pragmas apply to the whole schema; a repeated key replaces the earlier value (facts §3.1). */
function setPragma(pragmas: Pragmas, name: string, value: QValue, info: QapiSourceInfo): void {
  const listOfStrings = (): string[] => {
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
      throw new QapiSemError(info, `pragma ${name} must be a list of strings`);
    }
    return value as string[];
  };
  switch (name) {
    case 'doc-required':
      if (typeof value !== 'boolean') throw new QapiSemError(info, `pragma 'doc-required' must be boolean`);
      pragmas.docRequired = value;
      return;
    case 'command-name-exceptions':
      pragmas.commandNameExceptions = listOfStrings();
      return;
    case 'command-returns-exceptions':
      pragmas.commandReturnsExceptions = listOfStrings();
      return;
    case 'documentation-exceptions':
      pragmas.documentationExceptions = listOfStrings();
      return;
    case 'member-name-exceptions':
      pragmas.memberNameExceptions = listOfStrings();
      return;
    default:
      throw new QapiSemError(info, `unknown pragma '${name}'`);
  }
}

/** Python's os.path.dirname: everything before the last '/', trailing slashes dropped. */
function pyDirname(p: string): string {
  const i = p.lastIndexOf('/');
  if (i < 0) return '';
  const head = p.slice(0, i + 1);
  return /^\/+$/.test(head) ? head : head.replace(/\/+$/, '');
}

/** Python's os.path.join for two parts: no normalisation, so messages show the path as
 *  QEMU would (`sub/../x.json` stays as written). */
function pyJoin(dir: string, rel: string): string {
  if (rel.startsWith('/') || dir === '') return rel;
  return dir.endsWith('/') ? dir + rel : `${dir}/${rel}`;
}

/** Identity of a file for loop and repeat detection: the path with `.`/`..` resolved. */
function normPath(p: string): string {
  const parts: string[] = [];
  const abs = p.startsWith('/');
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..' && parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
    else if (part !== '..' || !abs) parts.push(part);
  }
  return (abs ? '/' : '') + parts.join('/');
}
