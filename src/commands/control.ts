// Handlers of the protocol-control, introspection and run-state commands (qapi/control.json,
// qapi/introspect.json, qapi/run-state.json): qmp_capabilities, query-version,
// query-commands, quit, query-qmp-schema, query-status. They return values; the session
// encodes them.
import { QmpError, genericError } from '../errors/qmp-error';
import { Handler, PreEncoded } from '../qmp/messages';
import { JsonValue } from '../json/value';
import { VersionInfo } from '../qmp/monitor';

export interface ControlServices {
  version: VersionInfo;
  /** Names of the implemented commands, in the order query-commands lists them. */
  commandNames(): readonly string[];
  /** The introspection answer, encoded once: the text, or what makes it on first use (the
   *  daemon makes it after the greeting, so that encoding it does not delay start-up). */
  schemaJson: string | (() => string);
  /** Starts an orderly shutdown after the current reply is written. */
  requestShutdown(reason: 'host-qmp-quit'): void;
}

export function controlHandlers(svc: ControlServices): Map<string, Handler> {
  const versionValue = (): JsonValue => ({
    qemu: { major: svc.version.qemu.major, minor: svc.version.qemu.minor, micro: svc.version.qemu.micro },
    package: svc.version.package,
  });
  let schema: PreEncoded | undefined;
  const schemaReply = (): PreEncoded => (schema ??= new PreEncoded(typeof svc.schemaJson === 'string' ? svc.schemaJson : svc.schemaJson()));

  return new Map<string, Handler>([
    [
      'qmp_capabilities',
      (args, { session }) => {
        if (session.negotiated) {
          throw new QmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
        }
        const wanted = (args.enable as string[] | undefined) ?? [];
        const missing = wanted.filter((c) => !session.offeredCapabilities.includes(c));
        if (missing.length > 0) throw genericError(`Capability ${missing.join(', ')} not available`);
        session.completeNegotiation(wanted);
        return {};
      },
    ],
    ['query-version', () => versionValue()],
    // QEMU 7.2's StatusInfo of a running machine; hostmemd has no other state to report.
    // Members in schema order: QDict output order depends on insertion order within a bucket.
    ['query-status', () => ({ running: true, singlestep: false, status: 'running' })],
    ['query-commands', () => svc.commandNames().map((name) => ({ name }))],
    ['query-qmp-schema', schemaReply],
    [
      'quit',
      () => {
        svc.requestShutdown('host-qmp-quit');
        return {};
      },
    ],
  ]);
}
