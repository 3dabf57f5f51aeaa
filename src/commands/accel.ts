// Handlers of accelerator and hostmemd status commands: query-kvm, query-kvm-guest-memfd,
// query-prealloc.
import { Handler } from '../qmp/messages';
import { JsonValue } from '../json/value';
import { KvmFacts } from '../accel/kvm';

export interface AccelServices {
  kvm: KvmFacts;
  /** Preallocations in progress. */
  preallocs(): JsonValue[];
}

export function accelHandlers(svc: AccelServices): Map<string, Handler> {
  return new Map<string, Handler>([
    ['query-kvm', () => ({ enabled: svc.kvm.enabled, present: svc.kvm.present })],
    [
      'query-kvm-guest-memfd',
      () => {
        const k = svc.kvm;
        const out: Record<string, JsonValue> = { enabled: k.enabled };
        if (k.probe) {
          out['api-version'] = k.probe.apiVersion;
          out['guest-memfd'] = k.probe.guestMemfd && k.probe.userMemory2;
          out['guest-memfd-flags'] = k.probe.guestMemfdFlags;
          out['memory-attributes'] = k.probe.memoryAttributes;
          out['vm-types'] = k.probe.vmTypes;
        }
        if (k.unavailable !== undefined) out.unavailable = k.unavailable;
        return out;
      },
    ],
    ['query-prealloc', () => svc.preallocs()],
  ]);
}
