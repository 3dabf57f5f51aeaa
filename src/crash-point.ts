// Crash points, a test hook: the steps of object-add, qom-set and object-del (allocation, fd
// store, journal write, fsync, rename, reply, ...) call crashPoint(name). Nothing happens unless
// the operator started bin/hostmemd with HOSTMEMD_TEST_CRASH_FILE set (daemon/crash-hook.ts
// installs the hook then); no QMP client can reach it. Pure: no I/O here.

let hook: ((name: string) => void) | undefined;

/** Installs (or, with undefined, removes) what a crash point does. */
export function setCrashHook(h: ((name: string) => void) | undefined): void {
  hook = h;
}

/** Marks that step `name` has just been done. */
export function crashPoint(name: string): void {
  if (hook) hook(name);
}
