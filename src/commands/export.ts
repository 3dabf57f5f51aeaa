// Handlers of fd export (qapi/hostmemd.json): memdev-export answers with a copy of a backend's
// memory fd attached to the reply (SCM_RIGHTS, UNIX socket only), query-memdev-exports counts
// them. The backends decide what may be exported (backends/export.ts); this logs who got it.
import { genericError } from '../errors/qmp-error';
import { Handler, PeerCredentials, WithFds } from '../qmp/messages';
import { JsonValue } from '../json/value';
import { UserCreatable } from '../qom/user-creatable';
import { HostMemoryBackend, exportMemory, notABackend, EXPORT_PREALLOC_TEXT } from '../backends';

/** A client whose transport cannot carry fds (a WebSocket). */
export const EXPORT_NO_FD_TRANSPORT_TEXT = 'memdev-export: fds cannot be passed over this connection (only a UNIX socket carries them)';
/** QEMU's text for an id no object has (object-del). */
export const OBJECT_NOT_FOUND_TEXT = "object '%s' not found";

/** One export, for the log (with the receiver's credentials) and the counters. */
export interface ExportRecord {
  id: string;
  qomType: string;
  client: string;
  peer?: PeerCredentials;
  fds: string[];
}

export interface ExportServices {
  get(id: string): UserCreatable | undefined;
  objects(): Iterable<UserCreatable>;
  /** Whether an object of this id is being created or changed with preallocation. */
  preallocating(id: string): boolean;
  exported(e: ExportRecord): void;
}

export function exportHandlers(svc: ExportServices): Map<string, Handler> {
  return new Map<string, Handler>([
    [
      'memdev-export',
      (a, { session }) => {
        const id = a.id as string;
        const passing = session.fdPassing;
        if (!passing) throw genericError(EXPORT_NO_FD_TRANSPORT_TEXT);
        const obj = svc.get(id);
        if (!obj) {
          // An object-add still preallocating is not in the tree yet, but it is not unknown.
          if (svc.preallocating(id)) throw genericError(EXPORT_PREALLOC_TEXT.replace('%s', id));
          throw genericError(OBJECT_NOT_FOUND_TEXT.replace('%s', id));
        }
        if (!(obj instanceof HostMemoryBackend)) throw notABackend(id);
        const m = exportMemory(obj);
        obj.exports++;
        svc.exported({ id, qomType: m.type, client: session.clientId, peer: passing.peer(), fds: m.names });
        const info: Record<string, JsonValue> = {
          id,
          type: m.type,
          size: m.size,
          offset: m.offset,
          'page-size': m.pageSize,
          share: m.share,
          readonly: m.readonly,
          fds: m.names,
        };
        return new WithFds(info, m.fds);
      },
    ],
    [
      'query-memdev-exports',
      () => {
        const out: JsonValue[] = [];
        for (const o of svc.objects()) {
          if (o instanceof HostMemoryBackend && o.exports > 0) out.push({ id: o.name, 'qom-type': o.typeName, exports: o.exports });
        }
        return out;
      },
    ],
  ]);
}
