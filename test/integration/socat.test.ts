// The README's promise: `socat - UNIX-CONNECT:<socket>` shows the greeting and answers
// commands typed line by line. Skipped loudly where socat is not installed.
import { spawn, spawnSync } from 'node:child_process';
import { startInProcess } from '../helpers/daemon';
import { announceSkip } from '../helpers/qemu';

const haveSocat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
if (!haveSocat) announceSkip('socat test', 'socat is not installed (apt-get install socat)');

(haveSocat ? test : test.skip)('socat shows the greeting and answers typed commands', async () => {
  const d = await startInProcess();
  const p = spawn('socat', ['-', `UNIX-CONNECT:${d.sock}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const waitFor = async (n: number) => {
    for (let i = 0; i < 200 && out.split('\r\n').length - 1 < n; i++) await new Promise((r) => setTimeout(r, 10));
  };
  await waitFor(1);
  p.stdin.write('{"execute": "qmp_capabilities"}\n');
  await waitFor(2);
  p.stdin.write('{"execute": "query-version"}\n');
  await waitFor(3);
  p.stdin.end();
  await new Promise((r) => p.on('exit', r));
  const lines = out.split('\r\n');
  expect(lines[0]).toMatch(/^\{"QMP": \{"version": \{"qemu": \{"micro": 0, "minor": 2, "major": 7\}, "package": "hostmemd [0-9.]+"\}, "capabilities": \["oob"\]\}\}$/);
  expect(lines[1]).toBe('{"return": {}}');
  expect(lines[2]).toMatch(/^\{"return": \{"qemu": \{"micro": 0, "minor": 2, "major": 7\}, "package": "hostmemd [0-9.]+"\}\}$/);
  await d.stop();
});

/** `printf INPUT | socat -t 10 - UNIX-CONNECT:SOCK` (async: the daemon runs in this process). */
function pipeThroughSocat(sock: string, input: string): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('socat', ['-t', '10', '-', `UNIX-CONNECT:${sock}`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.on('exit', () => resolve(out));
    p.stdin.end(input);
  });
}

(haveSocat ? test : test.skip)('piped into socat: every request sent before EOF is answered (object-add included), a partial one is dropped, then the daemon closes', async () => {
  const d = await startInProcess();
  const input =
    '{"execute":"qmp_capabilities"}{"execute":"object-add","arguments":{"qom-type":"memory-backend-memfd","id":"m","size":1048576}}' +
    '{"execute":"query-memdev","id":3}{"execute":"query-';
  const started = Date.now();
  // -t 10: socat would wait that long after EOF; the daemon ends the connection first.
  const r = { stdout: await pipeThroughSocat(d.sock, input) };
  const lines = r.stdout.split('\r\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines.map((l) => Object.keys(l)[0])).toEqual(['QMP', 'return', 'timestamp', 'return', 'return']);
  expect(lines[2]).toMatchObject({ event: 'OBJECT_ADDED', data: { id: 'm' } });
  expect(lines[4]).toMatchObject({ id: 3, return: [{ id: 'm' }] });
  expect(Date.now() - started).toBeLessThan(5000);
  // The daemon lives on, the object too.
  expect(await pipeThroughSocat(d.sock, '{"execute":"qmp_capabilities"}{"execute":"query-memdev"}')).toContain('"id": "m"');
  await d.stop();
});
