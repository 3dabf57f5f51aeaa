// The JSON routes under /api (register them inside the token scope, token-auth.ts): what QMP
// has no command for — name and version, each backend's size and resident bytes (the console
// polls it), the operator caps next to their use.
import type { FastifyPluginAsync } from 'fastify';
import { HOSTMEMD_VERSION, PACKAGE_STRING, QEMU_LEVEL } from '../../version';
import { BackendView, residentOf } from '../resident';
import { QMP_PATH } from './qmp-websocket';

/** One cap: its configured limit (absent: no cap) and the current use. */
export interface CapUsage {
  limit?: number;
  used: number;
}

/** --max-objects (objects, pending creations included), --max-backend-bytes (bytes charged by
 *  backends, pending creations included) and --max-clients (connected QMP clients). */
export interface CapsView {
  objects: CapUsage;
  backendBytes: CapUsage;
  clients: CapUsage;
}

export interface ApiOptions {
  /** The memory backends now in the tree. */
  backends(): Iterable<BackendView>;
  /** The operator caps and what is used of them now. */
  caps?(): CapsView;
}

export const apiRoutes: FastifyPluginAsync<ApiOptions> = async (app, opts) => {
  app.get('/api/info', async () => ({
    name: 'hostmemd',
    version: HOSTMEMD_VERSION,
    package: PACKAGE_STRING,
    qemu: { ...QEMU_LEVEL },
    qmp: QMP_PATH,
  }));
  app.get('/api/backends', async () => {
    const list = [...opts.backends()];
    const resident = residentOf(list);
    return list.map((b, i) => ({ id: b.name, type: b.typeName, size: Number(b.size), resident: Number(resident[i]) }));
  });
  // (/metrics has the caps too, as hostmemd_limit.)
  app.get('/api/caps', async () => opts.caps?.() ?? {});
};
