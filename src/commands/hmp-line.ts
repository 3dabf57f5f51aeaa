// Reading one human-monitor (HMP) command line as QEMU 7.2's monitor does: the command name
// (and an `info` sub-command) looked up in a table, then the arguments by each command's
// argument types (`s` a word or a quoted string, `S` the rest of the line, `-x` a flag), with
// QEMU's complaints. What a command does with its arguments is hmp.ts's business.
import { clip } from '../errors/text';

/** One entry of a command table. `args` uses QEMU's argument-type notation:
 *  `name:s` a word or "quoted string", `name:s?` an optional one, `name:S` the rest of the
 *  line, `name:-c` a flag `-c`; entries separated by commas. */
export interface HmpCommandDef<R> {
  /** The name, with aliases after `|` (`help|?`). */
  name: string;
  args: string;
  /** What help shows after the name: the argument synopsis. */
  params: string;
  /** What help shows after ` -- ` (may span lines). */
  help: string;
  run?: R;
  /** The sub-commands (`info`): `info X` looks X up here. */
  sub?: HmpCommandDef<R>[];
}

export type HmpArgs = Record<string, string | boolean>;

export type Parsed<R> =
  /** Nothing to run (an empty line). */
  | { kind: 'empty' }
  /** Text to print instead of running anything (an unknown command, a syntax error). */
  | { kind: 'output'; text: string }
  | { kind: 'run'; cmd: HmpCommandDef<R>; args: HmpArgs };

/** C's isspace: space, \t, \n, \v, \f, \r. */
const isSpace = (c: string | undefined): boolean => c === ' ' || (c !== undefined && c >= '\t' && c <= '\r');

/** Whether `name` is one of the `|`-separated names of `def`. */
function matches(def: { name: string }, name: string): boolean {
  return def.name.split('|').includes(name);
}

export function findCommand<R>(table: readonly HmpCommandDef<R>[], name: string): HmpCommandDef<R> | undefined {
  return table.find((c) => matches(c, name));
}

/** Parses `line` against `table`. */
export function parseHmpLine<R>(line: string, table: readonly HmpCommandDef<R>[]): Parsed<R> {
  let p = 0;
  let cmd: HmpCommandDef<R> | undefined;
  let current = table;
  // The command name runs to white space or '/' (QEMU's format suffix, as in `x/10i`).
  for (;;) {
    while (isSpace(line[p])) p++;
    if (p >= line.length) {
      if (!cmd) return { kind: 'empty' };
      break;
    }
    const start = p;
    while (p < line.length && line[p] !== '/' && !isSpace(line[p])) p++;
    const found = findCommand(current, line.slice(start, p));
    if (!found) return { kind: 'output', text: `unknown command: '${clip(line.slice(0, p))}'\n` };
    cmd = found;
    while (isSpace(line[p])) p++;
    if (!cmd.sub || p >= line.length) break;
    current = cmd.sub;
  }
  // `Try "help ..."` names what was typed up to the command, trailing blanks cut.
  let end = p;
  while (end > 0 && isSpace(line[end - 1])) end--;
  const fail = (why: string): Parsed<R> => ({ kind: 'output', text: `${cmd!.name}: ${why}\nTry "help ${clip(line.slice(0, end))}" for more information\n` });
  const args: HmpArgs = {};
  for (const spec of cmd.args === '' ? [] : cmd.args.split(',')) {
    const [key, type] = spec.split(':');
    while (isSpace(line[p])) p++;
    if (type.startsWith('-')) {
      if (line[p] === '-') {
        p++;
        if (line[p] !== type[1]) return fail(`unsupported option -${line[p] ?? ''}`);
        p++;
        args[key] = true;
      }
      continue;
    }
    if (type.endsWith('?') && p >= line.length) continue;
    if (type.startsWith('S')) {
      if (p >= line.length) return fail('string expected');
      args[key] = line.slice(p);
      p = line.length;
      continue;
    }
    const word = readWord(line, p);
    if (!word) return fail('string expected');
    args[key] = word.text;
    p = word.end;
  }
  while (isSpace(line[p])) p++;
  if (p < line.length) return fail('extraneous characters at the end of line');
  return { kind: 'run', cmd, args };
}

const SPACE_RE = /[ \t\n\v\f\r]/g;
const QUOTE_OR_ESCAPE_RE = /["\\]/g;

/** Index of the first match of the global `re` at or after `from`, or the text's length. */
function nextMatch(re: RegExp, text: string, from: number): number {
  re.lastIndex = from;
  return re.exec(text)?.index ?? text.length;
}

/** A word up to white space, or a "quoted string" with the escapes \n \r \\ \' \". Pieces
 *  are sliced, not added a character at a time: a line may be megabytes long. */
function readWord(line: string, p: number): { text: string; end: number } | undefined {
  if (p >= line.length) return undefined;
  if (line[p] !== '"') {
    const end = nextMatch(SPACE_RE, line, p);
    return { text: line.slice(p, end), end };
  }
  const parts: string[] = [];
  let from = ++p;
  while ((p = nextMatch(QUOTE_OR_ESCAPE_RE, line, p)) < line.length && line[p] !== '"') {
    parts.push(line.slice(from, p));
    const c = line[p + 1];
    if (c === 'n') parts.push('\n');
    else if (c === 'r') parts.push('\r');
    else if (c === '\\' || c === "'" || c === '"') parts.push(c);
    else return undefined; // QEMU: unsupported escape code
    p += 2;
    from = p;
  }
  if (line[p] !== '"') return undefined; // unterminated string
  parts.push(line.slice(from, p));
  return { text: parts.join(''), end: p + 1 };
}

/** QEMU's help line: `name params -- help`, commands sorted by name. */
export function helpLines<R>(defs: readonly HmpCommandDef<R>[], prefix = ''): string {
  return [...defs]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((d) => `${prefix}${d.name} ${d.params} -- ${d.help}\n`)
    .join('');
}
