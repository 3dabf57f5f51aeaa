// Runs `.qmp` transcripts against a QMP socket. Directives (one per line):
//   >>> TEXT    send TEXT and a newline          >>>- TEXT  send TEXT, no newline
//   >>>x TEXT   send bytes, \xHH \r \n \t decoded, no newline appended
//   <<< LINE    expect exactly this server line  <<<~ RE    expect a line matching RE
//   <<<* N      skip N lines                       --- silent  expect nothing for 200 ms
//   # ...       comment
import { RawQmpClient } from '../helpers/qmp-client';

export function decodeEscapes(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) {
      const c = s[i + 1];
      if (c === 'x') {
        out.push(parseInt(s.slice(i + 2, i + 4), 16));
        i += 3;
        continue;
      }
      const simple: Record<string, number> = { r: 13, n: 10, t: 9, '\\': 92 };
      if (c in simple) {
        out.push(simple[c]);
        i += 1;
        continue;
      }
    }
    out.push(...Buffer.from(s[i], 'utf8'));
  }
  return Buffer.from(out);
}

/** What the interpreter needs of a connection (UNIX socket or WebSocket client). */
export interface TranscriptConnection {
  send(data: string | Buffer): void;
  line(timeoutMs?: number): Promise<string>;
  silentFor(ms: number): Promise<boolean>;
  close(): void;
}

/** Plays a transcript over an open connection, then closes it. */
export async function playTranscript(text: string, c: TranscriptConnection): Promise<void> {
  try {
    const lines = text.split('\n');
    for (let n = 0; n < lines.length; n++) {
      const l = lines[n];
      const where = `line ${n + 1}: ${l}`;
      if (l === '' || l.startsWith('#')) continue;
      if (l.startsWith('>>>x ')) {
        c.send(decodeEscapes(l.slice(5)));
        await new Promise((r) => setTimeout(r, 15));
      } else if (l.startsWith('>>>- ')) {
        c.send(l.slice(5));
        await new Promise((r) => setTimeout(r, 15));
      } else if (l.startsWith('>>> ')) {
        c.send(l.slice(4) + '\n');
      } else if (l.startsWith('<<<~ ')) {
        const got = await c.line();
        if (!new RegExp(l.slice(5)).test(got)) throw new Error(`${where}\n  got: ${got}`);
      } else if (l.startsWith('<<<* ')) {
        for (let k = Number(l.slice(5)); k > 0; k--) await c.line();
      } else if (l.startsWith('<<< ')) {
        const got = await c.line();
        if (got !== l.slice(4)) throw new Error(`${where}\n  got: ${got}`);
      } else if (l === '--- silent') {
        if (!(await c.silentFor(200))) throw new Error(`${where}\n  got: ${await c.line()}`);
      } else {
        throw new Error(`bad transcript directive at ${where}`);
      }
    }
  } finally {
    c.close();
  }
}

export async function runTranscript(text: string, sockPath: string): Promise<void> {
  await playTranscript(text, await RawQmpClient.connect(sockPath));
}
