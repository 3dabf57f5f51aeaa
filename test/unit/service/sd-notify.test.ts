// sd_notify/sd_listen_fds details that decide whether systemd's fds are taken at all: LISTEN_PID
// must be this process (else the fds belong to someone else and are left alone), the variables
// are removed so nothing inherits them, FDNAME= rules, watchdog only when meant for us.
import { SdNotifier, receiverGone, takeListenFds, validFdName } from '../../../src/service/sd-notify';
import { SUPERVISOR_PID_ENV, followSupervisor } from '../../../src/service/supervisor';

test('LISTEN_FDS meant for another pid is ignored, and the variables are removed either way', () => {
  const env: NodeJS.ProcessEnv = { LISTEN_FDS: '2', LISTEN_PID: String(process.pid + 1), LISTEN_FDNAMES: 'qmp:m0' };
  expect(takeListenFds(env)).toEqual({ listeners: [], stored: [], problems: [] });
  expect(env).toEqual({});
  const none: NodeJS.ProcessEnv = {};
  expect(takeListenFds(none)).toEqual({ listeners: [], stored: [], problems: [] });
  const zero: NodeJS.ProcessEnv = { LISTEN_FDS: '0', LISTEN_PID: String(process.pid) };
  expect(takeListenFds(zero).stored).toEqual([]);
});

test('FDNAME rules: 1-255 characters, no control characters, no colon', () => {
  expect(validFdName('m0')).toBe(true);
  expect(validFdName('/objects/m0')).toBe(true);
  expect(validFdName('x'.repeat(255))).toBe(true);
  for (const bad of ['', 'x'.repeat(256), 'a:b', 'a\nb', 'a\x7f']) expect(validFdName(bad)).toBe(false);
});

test('without NOTIFY_SOCKET nothing is sent; the watchdog runs only when WATCHDOG_PID is ours', () => {
  const off = SdNotifier.fromEnv({});
  expect(off.enabled).toBe(false);
  expect(() => off.ready('x')).not.toThrow();
  expect(off.startWatchdog(() => undefined)).toBeUndefined();
  const other = SdNotifier.fromEnv({ NOTIFY_SOCKET: '@nobody-listens', WATCHDOG_USEC: '1000000', WATCHDOG_PID: '1' }, 2);
  expect(other.startWatchdog(() => undefined)).toBeUndefined();
  other.close();
});

test('followSupervisor: only for a start by hostmemd-supervise (a sane pid); the variable is removed either way', () => {
  // (A valid pid would set this worker's parent-death signal: the integration test covers it.)
  for (const raw of ['', 'x', '1', '0', '-5', '1.5']) {
    const env: NodeJS.ProcessEnv = { [SUPERVISOR_PID_ENV]: raw };
    expect(followSupervisor(env)).toBeUndefined();
    expect(env).toEqual({});
  }
  expect(followSupervisor({})).toBeUndefined();
});

test('a send to a notify socket with no receiver is told apart: ECONNREFUSED and ENOENT mean the store is gone', () => {
  expect(receiverGone(Object.assign(new Error('sendmsg: Connection refused'), { code: 'ECONNREFUSED' }))).toBe(true);
  expect(receiverGone(Object.assign(new Error('sendmsg: No such file or directory'), { code: 'ENOENT' }))).toBe(true);
  expect(receiverGone(Object.assign(new Error('sendmsg: Too many open files'), { code: 'EMFILE' }))).toBe(false);
  expect(receiverGone(undefined)).toBe(false);
});
