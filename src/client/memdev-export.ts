// Getting memory backends out of hostmemd: `memdev-export` on the UNIX socket answers with a
// description of the backend and its fds attached as SCM_RIGHTS ("memory", and "kvm-vm" for a
// guest-memfd, which only works in the VM that made it). fetchMemdevFds is the library entry
// for hostmemd-run and for tools built on it (a VMM upgrade takes the same fds again).
import type { Fd } from '../native';
import { isJsonObject, JsonFloat, JsonObject, JsonValue } from '../json/value';
import { ClientError, ClientOptions, QmpFdClient, describeError } from './qmp-fd-client';

/** One fd of an export, by the name the reply gives it. */
export interface NamedFd {
  name: string;
  fd: Fd;
}

/** A backend as exported: the reply's description and the fds, in the reply's order. */
export interface ExportedMemdev {
  id: string;
  type: string;
  size: bigint;
  /** Where the backend's memory starts in the "memory" fd. */
  offset: bigint;
  pageSize: bigint;
  share: boolean;
  /** The "memory" fd is read-only (a read-only file backend): the VMM must map it so. */
  readonly: boolean;
  fds: NamedFd[];
}

/** The "memory" fd of an export. */
export function memoryFd(m: ExportedMemdev): Fd {
  const f = m.fds.find((x) => x.name === 'memory');
  if (!f) throw new ClientError(`memdev-export ${m.id}: the reply has no "memory" fd`);
  return f.fd;
}

/** Closes every fd of the given exports (a caller that gives up, or is done with them). */
export function closeExports(list: readonly ExportedMemdev[]): void {
  for (const m of list) for (const f of m.fds) f.fd.close();
}

function bigintOf(v: JsonValue | undefined): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (v instanceof JsonFloat && Number.isSafeInteger(v.value)) return BigInt(v.value);
  return undefined;
}

/** Checks the reply's body and pairs its fd names with the fds that arrived; the fds are
 *  closed when the two do not match. */
function describe(id: string, body: JsonObject, fds: Fd[]): ExportedMemdev {
  const bad = (why: string): never => {
    for (const fd of fds) fd.close();
    throw new ClientError(`memdev-export ${id}: unexpected reply (${why})`);
  };
  const names = body.fds;
  if (!Array.isArray(names) || !names.every((n): n is string => typeof n === 'string')) return bad('"fds" is not a list of names');
  if (names.length !== fds.length) return bad(`it names ${names.length} fds, ${fds.length} arrived`);
  const size = bigintOf(body.size);
  const offset = bigintOf(body.offset) ?? 0n;
  const pageSize = bigintOf(body['page-size']);
  if (size === undefined || pageSize === undefined) return bad('no size or page-size');
  return {
    id: typeof body.id === 'string' ? body.id : id,
    type: typeof body.type === 'string' ? body.type : '',
    size,
    offset,
    pageSize,
    share: body.share === true,
    readonly: body.readonly === true,
    fds: names.map((name, i) => ({ name, fd: fds[i] })),
  };
}

/** memdev-export of one backend on a negotiated connection. */
export async function exportMemdev(client: QmpFdClient, id: string): Promise<ExportedMemdev> {
  const r = await client.execute('memdev-export', { id });
  if ('error' in r.message) {
    for (const fd of r.fds) fd.close();
    const e = isJsonObject(r.message.error) ? r.message.error : {};
    throw new ClientError(`memdev-export ${id}: ${describeError(r.message)}`, {
      class: typeof e.class === 'string' ? e.class : 'GenericError',
      desc: typeof e.desc === 'string' ? e.desc : '',
    });
  }
  if (!isJsonObject(r.message.return)) {
    for (const fd of r.fds) fd.close();
    throw new ClientError(`memdev-export ${id}: unexpected reply (no "return" object)`);
  }
  return describe(id, r.message.return, r.fds);
}

/** Connects to hostmemd's UNIX socket at `socketPath`, exports each backend of `ids` in order
 *  and disconnects. All or nothing: on any failure the fds already received are closed and the
 *  error (a ClientError, with the daemon's QMP error where there is one) is thrown. */
export async function fetchMemdevFds(socketPath: string, ids: readonly string[], opts: ClientOptions = {}): Promise<ExportedMemdev[]> {
  const client = await QmpFdClient.connect(socketPath, opts);
  const got: ExportedMemdev[] = [];
  try {
    for (const id of ids) got.push(await exportMemdev(client, id));
    return got;
  } catch (e) {
    closeExports(got);
    throw e;
  } finally {
    client.close();
  }
}
