// One teardown path: every resource registers how it lets go when it is acquired, and the
// daemon's stop runs them once, newest first, whatever the reason (a shutdown, a handover to a
// successor, a start that failed half-way). A failing step is logged; the rest still run.
import type { Log } from '../log';

/** Why the daemon stops:
 *  - 'exit': shutdown or quit; objects stay in the journal, memory in the fd store;
 *  - 'handed-over': a successor carries on with the memory, sockets and clients;
 *  - 'failed-start': the start failed; whatever holds the memory (fd store, the running daemon
 *    of a refused handover) keeps it. */
export type StopMode = 'exit' | 'handed-over' | 'failed-start';

type Step = { what: string; run: (mode: StopMode) => void | Promise<void> };

export class Teardown {
  private readonly steps: Step[] = [];
  private done?: Promise<void>;

  constructor(private readonly log: Log) {}

  /** Registers how to let go of something just acquired. */
  add(what: string, run: (mode: StopMode) => void | Promise<void>): void {
    if (this.done) throw new Error(`teardown already ran; cannot add '${what}'`);
    this.steps.push({ what, run });
  }

  /** Runs every step once, newest first; later calls get the first run's promise. */
  run(mode: StopMode): Promise<void> {
    this.done ??= (async () => {
      for (const step of this.steps.splice(0).reverse()) {
        try {
          await step.run(mode);
        } catch (err) {
          this.log.error({ err, step: step.what, mode }, 'teardown step failed');
        }
      }
    })();
    return this.done;
  }

  get started(): boolean {
    return this.done !== undefined;
  }
}
