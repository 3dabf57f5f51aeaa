// Handlers of the VMM commands (qapi/hostmemd.json): query-vmms lists the processes running on
// hostmemd memory and the upgrades hostmemd-upgrade reported; record-vmm-upgrade is how it
// reports them. The registry itself (pids, /proc) lives with the daemon.
import { Handler } from '../qmp/messages';
import { JsonValue } from '../json/value';

export interface VmmUpgradeReport {
  'old-pid': number;
  'new-pid': number;
  status: 'completed' | 'failed';
  'total-time-ms'?: number;
  'downtime-ms'?: number;
  'wall-time-ms'?: number;
  error?: string;
}

export interface VmmServices {
  vmms(): JsonValue[];
  upgrades(): readonly JsonValue[];
  recordUpgrade(report: VmmUpgradeReport): void;
}

/** Longest error text kept from a report. */
const MAX_REPORT_ERROR = 1024;

export function vmmHandlers(svc: VmmServices): Map<string, Handler> {
  return new Map<string, Handler>([
    ['query-vmms', () => ({ vmms: svc.vmms(), upgrades: [...svc.upgrades()] })],
    [
      'record-vmm-upgrade',
      (a) => {
        const report: VmmUpgradeReport = { 'old-pid': a['old-pid'] as number, 'new-pid': a['new-pid'] as number, status: a.status as 'completed' | 'failed' };
        for (const k of ['total-time-ms', 'downtime-ms', 'wall-time-ms'] as const) if (a[k] !== undefined) report[k] = a[k] as number;
        if (a.error !== undefined) report.error = (a.error as string).slice(0, MAX_REPORT_ERROR);
        svc.recordUpgrade(report);
        return {};
      },
    ],
  ]);
}
