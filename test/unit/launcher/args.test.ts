// hostmemd-run's pure parts: the command line (every refusal's text), the fd plan (explicit
// numbers, defaults from 3 past explicit ones, extra fds after the memory fds) and the PATH
// search that finds COMMAND before anything is fetched.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseRunArgs, USAGE } from '../../../src/launcher/args';
import { planFds, fdsVariable } from '../../../src/launcher/fd-plan';
import { resolveCommand } from '../../../src/launcher/command';

describe('hostmemd-run arguments', () => {
  test('a full command line', () => {
    expect(parseRunArgs(['--qmp', 'unix:/run/h.sock', '--memdev', 'ram0:3', '--memdev=ram1', '--timeout', '2.5', '--', 'qemu-system-x86_64', '--', '-m', '64M'])).toEqual({
      kind: 'run',
      request: { socketPath: '/run/h.sock', memdevs: [{ id: 'ram0', fd: 3 }, { id: 'ram1' }], waitMs: 2500, command: ['qemu-system-x86_64', '--', '-m', '64M'] },
    });
  });

  test('--help wins, wherever it is before --', () => {
    expect(parseRunArgs(['--qmp', 'unix:/x', '--help'])).toEqual({ kind: 'help', text: USAGE });
    expect(parseRunArgs(['--qmp', 'unix:/x', '--memdev', 'a', '--', 'x', '--help']).kind).toBe('run');
  });

  test.each([
    [['--memdev', 'ram0:3', '--', 'true'], '--qmp unix:PATH is required'],
    [['--qmp', 'tcp:localhost:4444', '--memdev', 'ram0', '--', 'true'], "--qmp 'tcp:localhost:4444': only a unix:PATH socket can carry fds"],
    [['--qmp', 'unix:/x', '--', 'true'], 'at least one --memdev ID[:FD] is required'],
    [['--qmp', 'unix:/x', '--memdev', 'ram0:x3', '--', 'true'], "--memdev 'ram0:x3': FD must be a decimal fd number, 3 or above"],
    [['--qmp', 'unix:/x', '--memdev', 'ram0:', '--', 'true'], "--memdev 'ram0:': FD must be a decimal fd number, 3 or above"],
    [['--qmp', 'unix:/x', '--memdev', 'ram0:1', '--', 'true'], "--memdev 'ram0:1': fd 1 is standard output; memory fds go at 3 or above"],
    [['--qmp', 'unix:/x', '--memdev', 'ram0:0', '--', 'true'], "--memdev 'ram0:0': fd 0 is standard input; memory fds go at 3 or above"],
    [['--qmp', 'unix:/x', '--memdev', ':3', '--', 'true'], "--memdev ':3': the backend id is empty"],
    [['--qmp', 'unix:/x', '--memdev', 'a:3', '--memdev', 'b:3', '--', 'true'], "--memdev 'b:3': fd 3 is given twice"],
    [['--qmp', 'unix:/x', '--memdev', 'a:3', '--memdev', 'a:4', '--', 'true'], "--memdev 'a:4': backend a is given twice"],
    [['--qmp', 'unix:/x', '--memdev', 'a:3'], 'no command given after --'],
    [['--qmp', 'unix:/x', '--memdev', 'a:3', 'qemu'], "unexpected argument 'qemu' (the command goes after --)"],
    [['--qmp', 'unix:/x', '--bogus', '--', 'true'], "unknown option '--bogus'"],
    [['--qmp'], 'option --qmp needs a value'],
    [['--qmp', 'unix:/x', '--memdev', 'a', '--timeout', '0', '--', 'x'], "--timeout '0': expected seconds, more than 0 and at most 3600"],
    [['--qmp', 'unix:/x', '--memdev', 'a', '--timeout', '1e3', '--', 'x'], "--timeout '1e3': expected seconds, more than 0 and at most 3600"],
    [['--qmp', 'unix:', '--memdev', 'a', '--', 'x'], "--qmp 'unix:': only a unix:PATH socket can carry fds"],
    [['--qmp', 'unix:/x', '--memdev', 'a:3', '--', ''], 'no command given after --'],
  ])('refuses %j', (args, text) => {
    expect(parseRunArgs(args)).toEqual({ kind: 'error', message: text });
  });
});

describe('hostmemd-run fd plan', () => {
  test('explicit numbers as given; defaults from 3 skipping them; extra fds after every memory fd', () => {
    const plan = planFds(
      [
        { id: 'g', names: ['memory', 'kvm-vm'] },
        { id: 'a', names: ['memory'], fd: 4 },
        { id: 'b', names: ['memory'] },
        { id: 'c', names: ['memory'], fd: 3 },
      ],
      [],
    );
    expect(plan).toEqual([
      { id: 'g', name: 'memory', target: 5 },
      { id: 'a', name: 'memory', target: 4 },
      { id: 'b', name: 'memory', target: 6 },
      { id: 'c', name: 'memory', target: 3 },
      { id: 'g', name: 'kvm-vm', target: 7 },
    ]);
    expect(fdsVariable(plan)).toBe('g:memory=5,a:memory=4,b:memory=6,c:memory=3,g:kvm-vm=7');
  });

  test('default numbers skip taken ones', () => {
    expect(planFds([{ id: 'a', names: ['memory'] }, { id: 'b', names: ['memory'] }], [3, 5]).map((p) => p.target)).toEqual([4, 6]);
  });
});

describe('hostmemd-run command lookup', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostmemd-run-unit-'));
    fs.mkdirSync(path.join(dir, 'a'));
    fs.mkdirSync(path.join(dir, 'b'));
    fs.writeFileSync(path.join(dir, 'a', 'vmm'), 'not executable', { mode: 0o644 });
    fs.writeFileSync(path.join(dir, 'b', 'vmm'), '#!/bin/sh\n', { mode: 0o755 });
    fs.mkdirSync(path.join(dir, 'a', 'dir'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('PATH in order, skipping what is not executable; a slash means as given', () => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    expect(resolveCommand('vmm', `${a}:${b}`)).toEqual({ ok: true, file: path.join(b, 'vmm') });
    expect(resolveCommand('vmm', `:${b}`, a)).toEqual({ ok: true, file: path.join(b, 'vmm') });
    expect(resolveCommand('vmm', a)).toEqual({ ok: false, status: 126, message: `${path.join(a, 'vmm')}: Permission denied (not an executable file)` });
    expect(resolveCommand('nothing-here', `${a}:${b}`)).toEqual({ ok: false, status: 127, message: 'nothing-here: command not found' });
    expect(resolveCommand(path.join(b, 'vmm'), '')).toEqual({ ok: true, file: path.join(b, 'vmm') });
    expect(resolveCommand(path.join(a, 'dir'), '')).toMatchObject({ ok: false, status: 126 });
    expect(resolveCommand(path.join(a, 'none'), '')).toMatchObject({ ok: false, status: 127 });
    expect(resolveCommand('sh', undefined)).toMatchObject({ ok: true });
  });
});
