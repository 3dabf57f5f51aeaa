// human-monitor-command on the native fake: the command-line reader (names, quoting, flags,
// QEMU's complaints), the printed forms (pretty JSON, ranges, qom-tree, info memdev, info
// cpr), object_add's keyval reading, qom-set's string values, and the <id>[0] children the
// tree indexes and forgets with their backend. The same lines are compared with QEMU 7.2 in
// test/system/qemu/differential-hmp.test.ts.
jest.mock('../../../src/native', () => jest.requireActual('../../fakes/native'));
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as fake from '../../fakes/native';
import { objectsFixture, ObjectsFixture, CTX as ctx, MiB } from '../../fakes/objects';
import { hmpHandlers } from '../../../src/commands/hmp';
import { parseHmpLine, HmpCommandDef } from '../../../src/commands/hmp-line';
import { prettyJson, rangesText, parseOneJson } from '../../../src/commands/hmp-text';
import { keyvalParse, objectAddArgs, parseObjectKeyval } from '../../../src/daemon/object-keyval';
import { loadSchema } from '../../../src/qapi/load';
import { CONFIG_SYMBOLS } from '../../../src/daemon/config';
import { ArgValidator } from '../../../src/qapi/validate';
import { toQmpError } from '../../../src/errors/to-qmp';
import { JsonValue } from '../../../src/json/value';

const model = loadSchema(path.join(__dirname, '../../../qapi/schema.json'), (p) => fs.readFileSync(p, 'utf8'));
const validator = new ArgValidator(model, CONFIG_SYMBOLS, false);

let fx: ObjectsFixture;
let hmp: (line: string, cpu?: number) => Promise<string>;
let cprValue: JsonValue;
beforeEach(() => {
  fake.reset();
  fx = objectsFixture();
  cprValue = { journal: '/state', 'journal-state': 'writable', 'fd-store': false, objects: [{ id: 'r', 'qom-type': 'memory-backend-ram', preserved: false, origin: 'new' }], problems: [], lost: [] };
  const handler = hmpHandlers({
    version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'hostmemd 9.9.9' },
    tree: fx.tree,
    objects: fx.objects,
    objectArgs: (text) => objectAddArgs(text, model, CONFIG_SYMBOLS, validator),
    cpr: () => cprValue,
    changed: () => undefined,
  }).get('human-monitor-command')!;
  hmp = async (line, cpu) => (await handler(cpu === undefined ? { 'command-line': line } : { 'command-line': line, 'cpu-index': cpu }, ctx)) as string;
});
afterEach(() => fx.close());

describe('command line', () => {
  const table: HmpCommandDef<string>[] = [
    { name: 'get', args: 'path:s,property:s', params: 'path property', help: 'h', run: 'get' },
    { name: 'set', args: 'json:-j,path:s,value:S', params: '[-j] path value', help: 'h', run: 'set' },
    { name: 'info', args: 'item:s?', params: '[subcommand]', help: 'h', sub: [{ name: 'status', args: '', params: '', help: 'h', run: 'status' }] },
  ];
  test.each([
    ['get a b', { path: 'a', property: 'b' }],
    ['  get   "a b"  "c\\"d\\n" ', { path: 'a b', property: 'c"d\n' }],
    ['set -j p {"a": 1} ', { json: true, path: 'p', value: '{"a": 1} ' }],
    ['set p  rest of  line', { path: 'p', value: 'rest of  line' }],
  ])('%j', (line, args) => {
    expect(parseHmpLine(line, table)).toMatchObject({ kind: 'run', args });
  });
  test.each([
    ['', { kind: 'empty' }],
    ['  \t', { kind: 'empty' }],
    ['nope x', { kind: 'output', text: "unknown command: 'nope'\n" }],
    ['  info  nope', { kind: 'output', text: "unknown command: '  info  nope'\n" }],
    ['get a', { kind: 'output', text: 'get: string expected\nTry "help get" for more information\n' }],
    ['get a "b', { kind: 'output', text: 'get: string expected\nTry "help get" for more information\n' }],
    ['get a "\\q"', { kind: 'output', text: 'get: string expected\nTry "help get" for more information\n' }],
    ['get a b c', { kind: 'output', text: 'get: extraneous characters at the end of line\nTry "help get" for more information\n' }],
    ['set -x p v', { kind: 'output', text: 'set: unsupported option -x\nTry "help set" for more information\n' }],
    [' info  status  x', { kind: 'output', text: 'status: extraneous characters at the end of line\nTry "help  info  status" for more information\n' }],
  ])('%j', (line, parsed) => {
    expect(parseHmpLine(line, table)).toEqual(parsed);
  });
  test('an unknown command name longer than 1 KiB is echoed cut', () => {
    const r = parseHmpLine('x'.repeat(5000), table) as { text: string };
    expect(r.text).toBe(`unknown command: '${'x'.repeat(1024)}...'\n`);
  });
});

describe('printed forms', () => {
  test('pretty JSON as QEMU prints it', () => {
    expect(prettyJson([])).toBe('[\n]');
    expect(prettyJson([0, 1])).toBe('[\n    0,\n    1\n]');
    expect(prettyJson({ b: 'x', a: [true] })).toBe('{\n    "a": [\n        true\n    ],\n    "b": "x"\n}');
    expect(prettyJson('é')).toBe('"\\u00E9"');
  });
  test('ranges', () => {
    expect(rangesText([])).toBe('');
    expect(rangesText([0, 1, 2, 5, 7, 8])).toBe('0-2,5,7-8');
  });
  test('JSON values with QEMU\'s complaints', () => {
    expect(parseOneJson(' 5 ')).toBe(5);
    expect(() => parseOneJson('{')).toThrow('JSON parse error, premature EOI');
    expect(() => parseOneJson('{bad')).toThrow("JSON parse error, invalid keyword 'bad'");
    expect(() => parseOneJson('1 2')).toThrow('Expecting at most one JSON value');
  });
});

describe('keyval', () => {
  test('implied qom-type, escapes, lists, last one wins, help', () => {
    expect(keyvalParse('t,a=1,,2,b.0=x,b.1=y,a=3', 'qom-type')).toEqual({ tree: { 'qom-type': 't', a: '3', b: { 0: 'x', 1: 'y' } }, help: false });
    expect(keyvalParse('t,help', 'qom-type').help).toBe(true);
    expect(() => keyvalParse('t,,a=1', 'qom-type')).toThrow("Invalid parameter ''");
    expect(() => keyvalParse('t,a', 'qom-type')).toThrow("Expected '=' after parameter 'a'");
    expect(() => keyvalParse('t,a..b=1', 'qom-type')).toThrow("Invalid parameter 'a..b'");
    expect(() => keyvalParse(`t,${'k'.repeat(128)}=1`, 'qom-type')).toThrow(`Parameter '${'k'.repeat(128)}' is too long`);
  });
  test('typed by the ObjectOptions branch', () => {
    const p = (t: string) => parseObjectKeyval(t, model, CONFIG_SYMBOLS);
    expect(p('memory-backend-ram,id=a,size=1.5k,share=yes,prealloc-threads=010,host-nodes.0=0x1')).toEqual({
      help: false,
      args: { 'qom-type': 'memory-backend-ram', id: 'a', size: 1536, share: true, 'prealloc-threads': 8, 'host-nodes': [1] },
    });
    expect(() => p('memory-backend-ram,id=a,size=1x')).toThrow("Parameter 'size' expects size");
    expect(() => p('memory-backend-ram,id=a,size=1,host-nodes.1=0')).toThrow("Parameter 'host-nodes.0' missing");
    expect(() => p('memory-backend-ram,size=1')).toThrow("Parameter 'id' is missing");
    expect(() => p('nosuch,id=a')).toThrow("Parameter 'qom-type' does not accept value 'nosuch'");
  });
});

describe('human-monitor-command', () => {
  test('info version, status, an empty line, unknown commands; cpu-index is refused', async () => {
    expect(await hmp('info version')).toBe('7.2.0hostmemd 9.9.9\r\n');
    expect(await hmp('info status')).toBe('VM status: running\r\n');
    expect(await hmp('')).toBe('');
    expect(await hmp('frobnicate now')).toBe("unknown command: 'frobnicate'\r\n");
    expect(toQmpError(await hmp('info status', 0).catch((e: unknown) => e))).toEqual({ class: 'GenericError', desc: "Parameter 'cpu-index' expects a CPU number" });
  });

  test('object_add, info memdev, qom-get/set, info qom-tree, object_del', async () => {
    expect(await hmp('object_add memory-backend-ram,id=r,size=1M,host-nodes.0=0,host-nodes.1=1,host-nodes.2=3,policy=bind')).toBe('');
    expect(await hmp('info memdev')).toBe(
      'memory backend: r\r\n  size:  1048576\r\n  merge: true\r\n  dump: true\r\n  prealloc: false\r\n  share: false\r\n  reserve: true\r\n  policy: bind\r\n  host nodes: 0-1,3\r\n\r\n',
    );
    expect(await hmp('qom-get r host-nodes')).toBe('[\r\n    0,\r\n    1,\r\n    3\r\n]\r\n');
    expect(await hmp('qom-set r dump off')).toBe('');
    expect(await hmp('qom-get r dump')).toBe('false\r\n');
    expect(await hmp('qom-set r prealloc-threads 2k')).toBe("Error: Parameter 'prealloc-threads' expects uint64\r\n");
    expect(await hmp('qom-set -j r prealloc-threads 3')).toBe('');
    expect(await hmp('qom-get r[0] size')).toBe('1048576\r\n');
    expect(await hmp('info qom-tree')).toBe('/ (container)\r\n  /objects (container)\r\n    /r (memory-backend-ram)\r\n      /r[0] (memory-region)\r\n');
    expect(await hmp('object_add memory-backend-ram,id=1r,size=1M')).toBe(
      "Error: Parameter 'id' expects an identifier\r\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.\r\n",
    );
    expect(await hmp('object_del r')).toBe('');
    expect(await hmp('qom-get r[0] size')).toBe("Error: Device 'r[0]' not found\r\n");
    expect(await hmp('info memdev')).toBe('\r\n');
  });

  test('object_add help and TYPE,help', async () => {
    expect(await hmp('object_add help')).toMatch(/^List of user creatable objects:\r\n( {2}memory-backend-[a-z-]+\r\n)+$/);
    const opts = await hmp('object_add memory-backend-ram,help');
    expect(opts.startsWith('memory-backend-ram options:\r\n  dump=<bool>            - ')).toBe(true);
    expect(opts).toContain('\r\n  x-use-canonical-path-for-ramblock-id=<bool>\r\n');
  });

  test('info cpr and help', async () => {
    expect(await hmp('info cpr')).toBe('journal: /state (writable)\r\nfd store: no\r\nobject r (memory-backend-ram): not preserved, origin new\r\n');
    expect(await hmp('help qom-list')).toBe('qom-list path -- list the properties of an object\r\n');
    expect(await hmp('help info status')).toBe('info status  -- show the run state (always running)\r\n');
    expect(await hmp('help info nope')).toBe("unknown command: 'info nope'\r\n");
    expect((await hmp('info')).split('\r\n').map((l) => l.split(' -- ')[0])).toEqual(['info cpr ', 'info memdev ', 'info qom-tree [path]', 'info status ', 'info version ', '']);
  });
});

describe('memory-region children', () => {
  test('named after the RAMBlock, indexed for partial paths, gone with the backend', async () => {
    await fx.run('object-add', { 'qom-type': 'memory-backend-memfd', id: 'c', size: MiB, 'x-use-canonical-path-for-ramblock-id': true });
    expect(fx.tree.resolve('\\x2fobjects\\x2fc[0]').kind).toBe('found');
    expect(await fx.run('qom-get', { path: '/objects/c/\\x2fobjects\\x2fc[0]', property: 'size' })).toBe(MiB);
    await fx.run('object-del', { id: 'c' });
    expect(fx.tree.resolve('\\x2fobjects\\x2fc[0]').kind).toBe('none');
  });

  test('no child is left by a failed object-add', async () => {
    await expect(fx.run('object-add', { 'qom-type': 'memory-backend-ram', id: 'p', size: MiB, policy: 'bind' })).rejects.toBeDefined();
    expect(fx.tree.resolve('p[0]').kind).toBe('none');
  });
});

describe('hostile keys', () => {
  test('__proto__ in object_add is a member like any other, never the prototype', async () => {
    expect(await hmp('object_add memory-backend-ram,id=h,size=4096,__proto__.polluted=1')).toBe("Error: Parameter '__proto__' is unexpected\r\n");
    expect(await hmp('object_add memory-backend-ram,id=h,size=4096,__proto__=x')).toBe("Error: Parameter '__proto__' is unexpected\r\n");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(keyvalParse('t,__proto__.a=1', 'qom-type').tree).toEqual(Object.defineProperty({ 'qom-type': 't' }, '__proto__', { value: { a: '1' }, enumerable: true }));
  });
});

test('a command line of megabytes is read in linear time', async () => {
  const big = 'x'.repeat(8 << 20);
  const t0 = Date.now();
  expect((await hmp(`qom-get "${big}" y`)).length).toBe(`Error: Device '' not found\r\n`.length + big.length);
  expect(await hmp(`object_add memory-backend-ram,id=b,size=4096,policy=${big},,`)).toMatch(/^Error: Parameter 'policy' does not accept value 'x{1024}/);
  expect(Date.now() - t0).toBeLessThan(5000);
});
