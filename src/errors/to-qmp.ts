// The one error funnel: every failure, whatever layer threw it, becomes {class, desc} here.
// QmpError passes through; errors that know their QMP form (SysError and friends implement
// `toQmp()`) are asked for it; anything else is a bug: GenericError plus a logged stack.
import { ErrorClass, QmpError } from './qmp-error';
import { errorText } from './text';

export interface QmpErrorBody {
  class: ErrorClass;
  desc: string;
}

/** Implemented by error types of lower layers (native, qapi) that know their QMP wording. */
export interface QmpMappable {
  toQmp(): QmpErrorBody;
}

function isMappable(e: unknown): e is QmpMappable {
  return typeof e === 'object' && e !== null && typeof (e as { toQmp?: unknown }).toQmp === 'function';
}

/** Maps anything thrown to a QMP error body. `onUnexpected` sees errors that are bugs. */
export function toQmpError(e: unknown, onUnexpected?: (e: unknown) => void): QmpErrorBody {
  if (e instanceof QmpError) return { class: e.errorClass, desc: e.desc };
  if (isMappable(e)) return e.toQmp();
  onUnexpected?.(e);
  return { class: 'GenericError', desc: `internal error: ${errorText(e)}` };
}
