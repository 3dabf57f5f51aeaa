// Parser and loader behaviour not covered by the golden files: positions carried by error
// objects, the expression trees and docs handed to expr.ts, and include handling through an
// in-memory reader (paths, repeats, loops, unreadable files, the main file itself).
import * as path from 'node:path';
import { parseSchema, QDict, SchemaReader } from '../../../src/qapi/parser';
import { loadSchema } from '../../../src/qapi/load';
import { QapiError, QapiParseError, QapiSemError } from '../../../src/qapi/errors';

/** A reader over a map of files that records which paths were asked for; like a file
 *  system, it resolves `.` and `..` itself. */
function memReader(files: Record<string, string>): SchemaReader & { reads: string[] } {
  const reads: string[] = [];
  const read = (p: string): string => {
    reads.push(p);
    const key = path.posix.normalize(p);
    if (!(key in files)) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' });
    return files[key];
  };
  return Object.assign(read, { reads });
}

function parseError(text: string): QapiError {
  try {
    parseSchema('t.json', memReader({ 't.json': text }));
  } catch (err) {
    if (err instanceof QapiError) return err;
    throw err;
  }
  throw new Error('no error');
}

describe('lexer positions', () => {
  it('reports line and 1-based column of the offending token', () => {
    const err = parseError("{ 'enum': 'A',\n  'data': [ 'x' 'y' ] }\n");
    expect(err).toBeInstanceOf(QapiParseError);
    expect([err.file, err.line, err.col, err.text]).toEqual(['t.json', 2, 17, "expected ',' or ']'"]);
    expect(err.message).toBe("t.json:2:17: expected ',' or ']'");
  });

  it('expands tabs to the next multiple of 8', () => {
    expect(parseError('\t%').col).toBe(9);
    expect(parseError('x\t\t%').col).toBe(1);
    expect(parseError("{ 'a':\t\t%").col).toBe(17);
    expect(parseError("{ 'a': \t%").col).toBe(9);
  });

  it('points string errors at the opening quote', () => {
    expect(parseError("{ 'a': 'b\n").col).toBe(8);
    expect(parseError("\n\n  { 'a': 'b\u0001' }").message).toBe('t.json:3:10: funny character in string');
  });

  it('reports duplicate keys at the value', () => {
    expect(parseError("{ 'a': 'x', 'a': [] }").message).toBe("t.json:1:18: duplicate key 'a'");
  });

  it('counts lines through comments and doc blocks', () => {
    expect(parseError("# one\n##\n# = Title\n##\n\n  bad").message).toBe("t.json:6:3: stray 'bad'");
  });

  it('accepts CRLF line ends', () => {
    const r = parseSchema('t.json', memReader({ 't.json': "##\r\n# @A:\r\n##\r\n{ 'enum': 'A',\r\n  'data': [] }\r\n" }));
    expect(r.exprs[0].info.line).toBe(4);
    expect(r.exprs[0].doc?.symbol).toBe('A');
  });

  it('keeps semantic errors without a column', () => {
    const err = parseError("\n[ 'x' ]");
    expect(err).toBeInstanceOf(QapiSemError);
    expect([err.line, err.col]).toEqual([2, undefined]);
  });
});

describe('expression trees', () => {
  it('keeps key order and value kinds, and the info of each expression', () => {
    const r = parseSchema(
      'm.json',
      memReader({ 'm.json': "# c\n{ 'struct': 'S', 'data': { 'b': 'int', 'a': [ 'str' ] },\n  'x': true, 'y': false }\n{ 'enum': 'E', 'data': [] }\n" }),
    );
    expect(r.exprs.map((e) => e.info.line)).toEqual([2, 4]);
    const s = r.exprs[0].expr;
    expect([...s.keys()]).toEqual(['struct', 'data', 'x', 'y']);
    expect([...(s.get('data') as QDict).entries()]).toEqual([['b', 'int'], ['a', ['str']]]);
    expect([s.get('x'), s.get('y')]).toEqual([true, false]);
  });

  it('treats __proto__ as an ordinary key', () => {
    const r = parseSchema('m.json', memReader({ 'm.json': "{ '__proto__': 'x' }" }));
    expect(r.exprs[0].expr.get('__proto__')).toBe('x');
  });

  it('unescapes \\\\ and nothing else', () => {
    const r = parseSchema('m.json', memReader({ 'm.json': "{ 'a': 'x\\\\y' }" }));
    expect(r.exprs[0].expr.get('a')).toBe('x\\y');
  });

  it('attaches doc blocks with their member and feature descriptions', () => {
    const text = [
      '##',
      '# = Heading',
      '##',
      '',
      '##',
      '# @S:',
      '#',
      '# Intro text.',
      '#',
      '# @a: first',
      '#     continued',
      '#',
      '# @b: second',
      '#',
      '# Features:',
      '#',
      '# @fast: quick',
      '#',
      '# Since: 1.0',
      '##',
      "{ 'struct': 'S', 'data': { 'a': 'int', 'b': 'int' }, 'features': [ 'fast' ] }",
    ].join('\n');
    const r = parseSchema('m.json', memReader({ 'm.json': text }));
    expect(r.docs).toHaveLength(2);
    expect(r.docs[0].symbol).toBeUndefined();
    const doc = r.exprs[0].doc!;
    expect(doc.symbol).toBe('S');
    expect(doc.info.line).toBe(5);
    expect([...doc.args].map(([k, v]) => [k, v.text, v.info.line])).toEqual([
      ['a', 'first\ncontinued', 10],
      ['b', 'second', 13],
    ]);
    expect([...doc.features].map(([k, v]) => [k, v.text])).toEqual([['fast', 'quick']]);
    expect(doc.sections.map((s) => s.name)).toEqual(['Since']);
    expect(doc.text.startsWith('Intro text.')).toBe(true);
  });

  it('applies pragmas to the whole schema, a repeated key replacing the earlier value', () => {
    const r = parseSchema(
      'm.json',
      memReader({
        'm.json':
          "{ 'pragma': { 'command-name-exceptions': [ 'a_b' ] } }\n" +
          "{ 'pragma': { 'command-name-exceptions': [ 'c_d' ], 'doc-required': true } }\n",
      }),
    );
    expect(r.pragmas.commandNameExceptions).toEqual(['c_d']);
    expect(r.pragmas.docRequired).toBe(true);
  });
});

describe('includes through the reader', () => {
  const files = {
    'top/main.json': "{ 'include': 'sub/a.json' }\n{ 'include': 'sub/a.json' }\n{ 'struct': 'Main', 'data': { 'a': 'Ant' } }\n",
    'top/sub/a.json': "{ 'include': '../common/b.json' }\n{ 'struct': 'Ant', 'data': { 'b': 'Bee' } }\n",
    'top/common/b.json': "\n{ 'struct': 'Bee', 'data': { 'x': 'int' } }\n",
  };

  it('joins paths to the including file and reads each file once', () => {
    const read = memReader(files);
    const r = parseSchema('top/main.json', read);
    expect(read.reads).toEqual(['top/main.json', 'top/sub/a.json', 'top/sub/../common/b.json']);
    expect(r.exprs.map((e) => [e.expr.get('struct'), e.info.file, e.info.line])).toEqual([
      ['Bee', 'top/sub/../common/b.json', 2],
      ['Ant', 'top/sub/a.json', 2],
      ['Main', 'top/main.json', 3],
    ]);
    expect(r.exprs[0].info.parent?.file).toBe('top/sub/a.json');
    expect(r.exprs[0].info.parent?.parent?.file).toBe('top/main.json');
  });

  it('reads paths with ./ and .. as the same file', () => {
    const read = memReader({ ...files, 'top/main.json': "{ 'include': './sub/a.json' }\n{ 'include': 'sub/../sub/a.json' }\n" });
    parseSchema('top/main.json', read);
    expect(read.reads.filter((p) => p.endsWith('a.json'))).toHaveLength(1);
  });

  it('prints the include chain before errors in included files', () => {
    const read = memReader({ ...files, 'top/common/b.json': "{ 'struct': 'Bee', 'data': { 'x': 'Nope' } }\n" });
    expect(() => loadSchema('top/main.json', read)).toThrow(
      'In file included from top/main.json:1:\n' +
        'In file included from top/sub/a.json:1:\n' +
        "top/sub/../common/b.json: In struct 'Bee':\n" +
        "top/sub/../common/b.json:1: member 'x' uses unknown type 'Nope'",
    );
  });

  it('rejects an include of a file on the current chain', () => {
    const read = memReader({ ...files, 'top/common/b.json': "{ 'include': '../sub/a.json' }\n" });
    expect(() => parseSchema('top/main.json', read)).toThrow(
      'In file included from top/main.json:1:\nIn file included from top/sub/a.json:1:\n' +
        'top/sub/../common/b.json:1: inclusion loop for ../sub/a.json',
    );
  });

  it('rejects a file including itself', () => {
    expect(() => parseSchema('x.json', memReader({ 'x.json': "\n{ 'include': 'x.json' }" }))).toThrow(
      'x.json:2: inclusion loop for x.json',
    );
  });

  it('reports unreadable includes with the strerror text', () => {
    const err = (() => {
      try {
        parseSchema('top/main.json', memReader({ 'top/main.json': "{ 'include': 'gone.json' }" }));
      } catch (e) {
        return e as QapiError;
      }
    })();
    expect(err).toBeInstanceOf(QapiSemError);
    expect(err?.message).toBe("top/main.json:1: can't read include file 'top/gone.json': No such file or directory");
  });

  it('reports an unreadable main file without a location', () => {
    let err: unknown;
    try {
      loadSchema('none.json', memReader({}));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QapiError);
    expect(err).not.toBeInstanceOf(QapiSemError);
    expect((err as QapiError).message).toBe("can't read schema file 'none.json': No such file or directory");
    expect((err as QapiError).line).toBeUndefined();
  });

  it('falls back to the error message for reader errors without an errno code', () => {
    const read = (p: string): string => {
      if (p === 'm.json') return "{ 'include': 'x.json' }";
      throw new Error('network down');
    };
    expect(() => parseSchema('m.json', read)).toThrow("m.json:1: can't read include file 'x.json': network down");
  });
});
