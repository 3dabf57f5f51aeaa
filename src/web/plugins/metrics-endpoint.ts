// /metrics: the Prometheus text of the daemon's registry (metrics.ts: all hostmemd_*), rendered
// at scrape time. Register it inside the token scope (token-auth.ts).
import type { FastifyPluginAsync } from 'fastify';
import type { DaemonMetrics } from '../metrics';

export interface MetricsEndpointOptions {
  metrics: Pick<DaemonMetrics, 'render' | 'contentType'>;
}

export const metricsEndpoint: FastifyPluginAsync<MetricsEndpointOptions> = async (app, { metrics }) => {
  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.render();
    return reply.header('content-type', metrics.contentType).send(text);
  });
};
