// Property value checks for qom-set and object-add setters, with the QAPI input visitor's
// exact texts (qemu-facts §3.5): a setter sees a raw JSON value and must refuse wrong types
// the way QEMU's visitors do.
import { JsonValue, JsonFloat, isJsonObject } from '../json/value';
import { genericError } from '../errors/qmp-error';

const UINT64_MAX = (1n << 64n) - 1n;

export function visitBool(name: string, v: JsonValue): boolean {
  if (typeof v !== 'boolean') throw genericError(`Invalid parameter type for '${name}', expected: boolean`);
  return v;
}

export function visitStr(name: string, v: JsonValue): string {
  if (typeof v !== 'string') throw genericError(`Invalid parameter type for '${name}', expected: string`);
  return v;
}

/** uint64 / size: integers only; a negative int64 is taken modulo 2^64 as QEMU does. */
export function visitUint64(name: string, v: JsonValue): bigint {
  if (v instanceof JsonFloat || (typeof v !== 'number' && typeof v !== 'bigint') || (typeof v === 'number' && !Number.isInteger(v))) {
    throw genericError(`Parameter '${name}' expects uint64`);
  }
  let b = BigInt(v);
  if (b < 0n) {
    if (b < -(1n << 63n)) throw genericError(`Parameter '${name}' expects uint64`);
    b += 1n << 64n;
  }
  if (b > UINT64_MAX) throw genericError(`Parameter '${name}' expects uint64`);
  return b;
}

/** uint32 and narrower: uint64 first, then the range check with the local name. */
export function visitUintN(name: string, v: JsonValue, bits: 8 | 16 | 32, listElement = false): number {
  const b = visitUint64(listElement ? 'null' : name, v);
  if (b >= 1n << BigInt(bits)) throw genericError(`Parameter '${listElement ? 'null' : name}' expects uint${bits}_t`);
  return Number(b);
}

export function visitEnum<T extends string>(name: string, v: JsonValue, values: readonly T[]): T {
  if (typeof v !== 'string') throw genericError(`Invalid parameter type for '${name}', expected: string`);
  if (!(values as readonly string[]).includes(v)) throw genericError(`Parameter '${name}' does not accept value '${v}'`);
  return v as T;
}

export function visitUint16List(name: string, v: JsonValue): number[] {
  if (!Array.isArray(v)) throw genericError(`Invalid parameter type for '${name}', expected: array`);
  return v.map((e) => visitUintN(name, e, 16, true));
}

export function describeJsonType(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (isJsonObject(v)) return 'object';
  return typeof v;
}
