// Differential test: the protocol-level transcripts marked `#! differential` are sent to QEMU
// 7.2 and to hostmemd, and every reply's error class and text, id and reply kind must agree.
// Return values are compared only by kind (versions and packages differ by design).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RawQmpClient } from '../../helpers/qmp-client';
import { qemuAvailable, qemuAndHostmemd, announceSkip } from '../../helpers/qemu';
import { decodeEscapes } from '../../integration/transcript-runner';

const dir = path.join(__dirname, '..', '..', 'transcripts');
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.qmp') && fs.readFileSync(path.join(dir, f), 'utf8').startsWith('#! differential'))
  .sort();

function sends(text: string): Buffer[] {
  const out: Buffer[] = [];
  for (const l of text.split('\n')) {
    if (l.startsWith('>>>x ')) out.push(decodeEscapes(l.slice(5)));
    else if (l.startsWith('>>>- ')) out.push(Buffer.from(l.slice(5)));
    else if (l.startsWith('>>> ')) out.push(Buffer.from(l.slice(4) + '\n'));
  }
  return out;
}

/** Reduces a reply line to what must match: class/desc of errors, id, kind of return. */
function normalise(line: string): string {
  const m = JSON.parse(line) as Record<string, unknown>;
  if ('QMP' in m) return 'greeting ' + JSON.stringify((m.QMP as Record<string, unknown>).capabilities);
  const id = 'id' in m ? ` id=${JSON.stringify(m.id)}` : '';
  if ('error' in m) {
    const e = m.error as { class: string; desc: string };
    return `error ${e.class}: ${e.desc}${id}`;
  }
  if ('return' in m) {
    const r = m.return;
    const kind = Array.isArray(r) ? 'array' : typeof r === 'object' && r !== null && Object.keys(r).length === 0 ? '{}' : typeof r;
    return `return ${kind}${id}`;
  }
  if ('event' in m) return `event ${String(m.event)}`;
  return line;
}

async function collect(sockPath: string, chunks: Buffer[]): Promise<string[]> {
  const c = await RawQmpClient.connect(sockPath);
  const out: string[] = [normalise(await c.line())];
  for (const b of chunks) {
    c.send(b);
    await new Promise((r) => setTimeout(r, 15));
  }
  // Everything has been answered once the connection is quiet for a while.
  for (;;) {
    try {
      out.push(normalise(await c.line(400)));
    } catch {
      break;
    }
  }
  c.close();
  return out;
}

const haveQemu = qemuAvailable();
if (!haveQemu) announceSkip('differential tests against QEMU 7.2', 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
const maybe = haveQemu ? describe : describe.skip;

maybe('differential: hostmemd vs QEMU 7.2', () => {
  const both = qemuAndHostmemd();
  test.each(files)('%s answers like QEMU', async (f) => {
    const chunks = sends(fs.readFileSync(path.join(dir, f), 'utf8'));
    const [theirs, ours] = [await collect(both.qemu.sock, chunks), await collect(both.hostmemd.sock, chunks)];
    expect(ours).toEqual(theirs);
    expect(ours.length).toBeGreaterThan(3);
  });
});
