// /healthz: open (no token), for supervisors and probes: the daemon answers, with the number
// of connected QMP clients.
import type { FastifyPluginAsync } from 'fastify';
import type { Monitor } from '../../qmp/monitor';

export interface HealthOptions {
  monitor: Pick<Monitor, 'clientCount'>;
}

export const health: FastifyPluginAsync<HealthOptions> = async (app, { monitor }) => {
  app.get('/healthz', async () => ({ status: 'ok', clients: monitor.clientCount }));
};
