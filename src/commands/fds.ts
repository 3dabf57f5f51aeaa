// Handlers of QEMU's fd-passing commands (qapi/misc.json): getfd, closefd, add-fd, remove-fd,
// query-fdsets. The fd comes from the connection (SessionControl.takeReceivedFd); the
// registry (fds/imported.ts) keeps it with QEMU's texts and the daemon's bounds.
import { Handler } from '../qmp/messages';
import { JsonValue } from '../json/value';
import { ImportedFds } from '../fds/imported';

export function fdHandlers(fds: ImportedFds): Map<string, Handler> {
  return new Map<string, Handler>([
    [
      'getfd',
      (a, { session }) => {
        fds.getfd(session.clientId, a.fdname as string, session.takeReceivedFd?.());
        return {};
      },
    ],
    [
      'closefd',
      (a, { session }) => {
        fds.closefd(session.clientId, a.fdname as string);
        return {};
      },
    ],
    ['add-fd', (a, { session }) => fds.addFd(session.clientId, session.takeReceivedFd?.(), a['fdset-id'] as number | undefined, a.opaque as string | undefined)],
    [
      'remove-fd',
      (a) => {
        fds.removeFd(a['fdset-id'] as number, a.fd as number | undefined);
        return {};
      },
    ],
    ['query-fdsets', () => fds.query() as unknown as JsonValue],
  ]);
}
