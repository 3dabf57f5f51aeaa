// The successor's command line (src/vmm/argv.ts), hostmemd-upgrade's options (src/vmm/cli.ts)
// and the counter guest's bytes (src/vmm/counter-guest.ts).
import { serverSocketPaths, successorCommand } from '../../../src/vmm/argv';
import { parseUpgradeCli, successorArgv } from '../../../src/vmm/cli';
import { counterBootSector, parseCounter } from '../../../src/vmm/counter-guest';

const base = ['qemu-system-x86_64', '-M', 'pc', '-qmp', 'unix:/run/vm.sock,server=on,wait=off', '-chardev', 'socket,id=ser,path=/run/ser,,x.sock,server=on', '-chardev', 'socket,id=c,path=/run/harness.sock'];

describe('successor command', () => {
  test('server sockets only, with QemuOpts comma escapes', () => {
    expect(serverSocketPaths(base)).toEqual(['/run/vm.sock', '/run/ser,x.sock']);
    expect(serverSocketPaths(['q', '--qmp', 'unix:/a', '-qmp-pretty', 'unix:/b,server'])).toEqual(['/b']);
  });

  test('sockets the old VMM serves are bound under a temporary name; -incoming defer and a private monitor are added', () => {
    const s = successorCommand(base, '/tmp/w/monitor.sock', ['/run/vm.sock', '/run/ser,x.sock'], '.upgrade-7');
    expect(s.argv).toEqual([
      'qemu-system-x86_64', '-M', 'pc', '-qmp', 'unix:/run/vm.sock.upgrade-7,server=on,wait=off',
      '-chardev', 'socket,id=ser,path=/run/ser,,x.sock.upgrade-7,server=on', '-chardev', 'socket,id=c,path=/run/harness.sock',
      '-qmp', 'unix:/tmp/w/monitor.sock,server=on,wait=off', '-incoming', 'defer',
    ]);
    expect(s.renames).toEqual([
      { from: '/run/vm.sock.upgrade-7', to: '/run/vm.sock' },
      { from: '/run/ser,x.sock.upgrade-7', to: '/run/ser,x.sock' },
    ]);
  });

  test('a socket path that is not taken over stays as given', () => {
    expect(successorCommand(base, '/m', [], '.u').renames).toEqual([]);
  });

  test('a command with -incoming of its own is refused', () => {
    expect(() => successorCommand(['q', '--incoming', 'tcp:0:4444'], '/m', [], '.u')).toThrow(/must not have -incoming/);
    expect(() => successorCommand([], '/m', [], '.u')).toThrow(/no successor command/);
  });
});

describe('hostmemd-upgrade options', () => {
  test('parsed, and the launcher prefix added when hostmemd provides the memory', () => {
    const cli = parseUpgradeCli(['--vmm-qmp', 'unix:/v', '--qmp', 'unix:/h', '--memdev', 'ram0:3', '--timeout', '500', '--json', '--', 'qemu', '-m', '1G']);
    expect(cli).toEqual({ vmmQmp: '/v', hostmemd: '/h', memdevs: ['ram0:3'], timeoutMs: 500, json: true, command: ['qemu', '-m', '1G'] });
    expect(successorArgv(cli as never, '/bin/hostmemd-run')).toEqual([process.execPath, '/bin/hostmemd-run', '--qmp', 'unix:/h', '--memdev', 'ram0:3', '--', 'qemu', '-m', '1G']);
    expect(successorArgv(parseUpgradeCli(['--vmm-qmp', '/v', '--', 'q']) as never, '/x')).toEqual(['q']);
  });

  test.each([
    [[], /--vmm-qmp unix:PATH is required/],
    [['--vmm-qmp', '/v'], /no successor command/],
    [['--vmm-qmp', '/v', '--memdev', 'a', '--', 'q'], /--memdev needs --qmp/],
    [['--vmm-qmp', '/v', '--timeout', '0', '--', 'q'], /positive number/],
    [['--vmm-qmp'], /needs a value/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
  ])('%j is refused', (args, why) => {
    expect(() => parseUpgradeCli(args)).toThrow(why);
  });
});

describe('counter guest', () => {
  test('a 512-byte boot sector with the signature, counting at the given address', () => {
    const b = counterBootSector(0x7e00);
    expect(b.length).toBe(512);
    expect(b.subarray(510).toString('hex')).toBe('55aa');
    expect(b.subarray(0, 11).toString('hex')).toBe('31c08ed866ff06007eebf9');
    expect(() => counterBootSector(0x10)).toThrow(RangeError);
  });

  test('xp output parsed', () => {
    expect(parseCounter('0000000000007e00: 0x0113b11e\r\n')).toBe(0x0113b11e);
    expect(() => parseCounter('garbage')).toThrow(/unexpected xp output/);
  });
});
