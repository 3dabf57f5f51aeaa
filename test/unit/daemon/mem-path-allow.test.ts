// --mem-path-allow: the option's parsing, the default (<state-dir>/files created 0750, plus the
// hugetlbfs mounts of /proc/self/mountinfo), and the mountinfo parser.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { parseCli, HELP } from '../../../src/daemon/cli';
import { hugetlbfsMounts, memPathAllowList } from '../../../src/daemon/mem-path-allow';

const silent = pino({ level: 'silent' });

test('mountinfo: hugetlbfs mount points, octal escapes decoded, other file systems ignored', () => {
  const text = [
    '22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '35 22 0:31 / /dev/hugepages rw,relatime shared:12 - hugetlbfs hugetlbfs rw,pagesize=2M',
    '36 22 0:32 / /mnt/huge\\0401G rw,relatime shared:13 - hugetlbfs none rw,pagesize=1024M',
    '37 22 0:33 / /mnt/not - huge rw - tmpfs tmpfs rw',
    '',
  ].join('\n');
  expect(hugetlbfsMounts(text)).toEqual(['/dev/hugepages', '/mnt/huge 1G']);
});

test('--mem-path-allow is repeatable and replaces the default; --help documents it', () => {
  const run = (argv: string[]) => {
    const r = parseCli(argv, {});
    if (r.kind !== 'run') throw new Error(r.output);
    return r.options;
  };
  expect(run([]).memPathAllow).toBeUndefined();
  expect(run(['--mem-path-allow', '/a', '--mem-path-allow=/b']).memPathAllow).toEqual(['/a', '/b']);
  expect(parseCli(['--mem-path-allow', ''], {})).toMatchObject({ kind: 'exit', code: 1 });
  expect(HELP).toContain('--mem-path-allow DIR');
});

describe('the allowed list', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-mpa-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('default: <state-dir>/files, created 0750, first', () => {
    const list = memPathAllowList(undefined, dir, silent);
    const files = path.join(fs.realpathSync(dir), 'files');
    expect(list[0]).toBe(path.join(dir, 'files'));
    expect(list).toContain(files);
    expect(fs.statSync(files).mode & 0o7777).toBe(0o750);
  });

  test('given: absolute, with the real path of a symlinked directory as an alias; nothing created', () => {
    fs.mkdirSync(path.join(dir, 'real'));
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'alias'));
    const list = memPathAllowList([path.join(dir, 'alias'), path.join(dir, 'missing')], dir, silent);
    expect(list).toEqual(expect.arrayContaining([path.join(dir, 'alias'), path.join(fs.realpathSync(dir), 'real'), path.join(dir, 'missing')]));
    expect(fs.existsSync(path.join(dir, 'files'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'missing'))).toBe(false);
  });
});
