// The naming rules of the schema language (facts §3.3): the valid-name pattern with its
// downstream `__RFQDN_` and `x-` prefixes, the reserved `q_` namespace, and the case rules
// per kind of name. Callers (expr.ts) decide which rule applies and which pragma relaxes it.

import { QapiSemError } from './errors';
import { QapiSourceInfo } from './source';

const VALID_NAME = /^(__[a-z0-9.-]+_)?(x-)?([a-z][a-z0-9_-]*)$/i;
const NON_C_CHARS = /[^A-Za-z0-9_]/g;
const LOWER_OR_DASH = /[a-z-]/;
const UPPER = /[A-Z]/;
const CAMEL = /^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$/;

/** The C form of a name without keyword protection: what clash and reserved-name checks
 *  compare, since `a-b`, `a.b` and `a_b` become the same C identifier. */
export function cName(name: string): string {
  return name.replace(NON_C_CHARS, '_');
}

export function checkNameStr(name: string, info: QapiSourceInfo, source: string): string {
  const m = VALID_NAME.exec(name);
  // The whole q_ namespace is reserved for generated names (q_empty, q_obj_*).
  if (!m || cName(name).startsWith('q_')) throw new QapiSemError(info, `${source} has an invalid name`);
  return m[3];
}

export function checkNameUpper(name: string, info: QapiSourceInfo, source: string): void {
  if (LOWER_OR_DASH.test(checkNameStr(name, info, source))) {
    throw new QapiSemError(info, `name of ${source} must not use lowercase or '-'`);
  }
}

export function checkNameLower(name: string, info: QapiSourceInfo, source: string, permitUpper = false, permitUnderscore = false): void {
  const stem = checkNameStr(name, info, source);
  if ((!permitUpper && UPPER.test(stem)) || (!permitUnderscore && stem.includes('_'))) {
    throw new QapiSemError(info, `name of ${source} must not use uppercase or '_'`);
  }
}

export function checkNameCamel(name: string, info: QapiSourceInfo, source: string): void {
  if (!CAMEL.test(checkNameStr(name, info, source))) {
    throw new QapiSemError(info, `name of ${source} must use CamelCase`);
  }
}
