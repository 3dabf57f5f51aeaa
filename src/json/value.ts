// The in-memory form of a QMP JSON value, exact where JavaScript numbers are not.
// QEMU keeps int64/uint64 exact and tells integers from doubles (`1` vs `1.0`); so do we:
// integers beyond 2^53 are bigint, and a double with an integral value is a JsonFloat.
// Producing these values is stream.ts's job; printing them is writer.ts's.

/** A JSON number token that QEMU stores as a double although its value is integral (`1.0`, `1e3`,
 *  or an integer beyond the uint64/int64 range). Non-integral doubles are plain `number`s. */
export class JsonFloat {
  constructor(readonly value: number) {}
}

export type JsonScalar = null | boolean | number | bigint | string | JsonFloat;
export interface JsonObject {
  [key: string]: JsonValue;
}
export type JsonValue = JsonScalar | JsonValue[] | JsonObject;

/** True for a JSON object (not array, not null, not a JsonFloat). */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);
}

/** True for any JSON number: number, bigint or JsonFloat. */
export function isJsonNumber(v: unknown): v is number | bigint | JsonFloat {
  return typeof v === 'number' || typeof v === 'bigint' || v instanceof JsonFloat;
}

/** Where stream.ts records an object's member insertion order, when JavaScript's own order
 *  differs: Object.keys() lists integer-like keys ("7", "42") first, but QEMU's QDict order
 *  (qemu-facts §1.1) depends on insertion order. Non-enumerable, so invisible to comparisons. */
export const MEMBER_ORDER: unique symbol = Symbol('hostmemd.memberOrder');

/** Where stream.ts records, on a parsed object, the parts of its members that are long strings
 *  decoded as they arrived (Map from member name to parts, joined the value). The value is a
 *  rope of those parts: copying it flat is a fresh allocation of up to 128 MB, and printing
 *  it from its parts (writer.ts encodeJsonPieces) needs none. Non-enumerable. */
export const LONG_PARTS: unique symbol = Symbol('hostmemd.longParts');

export interface LongString {
  value: string;
  parts: readonly string[];
}

/** The parts `o[key]` was decoded from, when it is (still) a long string decoded in parts. */
export function longParts(o: unknown, key: string): readonly string[] | undefined {
  if (typeof o !== 'object' || o === null) return undefined;
  const long = (o as { [LONG_PARTS]?: Map<string, LongString> })[LONG_PARTS]?.get(key);
  // The same string (identity, which compares without reading the characters).
  return long !== undefined && (o as Record<string, unknown>)[key] === long.value ? long.parts : undefined;
}

/** An object's keys in insertion order: the recorded order while it still matches the object's
 *  own keys, else Object.keys(). */
export function memberKeys(o: JsonObject): string[] {
  const keys = Object.keys(o);
  const order = (o as { [MEMBER_ORDER]?: string[] })[MEMBER_ORDER];
  if (order === undefined || order.length !== keys.length) return keys;
  for (const k of order) if (!Object.prototype.hasOwnProperty.call(o, k)) return keys;
  return order;
}
