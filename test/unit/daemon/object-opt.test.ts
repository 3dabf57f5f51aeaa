// --object parsing in qemu-system's -object syntax: sizes, bool words, lists with repeated
// keys and ranges, implied qom-type, `,,` escapes, JSON form, and QEMU's error texts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSchema } from '../../../src/qapi/load';
import { parseObjectOpt, parseSize } from '../../../src/daemon/object-opt';
import { CONFIG_SYMBOLS } from '../../../src/daemon/config';

const model = loadSchema(path.join(__dirname, '../../../qapi/schema.json'), (p) => fs.readFileSync(p, 'utf8'));
const parse = (s: string) => parseObjectOpt(s, model, CONFIG_SYMBOLS);

test.each([
  ['4096', 4096n],
  ['1k', 1024n],
  ['1K', 1024n],
  ['64M', 64n << 20n],
  ['1.5k', 1536n],
  ['2G', 2n << 30n],
  ['1T', 1n << 40n],
  ['0x1000', 4096n],
  ['16E', undefined],
  ['1.5', undefined],
  ['-1', undefined],
  ['1e3', undefined],
  ['0x10k', undefined],
  ['abc', undefined],
])('qemu_strtosz %s', (text, value) => {
  expect(parseSize(text)).toBe(value);
});

test('key=value pairs, implied qom-type, sizes and bools', () => {
  expect(parse('memory-backend-memfd,id=m0,size=64M,share=on,prealloc=yes,seal=off').args).toEqual({
    'qom-type': 'memory-backend-memfd',
    id: 'm0',
    size: 64 << 20,
    share: true,
    prealloc: true,
    seal: false,
  });
  expect(parse('qom-type=memory-backend-ram,id=r,size=4096').args).toMatchObject({ 'qom-type': 'memory-backend-ram' });
});

test('lists take repeated keys and ranges; other keys: the last wins', () => {
  expect(parse('memory-backend-ram,id=r,size=1M,host-nodes=0,host-nodes=2-3,policy=bind,size=2M').args).toEqual({
    'qom-type': 'memory-backend-ram',
    id: 'r',
    size: 2 << 20,
    'host-nodes': [0, 2, 3],
    policy: 'bind',
  });
});

test(',, escapes a comma in a value', () => {
  expect(parse('memory-backend-file,id=f,size=1M,mem-path=/tmp/a,,b').args['mem-path']).toBe('/tmp/a,b');
});

test('bare booleans are accepted with a deprecation warning', () => {
  const r = parse('memory-backend-ram,id=r,size=1M,prealloc,nomerge');
  expect(r.args).toMatchObject({ prealloc: true, merge: false });
  expect(r.warnings).toEqual(["short-form boolean option 'prealloc' deprecated", "short-form boolean option 'nomerge' deprecated"]);
});

test('integers use base 0', () => {
  expect(parse('memory-backend-ram,id=r,size=1M,prealloc-threads=0x2').args['prealloc-threads']).toBe(2);
});

test('JSON form when the argument starts with {', () => {
  expect(parse('{"qom-type":"memory-backend-ram","id":"r","size":18446744073709551615}').args).toEqual({
    'qom-type': 'memory-backend-ram',
    id: 'r',
    size: 18446744073709551615n,
  });
});

test.each([
  ['memory-backend-ram,id=r,size=1M,foo=1', "Invalid parameter 'foo'"],
  ['memory-backend-ram,id=r,size=1Q', "Parameter 'size' expects a size value"],
  ['memory-backend-ram,id=r,size=1M,share=maybe', "Parameter 'share' expects 'on' or 'off'"],
  ['memory-backend-ram,id=r,size=1M,prealloc-threads=x', "Parameter 'prealloc-threads' expects a uint64 value"],
  ['memory-backend-ram,id=r,size=1M,host-nodes=3-1', "Parameter 'host-nodes' expects a uint64 value or range"],
  ['memory-backend-ram,id=r,size=1M,host-nodes=0-65536', "Parameter 'host-nodes' expects a uint64 value or range"],
  ['nosuch,id=r', "Parameter 'qom-type' does not accept value 'nosuch'"],
  ['id=r,size=1M', "Parameter 'qom-type' is missing"],
  ['{"qom-type":', 'Expecting a JSON object'],
])('%s → %s', (arg, msg) => {
  expect(() => parse(arg)).toThrow(msg);
});
