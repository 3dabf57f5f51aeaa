// The token check of the HTTP routes that need it: an onRequest hook on this plugin's own
// (encapsulated) scope, so it guards exactly the route plugins registered inside it and nothing
// outside (console page, /healthz, 404s). A refusal is logged and counted; what the request
// presented is never logged.
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { isAuthorized } from '../auth';
import type { DaemonMetrics } from '../metrics';

export interface TokenAuthOptions {
  token: string;
  metrics: DaemonMetrics;
  /** Registers the protected route plugins inside the guarded scope. */
  routes(scope: FastifyInstance): Promise<void>;
}

export const tokenAuth: FastifyPluginAsync<TokenAuthOptions> = async (scope, { token, metrics, routes }) => {
  scope.addHook('onRequest', async (req, reply) => {
    if (isAuthorized(req.headers, token)) return;
    metrics.clientRefused('http');
    scope.log.warn({ url: req.routeOptions.url, remote: req.ip }, 'HTTP request refused: missing or wrong token');
    await reply.code(401).header('www-authenticate', 'Bearer realm="hostmemd"').send({ error: 'missing or wrong token' });
  });
  await routes(scope);
};
