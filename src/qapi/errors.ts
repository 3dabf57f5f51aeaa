// Errors of the QAPI compiler front end. Every stage raises at the first problem (as QEMU's
// scripts/qapi does); callers catch QapiError and print `message`. Parse errors carry a
// column; semantic errors, like QEMU's, only a line (facts §3.1). Mapping these to QMP or to a
// process exit code is left to the caller.

import { QapiSourceInfo, infoContext, infoLoc } from './source';

/** Root of all schema errors. `text` is the bare message; `message` is the full rendering. */
export class QapiError extends Error {
  override name = 'QapiError';
  readonly file?: string;
  readonly line?: number;
  readonly col?: number;

  constructor(
    readonly text: string,
    loc?: { file: string; line: number; col?: number },
    message?: string,
  ) {
    super(message ?? text);
    this.file = loc?.file;
    this.line = loc?.line;
    this.col = loc?.col;
  }
}

/** An error at a place in the schema source. The full message is the context lines (include
 *  chain, `file: In struct 'X':`) followed by `file:line[:col]: text`. */
export class QapiSourceError extends QapiError {
  override name = 'QapiSourceError';
  /** The lines printed before the location line. */
  readonly context: string[];

  constructor(
    readonly info: QapiSourceInfo,
    text: string,
    col?: number,
  ) {
    const context = infoContext(info);
    const loc = col === undefined ? infoLoc(info) : `${infoLoc(info)}:${col}`;
    super(text, { file: info.file, line: info.line, col }, [...context, `${loc}: ${text}`].join('\n'));
    this.context = context;
  }
}

/** Lexical or grammatical error; `col` is 1-based with tabs expanded to multiples of 8. */
export class QapiParseError extends QapiSourceError {
  override name = 'QapiParseError';
  constructor(info: QapiSourceInfo, text: string, col: number) {
    super(info, text, col);
  }
}

/** Error in the meaning of well-formed text: bad keys, names, types, clashes, cycles. */
export class QapiSemError extends QapiSourceError {
  override name = 'QapiSemError';
  constructor(info: QapiSourceInfo, text: string) {
    super(info, text);
  }
}

/** Renders an error thrown by a schema reader the way QEMU renders OSError: the C library's
 *  strerror text (`No such file or directory`). Node errors carry the errno name in `code`. */
export function readErrorReason(err: unknown): string {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && code in STRERROR) return STRERROR[code];
  if (err instanceof Error) return err.message;
  return String(err);
}

const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  EPERM: 'Operation not permitted',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  EMFILE: 'Too many open files',
  EIO: 'Input/output error',
};
