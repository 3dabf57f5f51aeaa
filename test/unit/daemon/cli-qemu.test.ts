// QEMU's command-line forms on hostmemd's command line: QemuOpts syntax, the monitor options
// and the no-ops launchers pass. Expected error texts are qemu-system-x86_64 7.2's (observed),
// with hostmemd's name in front; test/integration/qemu-launch.test.ts compares them live.
import { parseCli, DaemonOptions, HELP } from '../../../src/daemon/cli';
import { parseOpts } from '../../../src/daemon/qemu-opts';
import { CHARDEV_OPTS } from '../../../src/daemon/qemu-monitors';

const MEM = 64 * 1024 ** 3;
function run(...argv: string[]): DaemonOptions {
  const r = parseCli(argv, {}, MEM);
  if (r.kind !== 'run') throw new Error(`expected to run, got: ${r.output}`);
  return r.options;
}
function fail(...argv: string[]): string {
  const r = parseCli(argv, {}, MEM);
  if (r.kind !== 'exit' || r.code !== 1) throw new Error(`expected exit 1, got ${JSON.stringify(r)}`);
  return r.output;
}

describe('QemuOpts syntax', () => {
  test('implied first key, ",," escapes, last value wins, first id counts', () => {
    const { opts } = parseOpts(CHARDEV_OPTS, 'socket,id=a,path=/x,,y,path=/z,,w,id=b', true);
    expect(opts.id).toBe('a');
    expect(opts.values.get('backend')).toBe('socket');
    expect(opts.values.get('path')).toBe('/z,w');
  });
  test('short-form booleans warn as QEMU does', () => {
    const r = parseOpts(CHARDEV_OPTS, 'socket,id=a,path=/x,server,nowait', true);
    expect(r.opts.values.get('server')).toBe(true);
    expect(r.opts.values.get('wait')).toBe(false);
    expect(r.warnings).toEqual([
      ["warning: short-form boolean option 'server' deprecated", 'Please use server=on instead'],
      ["warning: short-form boolean option 'nowait' deprecated", 'Please use wait=off instead'],
    ]);
  });
});

describe('the monitor forms QEMU launchers use', () => {
  test("QEMUMachine: -chardev socket,id=mon,fd=3 -mon chardev=mon,mode=control and its no-ops", () => {
    const o = run('-display', 'none', '-vga', 'none', '-chardev', 'socket,id=mon,fd=3', '-mon', 'chardev=mon,mode=control', '-machine', 'none', '-nodefaults', '-nographic', '-no-shutdown', '-S', '-name', 'vm1', '-pidfile', '/tmp/p');
    expect(o.monitors).toEqual([{ where: '-chardev socket,id=mon,fd=3', label: 'mon', endpoint: { kind: 'fd', fd: 3, server: false, wait: true }, pretty: false }]);
    expect(o.qmp).toEqual([]);
    expect(o).toMatchObject({ name: 'vm1', pidfile: '/tmp/p', startPaused: true });
  });
  test('the same with --x spellings (QEMU takes both)', () => {
    const one = run('-display', 'none', '-vga', 'none', '-chardev', 'socket,id=mon,fd=3', '-mon', 'chardev=mon,mode=control', '-S', '-M', 'none');
    const two = run('--display', 'none', '--vga', 'none', '--chardev', 'socket,id=mon,fd=3', '--mon', 'chardev=mon,mode=control', '--S', '--M', 'none');
    expect(two.monitors.map((m) => m.endpoint)).toEqual(one.monitors.map((m) => m.endpoint));
    expect(two.startPaused).toBe(true);
    expect(run('--qmp-pretty', 'unix:/a').monitors[0].endpoint).toEqual(run('-qmp-pretty', 'unix:/a').monitors[0].endpoint);
  });
  test('QEMUMachine with a path: the launcher listens, hostmemd connects', () => {
    expect(run('-chardev', 'socket,id=mon,path=/run/m.sock', '-mon', 'chardev=mon,mode=control').monitors[0].endpoint).toEqual({ kind: 'unix-connect', path: '/run/m.sock', reconnectS: 0 });
  });
  test('qmp-shell-wrap: -qmp unix:PATH connects; reconnect=N', () => {
    expect(run('-qmp', 'unix:/a').monitors[0]).toEqual({ where: '-qmp unix:/a', label: 'compat_monitor0', endpoint: { kind: 'unix-connect', path: '/a', reconnectS: 0 }, pretty: false });
    expect(run('--qmp-pretty', 'unix:/a,reconnect=2').monitors[0]).toMatchObject({ endpoint: { kind: 'unix-connect', reconnectS: 2 }, pretty: true });
  });
  test('libvirt: a listening fd with server=on,wait=off', () => {
    expect(run('-chardev', 'socket,id=charmonitor,fd=7,server=on,wait=off', '-mon', 'chardev=charmonitor,id=monitor,mode=control').monitors[0].endpoint).toEqual({ kind: 'fd', fd: 7, server: true, wait: false });
  });
  test('listening without waiting is a plain --qmp socket; wait=on (the default) and pretty=on are monitors', () => {
    const o = run('-qmp', 'unix:/a,server=on,wait=off', '--qmp', 'unix:/b', '-qmp', 'unix:/c,server=on', '-chardev', 'socket,id=d,path=/d,server=on,wait=off', '-mon', 'd,mode=control,pretty=on');
    expect(o.qmp).toEqual(['/a', '/b']);
    expect(o.monitors.map((m) => m.endpoint)).toEqual([
      { kind: 'unix-listen', path: '/c', wait: true },
      { kind: 'unix-listen', path: '/d', wait: false },
    ]);
  });
  test('--qmp unix:PATH (hostmemd spelling) still listens; --qmp ...,server=off connects', () => {
    expect(run('--qmp', 'unix:/b').qmp).toEqual(['/b']);
    expect(run('--qmp', 'unix:/b,server=off').monitors[0].endpoint).toEqual({ kind: 'unix-connect', path: '/b', reconnectS: 0 });
    expect(run('--qmp=unix:/b').qmp).toEqual(['/b']);
  });
  test('TCP only when allowed, loopback unless allowed further', () => {
    expect(fail('-qmp', 'tcp:127.0.0.1:4444,server=on,wait=off')).toBe(
      'hostmemd: -qmp tcp:127.0.0.1:4444,server=on,wait=off: a TCP monitor is unauthenticated: anyone who can connect to it controls hostmemd; pass --qmp-allow-tcp to allow one on a loopback address\n',
    );
    expect(run('--qmp-allow-tcp', '-qmp', 'tcp:127.0.0.1:4444,server=on,wait=off').monitors[0].endpoint).toEqual({ kind: 'tcp-listen', host: '127.0.0.1', port: '4444', wait: false });
    expect(fail('--qmp-allow-tcp', '-qmp', 'tcp::4444,server=on')).toContain("'' is not a loopback address; pass --qmp-allow-remote");
    expect(run('--qmp-allow-tcp', '--qmp-allow-remote', '-chardev', 'socket,id=m,host=10.0.0.1,port=5', '-mon', 'chardev=m,mode=control').monitors[0].endpoint).toEqual({ kind: 'tcp-connect', host: '10.0.0.1', port: '5', reconnectS: 0 });
  });
  test('any monitor given: no default socket (qmp stays empty)', () => {
    expect(run('-qmp', 'unix:/x').qmp).toEqual([]);
  });
});

describe("QEMU 7.2's error texts", () => {
  test.each([
    [['--bogus'], 'hostmemd: --bogus: invalid option\n'],
    [['-bogus'], 'hostmemd: -bogus: invalid option\n'],
    [['-m', '1G'], 'hostmemd: -m: invalid option\n'],
    [['-qmp'], 'hostmemd: -qmp: requires an argument\n'],
    [['-pidfile'], 'hostmemd: -pidfile: requires an argument\n'],
    [['-chardev', 'socket,id=x', '-mon', 'chardev=x,mode=control'], 'hostmemd: -chardev socket,id=x: Unable to parse FD number \n'],
    [['-chardev', 'socket,id=x,path=/s', '-mon', 'chardev=y,mode=control'], 'hostmemd: -mon chardev=y,mode=control: chardev "y" not found\n'],
    [['-chardev', 'socket,id=x,path=/s', '-mon', 'chardev=x,mode=bogus'], "hostmemd: -mon chardev=x,mode=bogus: Parameter 'mode' does not accept value 'bogus'\n"],
    [['-chardev', 'socket,id=x,path=/s', '-mon', 'chardev=x,mode=control,foo=1'], "hostmemd: -mon chardev=x,mode=control,foo=1: Invalid parameter 'foo'\n"],
    [['-chardev', 'socket,id=x,path=/s,server=on,wait=off,foo=1'], "hostmemd: -chardev socket,id=x,path=/s,server=on,wait=off,foo=1: Invalid parameter 'foo'\n"],
    [['-chardev', 'bogus,id=x'], "hostmemd: -chardev bogus,id=x: 'bogus' is not a valid char driver name\n"],
    [['-chardev', 'socket'], 'hostmemd: -chardev socket: chardev: no id specified\n'],
    [['-chardev', 'socket,id=x,path=/s,fd=3'], "hostmemd: -chardev socket,id=x,path=/s,fd=3: None or one of 'path', 'fd' or 'host' option required.\n"],
    [['-chardev', 'socket,id=x,fd=abc'], 'hostmemd: -chardev socket,id=x,fd=abc: Unable to parse FD number abc\n'],
    [['-qmp', 'bogus:foo'], "hostmemd: -qmp bogus:foo: 'bogus:foo' is not a valid char driver\nhostmemd: -qmp bogus:foo: parse error: bogus:foo\n"],
    [['-qmp', 'unix:/n,server=maybe'], "hostmemd: -qmp unix:/n,server=maybe: Parameter 'server' expects 'on' or 'off'\nhostmemd: -qmp unix:/n,server=maybe: parse error: unix:/n,server=maybe\n"],
    [['-qmp', 'unix:/s,server=on,wait=on,foo'], "hostmemd: -qmp unix:/s,server=on,wait=on,foo: Invalid parameter 'foo'\nhostmemd: -qmp unix:/s,server=on,wait=on,foo: parse error: unix:/s,server=on,wait=on,foo\n"],
    [['-qmp', 'unix:'], 'hostmemd: -qmp unix:: Unable to parse FD number \n'],
    [['-mon', 'chardev=x'], 'hostmemd: -mon chardev=x: chardev "x" not found\n'],
    [['-chardev', 'socket,id=x,path=/a', '-chardev', 'socket,id=x,path=/b'], "hostmemd: -chardev socket,id=x,path=/b: Duplicate ID 'x' for chardev\n"],
    [['-chardev', 'socket,id=1x,path=/a'], "hostmemd: -chardev socket,id=1x,path=/a: Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"],
    [['-chardev', 'socket,id=x,path=/a', '-mon', 'chardev=x,mode=control,pretty=maybe'], "hostmemd: -mon chardev=x,mode=control,pretty=maybe: Parameter 'pretty' expects 'on' or 'off'\n"],
    [['-name', 'foo,bogus=1'], "hostmemd: -name foo,bogus=1: Invalid parameter 'bogus'\n"],
    [['-chardev', 'socket,id=x,path=/a', '-mon', 'chardev=x,mode=readline,pretty=on'], "hostmemd: -mon chardev=x,mode=readline,pretty=on: 'pretty' is not compatible with HMP monitors\n"],
    [['-chardev', 'socket,id=x,path=/a,server=on,wait=off,reconnect=1'], "hostmemd: -chardev socket,id=x,path=/a,server=on,wait=off,reconnect=1: 'reconnect' option is incompatible with socket in server listen mode\n"],
    [['-chardev', 'socket,id=x,path=/a,server=off,wait=off'], "hostmemd: -chardev socket,id=x,path=/a,server=off,wait=off: 'wait' option is incompatible with socket in client connect mode\n"],
    [['-chardev', 'socket,id=x,host=127.0.0.1'], 'hostmemd: -chardev socket,id=x,host=127.0.0.1: chardev: socket: no port given\n'],
    [['-chardev', 'socket,id=x,reconnect=abc,path=/n'], "hostmemd: -chardev socket,id=x,reconnect=abc,path=/n: Parameter 'reconnect' expects a number\n"],
    [['-chardev', 'socket,id=x,path=/a', '-mon', 'chardev=x,mode=control', '-mon', 'chardev=x,mode=control'], "hostmemd: -mon chardev=x,mode=control: Device 'x' is in use\n"],
    [['-chardev', 'socket,id=x,path=/a', '-mon', 'chardev=x,mode=control,id=m1', '-mon', 'chardev=x,mode=control,id=m1'], "hostmemd: -mon chardev=x,mode=control,id=m1: Duplicate ID 'm1' for mon\n"],
    [['-chardev', 'socket,id=x,path=/a,bogus'], "hostmemd: -chardev socket,id=x,path=/a,bogus: warning: short-form boolean option 'bogus' deprecated\nPlease use bogus=on instead\nhostmemd: -chardev socket,id=x,path=/a,bogus: Invalid parameter 'bogus'\n"],
  ])('%j', (argv, text) => {
    expect(fail(...argv)).toBe(text);
  });

  test("what hostmemd refuses that QEMU would do says so in hostmemd's words", () => {
    expect(fail('-chardev', 'socket,id=x,path=/a', '-mon', 'chardev=x')).toContain('hostmemd has no human monitor on a chardev (mode=readline)');
    expect(fail('-display', 'gtk')).toBe("hostmemd: -display gtk: hostmemd has no display: only '-display none' is accepted\n");
    expect(fail('-M', 'pc')).toBe("hostmemd: -M pc: hostmemd has no machine: only '-M none' is accepted\n");
    expect(fail('-qmp', 'stdio')).toBe('hostmemd: -qmp stdio: hostmemd serves QMP only on unix: and tcp: sockets\n');
    expect(fail('-chardev', 'socket,id=x,path=/a,telnet=on')).toContain("hostmemd does not support the socket option 'telnet'");
    expect(fail('disk.img')).toContain('hostmemd takes no disk image');
  });
});

test('--help lists every accepted QEMU option', () => {
  for (const o of ['-chardev', '-mon', '-qmp', '-qmp-pretty', '-object', '-pidfile', '-name', '-S', '-display none', '-vga none', '-machine none', '-M none', '-nodefaults', '-nographic', '-no-shutdown', '-no-user-config', '--qmp-allow-tcp', '--qmp-allow-remote']) {
    expect(HELP).toContain(o);
  }
});

test('existing hostmemd options keep working in both spellings', () => {
  const o = run('--state-dir', '/s', '-accel', 'none', '--max-clients=5', '-object', 'memory-backend-ram,id=m,size=1M', '--ws', '127.0.0.1:0');
  expect(o).toMatchObject({ stateDir: '/s', accel: 'none', maxClients: 5, objects: ['memory-backend-ram,id=m,size=1M'], ws: { host: '127.0.0.1', port: 0 } });
});
