// Protocol transcripts (test/transcripts/*.qmp) against an in-process daemon: QEMU's exact
// greeting, negotiation, top-level errors, parse errors and OOB rules, byte for byte.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startInProcess, InProcess } from '../helpers/daemon';
import { runTranscript } from './transcript-runner';

const dir = path.join(__dirname, '..', 'transcripts');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.qmp')).sort();

describe('QMP transcripts over the UNIX socket', () => {
  let d: InProcess;
  beforeAll(async () => {
    d = await startInProcess();
  });
  afterAll(async () => {
    await d.stop();
  });
  test.each(files)('%s', async (f) => {
    await runTranscript(fs.readFileSync(path.join(dir, f), 'utf8'), d.sock);
  });
});
