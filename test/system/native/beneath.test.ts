// native openBeneath on real syscalls, with openat2 and with the O_NOFOLLOW walk: '..' out of the
// directory and absolute paths fail EXDEV, a symlink anywhere ELOOP (the last component too,
// also for O_PATH), what is inside opens and is created as asked, a FIFO opened O_PATH does not
// block, and no fd is left open by a failed walk.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as native from '../../../src/native';
import { tmpDir } from '../../helpers/daemon';
import { fdCount } from '../../helpers/proc';
import { sysError } from '../../helpers/native';

let root: string;
let dir: string;
let top: native.Fd;
beforeAll(() => {
  root = tmpDir('hostmemd-beneath-');
  dir = path.join(root, 'allowed');
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(root, 'outside'), 'secret');
  fs.writeFileSync(path.join(dir, 'sub', 'file'), 'inside');
  fs.symlinkSync(path.join(root, 'outside'), path.join(dir, 'link'));
  fs.symlinkSync(root, path.join(dir, 'dirlink'));
  fs.symlinkSync('sub/file', path.join(dir, 'rel-link'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  top = native.openDirectory(dir);
});
afterAll(() => {
  top.close();
  native.beneathMode('openat2');
  fs.rmSync(root, { recursive: true, force: true });
});

describe.each(['openat2', 'walk'] as const)('%s', (mode) => {
  beforeAll(() => native.beneathMode(mode));

  test.each([
    ['..', '../outside', native.EXDEV],
    ['.. deeper', 'sub/../../outside', native.EXDEV],
    ['absolute', '<root>/outside', native.EXDEV],
    ['symlink (last)', 'link', native.ELOOP],
    ['symlink inside to inside', 'rel-link', native.ELOOP],
    ['symlinked directory', 'dirlink/outside', native.ELOOP],
  ])('%s: refused', (_name, relOrAbs, errno) => {
    const rel = relOrAbs.replace('<root>', root);
    const fds = fdCount();
    for (const flags of [native.O_PATH, native.O_RDONLY, native.O_RDWR | native.O_CREAT]) {
      expect(sysError(() => native.openBeneath(top, rel, flags, 0o644)).errno).toBe(errno);
    }
    expect(fdCount()).toBe(fds);
    expect(fs.readFileSync(path.join(root, 'outside'), 'utf8')).toBe('secret');
  });

  test('inside: opens, creates with the mode, the directory itself as "" and "."', () => {
    const f = native.openBeneath(top, 'sub/file', native.O_RDONLY);
    expect(native.fstat(f).size).toBe(6n);
    f.close();
    const name = `new-${mode}`;
    const c = native.openBeneath(top, `sub/${name}`, native.O_RDWR | native.O_CREAT | native.O_EXCL, 0o600);
    c.close();
    expect(fs.statSync(path.join(dir, 'sub', name)).mode & 0o777).toBe(0o600);
    for (const rel of ['', '.', 'sub/']) {
      const d = native.openBeneath(top, rel, native.O_PATH);
      expect(native.fstat(d).mode & native.S_IFMT).toBe(native.S_IFDIR);
      d.close();
    }
    const sub = native.openBeneath(top, 'sub', native.O_PATH);
    native.unlinkAt(sub, name);
    sub.close();
    expect(fs.existsSync(path.join(dir, 'sub', name))).toBe(false);
    expect(sysError(() => native.openBeneath(top, 'missing/x', native.O_RDWR | native.O_CREAT, 0o644)).code).toBe('ENOENT');
  });

  test('a FIFO opened O_PATH returns at once and says what it is', () => {
    const t0 = Date.now();
    const f = native.openBeneath(top, 'fifo', native.O_PATH);
    expect(native.fstat(f).mode & native.S_IFMT).toBe(0o010000);
    f.close();
    expect(Date.now() - t0).toBeLessThan(500);
  });
});
