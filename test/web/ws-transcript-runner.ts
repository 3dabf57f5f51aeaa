// Runs the UNIX socket's `.qmp` transcripts over the /qmp WebSocket. Same directives as
// test/integration/transcript-runner.ts; `>>>` lines become frames (text frames, or binary
// frames for `>>>x` raw bytes, which may be invalid UTF-8), and every server frame is one
// line. Frames are fed to the same JSON stream parser, so a message split over several
// `>>>x` frames still parses as one.
import { playTranscript } from '../integration/transcript-runner';
import { WsQmpClient } from './ws-client';

export async function runTranscriptOverWebSocket(text: string, url: string, token: string): Promise<void> {
  await playTranscript(text, await WsQmpClient.connect(url, { token }));
}
