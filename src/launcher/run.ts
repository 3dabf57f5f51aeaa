// hostmemd-run: fetch the fds of hostmemd memory backends and exec a VMM with them, so that
// `qemu-system-x86_64 ... mem-path=/proc/self/fd/3,share=on` runs its guest on memory the daemon
// owns (and that outlives the VMM). Every refusal comes before exec, with a nonzero status;
// after a successful exec this process *is* the VMM.
import * as fs from 'node:fs';
import { execWithFds, exitNow, openFilesLimit, Placement } from '../native';
import { errorText } from '../errors/text';
import { ClientError } from '../client/qmp-fd-client';
import { closeExports, ExportedMemdev, fetchMemdevFds } from '../client/memdev-export';
import { parseRunArgs, LaunchRequest } from './args';
import { resolveCommand } from './command';
import { fdsVariable, planFds } from './fd-plan';

/** The environment variable that tells COMMAND where each fd went. */
export const FDS_VARIABLE = 'HOSTMEMD_FDS';

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

const PROG = 'hostmemd-run';

/** Runs the launcher. Resolves with an exit status only when it did not exec. */
export async function runLauncher(argv: readonly string[], io: Output): Promise<number> {
  const parsed = parseRunArgs(argv);
  if (parsed.kind === 'help') {
    io.out(parsed.text + '\n');
    return 0;
  }
  if (parsed.kind === 'error') {
    io.err(`${PROG}: ${parsed.message}\n${PROG}: try '${PROG} --help'\n`);
    return 2;
  }
  const req = parsed.request;
  const limit = openFilesLimit();
  const tooHigh = req.memdevs.find((d) => d.fd !== undefined && d.fd >= limit);
  if (tooHigh) {
    io.err(`${PROG}: --memdev '${tooHigh.id}:${tooHigh.fd}': fd ${tooHigh.fd} is not below the open-files limit (${limit})\n`);
    return 2;
  }
  const cmd = resolveCommand(req.command[0], process.env.PATH);
  if (!cmd.ok) {
    io.err(`${PROG}: ${cmd.message}\n`);
    return cmd.status;
  }
  let exports: ExportedMemdev[];
  try {
    exports = await fetchMemdevFds(req.socketPath, req.memdevs.map((d) => d.id), { waitMs: req.waitMs });
  } catch (e) {
    io.err(`${PROG}: ${e instanceof ClientError ? e.message : errorText(e)}\n`);
    return 1;
  }
  return execWith(req, cmd.file, exports, io);
}

function execWith(req: LaunchRequest, file: string, exported: ExportedMemdev[], io: Output): number {
  const plan = planFds(
    exported.map((x, i) => ({ id: x.id, names: x.fds.map((f) => f.name), fd: req.memdevs[i].fd })),
    [],
  );
  // Placing needs a spare number above every target for each fd (native/exec.ts moves them
  // out of the way first), all below the open-files limit.
  const limit = openFilesLimit();
  const highest = Math.max(...plan.map((p) => p.target));
  if (highest + plan.length >= limit) {
    closeExports(exported);
    io.err(`${PROG}: fd ${highest} leaves too little room below the open-files limit (${limit}) to place ${plan.length} fds\n`);
    return 2;
  }
  const placements: Placement[] = plan.map((p) => ({ fd: exported.find((x) => x.id === p.id)!.fds.find((f) => f.name === p.name)!.fd, target: p.target }));
  const env = Object.entries({ ...process.env, [FDS_VARIABLE]: fdsVariable(plan) })
    .filter((kv): kv is [string, string] => kv[1] !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  const failure = execWithFds(file, req.command, env, placements);
  const text = `${PROG}: cannot execute ${file}: ${failure.error.strerror}\n`;
  if (failure.clobbered) {
    // Node's own fds may be gone: a plain write(2) and _exit(2), nothing through the event loop.
    try {
      fs.writeSync(2, text);
    } finally {
      exitNow(failure.error.errno === 2 /* ENOENT */ ? 127 : 126);
    }
  }
  closeExports(exported);
  io.err(text);
  return 126;
}
