// Test helpers for tests that touch the native layer or /dev/kvm directly.
import * as fs from 'node:fs';
import * as native from '../../src/native';

/** True when /dev/kvm can be opened read-write here (KVM tests run then, else skip loudly). */
export function kvmUsable(): boolean {
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Runs `fn` and returns the SysError it throws (failing the test if it throws nothing else). */
export function sysError(fn: () => unknown): native.SysError {
  try {
    fn();
  } catch (e) {
    if (e instanceof native.SysError) return e;
    throw e;
  }
  throw new Error('expected a SysError');
}
