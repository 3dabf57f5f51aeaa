// The console's static assets (static.ts loads them from web/dist once, at registration):
// each served from memory with the strict security headers; `/` is index.html, or a notice
// when the console is not built. Open: the assets hold no data.
import type { FastifyPluginAsync } from 'fastify';
import { SECURITY_HEADERS, loadAssets } from '../static';

export interface ConsoleAssetsOptions {
  /** Defaults to web/dist of the repository. */
  assetsDir?: string;
}

export const consoleAssets: FastifyPluginAsync<ConsoleAssetsOptions> = async (app, { assetsDir }) => {
  const { assets, built } = loadAssets(assetsDir);
  if (!built) app.log.warn('web console assets not found (web/dist): run `npm run build`; / serves a notice');
  for (const [url, asset] of assets) {
    app.get(url, async (_req, reply) => reply.headers(SECURITY_HEADERS).type(asset.type).send(asset.body));
  }
};
