// Light reading of `##` documentation blocks (facts §3.1): the symbol line (`@Name:`), the
// `@member:` descriptions, the `Features:` list and the tagged sections' names. The parser
// feeds comment lines in; matching docs to definitions is expr.ts's and schema.ts's job.
// Unlike QEMU we do not check indentation or render text; we keep it for the console.

import { QapiParseError, QapiSemError } from './errors';
import { QapiSourceInfo } from './source';

/** A `@name:` description, with the line it starts on (for "does not exist" errors). */
export interface DocDescription {
  text: string;
  info: QapiSourceInfo;
}

/** A tagged section (`Returns:`, `Since:`, ...) and the line it starts on. */
export interface DocSection {
  name: string;
  info: QapiSourceInfo;
}

/** What the doc reader needs from the lexer: errors at the current token, its line. */
export interface DocLexer {
  parseError(text: string): QapiParseError;
  info(): QapiSourceInfo;
}

export interface QapiDoc {
  readonly info: QapiSourceInfo;
  /** The definition documented (`# @Name:` first line); absent for free-form blocks. */
  readonly symbol?: string;
  /** The whole block without `# ` markers and without the symbol line, trimmed. */
  readonly text: string;
  /** `@member:` descriptions before the first other section, in order. */
  readonly args: Map<string, DocDescription>;
  /** `@feature:` descriptions after a `Features:` line. */
  readonly features: Map<string, DocDescription>;
  /** Tagged sections in order. */
  readonly sections: DocSection[];
}

const SECTION_TAGS = new Set(['Returns:', 'Errors:', 'Since:', 'TODO:', 'Note:', 'Notes:', 'Example:', 'Examples:']);
/** Sections that may appear once. */
const UNIQUE_SECTIONS = new Set(['Returns', 'Errors', 'Since']);

interface Pending {
  lines: string[];
  info: QapiSourceInfo;
}

type State = 'body' | 'args' | 'features' | 'section';

function isBlank(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

export class DocBuilder {
  private symbol?: string;
  private readonly lines: string[] = [];
  private readonly args = new Map<string, Pending>();
  private readonly features = new Map<string, Pending>();
  private readonly sections: DocSection[] = [];
  private state: State = 'body';
  private current?: string[];
  private bodyHasText = false;
  private prevBlank = false;

  constructor(
    private readonly info: QapiSourceInfo,
    private readonly lexer: DocLexer,
  ) {}

  private error(text: string): QapiParseError {
    return this.lexer.parseError(text);
  }

  /** Adds one comment line, `#` included. Written for a cold start: no regex or split on
   *  the common path (a schema has thousands of doc lines). */
  append(raw: string): void {
    let line = '';
    if (raw.length > 1) {
      if (raw.charCodeAt(1) !== 32) throw this.error('missing space after #');
      line = raw.slice(2);
      if (isBlank(line.charCodeAt(line.length - 1))) line = line.trimEnd();
    }
    if (this.symbol === undefined && !this.bodyHasText && line.charCodeAt(0) === 64) {
      if (!line.endsWith(':')) throw this.error("line should end with ':'");
      this.symbol = line.slice(1, -1);
      if (this.symbol === '') throw this.error("name required after '@'");
      return;
    }
    this.lines.push(line);
    this.dispatch(line);
    this.prevBlank = line === '';
  }

  private dispatch(line: string): void {
    if (line === '') {
      if (this.state === 'args' || this.state === 'features') this.current?.push('');
      return;
    }
    const c0 = line.charCodeAt(0);
    // Only lines starting with '@' or a capital can be member headers or section tags.
    let word = '';
    if (c0 === 64 || (c0 >= 65 && c0 <= 90)) {
      const sp = line.indexOf(' ');
      word = sp < 0 ? line : line.slice(0, sp);
    }
    const isMemberHeader = c0 === 64 && word.endsWith(':') && this.symbol !== undefined;
    switch (this.state) {
      case 'body':
        if (this.symbol === undefined) {
          if (c0 === 64) {
            const m = /^(@\S+:)/.exec(line);
            if (m) throw this.error(`'${m[1]}' not allowed in free-form documentation`);
          }
          this.bodyHasText = true;
          return;
        }
        if (isMemberHeader) return this.startMember(this.args, 'args', line, word);
        if (line === 'Features:') return void (this.state = 'features');
        if (SECTION_TAGS.has(word)) return this.startSection(word);
        this.bodyHasText = true;
        return;
      case 'args':
      case 'features':
        if (isMemberHeader) {
          return this.startMember(this.state === 'args' ? this.args : this.features, this.state, line, word);
        }
        if (word !== '' && SECTION_TAGS.has(word)) return this.startSection(word);
        // A non-indented paragraph after a blank line ends the member descriptions.
        if (this.prevBlank && !isBlank(c0)) {
          if (line === 'Features:' && this.state === 'args') return void (this.state = 'features');
          this.state = 'section';
          this.current = undefined;
          return;
        }
        this.current?.push(line.trim());
        return;
      case 'section':
        if (word !== '' && SECTION_TAGS.has(word)) this.startSection(word);
        return;
    }
  }

  private startMember(map: Map<string, Pending>, state: State, line: string, word: string): void {
    const name = word.slice(1, -1);
    const info = this.lexer.info();
    if (name === '') throw new QapiSemError(info, 'invalid parameter name');
    if (map.has(name)) throw new QapiSemError(info, `'${name}' parameter name duplicated`);
    this.current = [line.slice(word.length).trim()];
    map.set(name, { lines: this.current, info });
    this.state = state;
  }

  private startSection(word: string): void {
    const name = word.slice(0, -1);
    const info = this.lexer.info();
    if (UNIQUE_SECTIONS.has(name) && this.sections.some((s) => s.name === name)) {
      throw new QapiSemError(info, `duplicated '${name}' section`);
    }
    this.sections.push({ name, info });
    this.state = 'section';
    this.current = undefined;
  }

  finish(): QapiDoc {
    const join = (m: Map<string, Pending>): Map<string, DocDescription> =>
      new Map([...m].map(([k, v]) => [k, { text: v.lines.join('\n').trim(), info: v.info }]));
    return {
      info: this.info,
      symbol: this.symbol,
      text: this.lines.join('\n').trim(),
      args: join(this.args),
      features: join(this.features),
      sections: this.sections,
    };
  }
}
