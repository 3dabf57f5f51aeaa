// Runs the UNIX socket's `.qmp` transcripts over the /qmp WebSocket. Same directives as
// test/integration/transcript-runner.ts; `>>>` lines become frames (text frames, or binary
// frames for `>>>x` raw bytes, which may be invalid UTF-8), and every server frame is one
// line. Frames are fed to the same JSON stream parser, so a message split over several
// `>>>x` frames still parses as one.
import { decodeEscapes } from '../integration/transcript-runner';
import { WsQmpClient } from './ws-client';

export async function runTranscriptOverWebSocket(text: string, url: string, token: string): Promise<void> {
  const c = await WsQmpClient.connect(url, { token });
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
