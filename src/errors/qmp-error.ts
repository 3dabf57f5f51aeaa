// Typed errors that layers throw and the funnel (to-qmp.ts) turns into QMP error replies.
// A QmpError carries QEMU's error class and exact text; anything else thrown is a bug or a
// system failure and is mapped there, never sent raw.

/** QEMU's error classes (qapi/error.json). */
export type ErrorClass = 'GenericError' | 'CommandNotFound' | 'DeviceNotActive' | 'DeviceNotFound' | 'KVMMissingCap';

export class QmpError extends Error {
  constructor(
    readonly errorClass: ErrorClass,
    readonly desc: string,
  ) {
    super(desc);
    this.name = 'QmpError';
  }
}

/** Shorthand for the common case: a GenericError with QEMU's text. */
export function genericError(desc: string): QmpError {
  return new QmpError('GenericError', desc);
}
