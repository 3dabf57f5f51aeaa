// What the daemon's events become outside: QMP events for every negotiated client, log lines
// (one per object change, failed commands at warn, every command at debug), and metrics.
import { Monitor } from '../qmp/monitor';
import { EventBus } from './event-bus';
import type { Logger } from './logger';
import type { DaemonMetrics } from '../web/metrics';
import { clip } from '../errors/text';

export function observe(bus: EventBus, to: { monitor: Monitor; logger: Logger; metrics?: DaemonMetrics; restoring?: () => boolean }): void {
  const { monitor, logger, metrics } = to;
  bus.on('object-added', (o) => {
    metrics?.objectAdded(o.typeName);
    // A restore's objects are counted in one line at its end (restore.ts): a line each would
    // be 1,000 synchronous writes before READY.
    if (to.restoring?.()) logger.debug({ id: o.name, type: o.typeName }, 'object added');
    else logger.info({ id: o.name, type: o.typeName }, 'object added');
    monitor.emitEvent('OBJECT_ADDED', { id: o.name, 'qom-type': o.typeName, path: o.canonicalPath() });
  });
  bus.on('object-deleted', (o) => {
    metrics?.objectDeleted(o.typeName);
    logger.info({ id: o.name, type: o.typeName }, 'object deleted');
    monitor.emitEvent('OBJECT_DELETED', { id: o.name, 'qom-type': o.typeName, path: `/objects/${o.name}` });
  });
  bus.on('shutdown-requested', (reason) => monitor.emitEvent('SHUTDOWN', { guest: false, reason }));
  bus.on('command-done', ({ command: name, client, error, startNs }) => {
    const ms = Number(process.hrtime.bigint() - startNs) / 1e6;
    metrics?.commandDone(name, error?.class, startNs);
    // Client-chosen text is logged clipped (MAX_ECHO_CHARS): a 64 MiB command name must not
    // become a 64 MiB log line.
    const command = clip(name);
    if (error) logger.warn({ client, command, outcome: error.class, desc: clip(error.desc), ms }, 'command failed');
    else if (logger.isLevelEnabled('debug')) logger.debug({ client, command, outcome: 'ok', ms }, 'command');
  });
  bus.on('client-connected', ({ transport, client }) => {
    metrics?.clientConnected(transport);
    logger.debug({ client }, 'client connected');
  });
  bus.on('client-disconnected', ({ transport, client }) => {
    metrics?.clientDisconnected(transport);
    logger.debug({ client }, 'client disconnected');
  });
  bus.on('memdev-exported', (e) => {
    metrics?.memdevExported(e.qomType);
    // Who got the memory, in the kernel's words (SO_PEERCRED): an audit trail of fd holders.
    logger.info({ id: e.id, type: e.qomType, client: e.client, pid: e.peer?.pid, uid: e.peer?.uid, gid: e.peer?.gid, fds: e.fds }, 'memory exported');
  });
  if (metrics) bus.on('prealloc-progress', (e) => metrics.preallocProgress(e));
}
