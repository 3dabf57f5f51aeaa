// The console's static assets (web/dist, built by `npm run build`), read once at start and
// served from memory with strict headers. The assets hold no data: everything the page shows
// comes over the authenticated /qmp WebSocket and /api routes.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Asset {
  body: Buffer;
  type: string;
}

/** From dist/web (built) and src/web (ts-jest) alike, the repository root is two levels up. */
export const DEFAULT_ASSETS_DIR = path.resolve(__dirname, '..', '..', 'web', 'dist');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/** Headers for every console response. The page URL carries the token (?token=), so no
 *  Referer may leak it; only same-origin scripts, styles and connections are allowed. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>hostmemd</title>
<p>The web console is not built. Run <code>npm run build</code> and restart hostmemd.</p>`;

/** Loads every file of the assets directory (flat); `/` serves index.html. */
export function loadAssets(dir: string = DEFAULT_ASSETS_DIR): { assets: Map<string, Asset>; built: boolean } {
  const assets = new Map<string, Asset>();
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    /* not built */
  }
  for (const name of names) {
    const file = path.join(dir, name);
    const type = TYPES[path.extname(name)];
    if (!type || !fs.statSync(file).isFile()) continue;
    assets.set('/' + name, { body: fs.readFileSync(file), type });
  }
  const index = assets.get('/index.html');
  const built = index !== undefined;
  assets.set('/', index ?? { body: Buffer.from(NOT_BUILT), type: TYPES['.html'] });
  return { assets, built };
}
