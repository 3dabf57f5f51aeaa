// The web endpoint's access token: created once in `<state-dir>/token` (mode 0600) and reused
// on later starts, so a bookmarked console URL keeps working across restarts. Comparison is
// constant-time. Who may present the token, and how, is auth.ts's business.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const TOKEN_FILE = 'token';
/** 32 random bytes as hex: only [0-9a-f], so it is safe in a URL, a header and a
 *  WebSocket subprotocol name (which must be an HTTP token). */
const TOKEN_RE = /^[0-9a-f]{64}$/;

export interface TokenInfo {
  token: string;
  path: string;
  /** True when this start created the file. */
  created: boolean;
}

/** Reads the token, or creates it with O_EXCL so two daemons starting at once agree on one. */
export function loadOrCreateToken(stateDir: string): TokenInfo {
  const file = path.join(stateDir, TOKEN_FILE);
  const existing = readToken(file);
  if (existing) return { token: existing, path: file, created: false };
  const token = crypto.randomBytes(32).toString('hex');
  try {
    const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      fs.writeSync(fd, token + '\n');
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Someone else won the race (or left an unreadable file): theirs must be usable.
    const other = readToken(file);
    if (!other) throw new Error(`${file} exists but holds no valid token (expected 64 hex digits); remove it to create a new one`);
    return { token: other, path: file, created: false };
  }
  return { token, path: file, created: true };
}

function readToken(file: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const t = text.trim();
  if (!TOKEN_RE.test(t)) throw new Error(`${file} holds no valid token (expected 64 hex digits); remove it to create a new one`);
  // A token others can read is no secret: tighten a file someone loosened by hand.
  const st = fs.statSync(file);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
  return t;
}

/** Constant-time comparison of a presented token with the real one. */
export function tokenMatches(presented: string | undefined, token: string): boolean {
  if (presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(token);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}
