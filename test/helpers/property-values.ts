// Test helper: another value for a QOM property, from its qom-list-properties entry and its
// current value, so tests that walk every settable property need no hand-written property list.
// Enum types are looked up in ENUM_VALUES; an enum type this file does not know fails loudly
// (teach it the values), so a new property is never skipped silently. Pure: no native, no I/O.
import type { JsonValue } from '../../src/json/value';

/** Values of the enum-typed QOM properties (QAPI enums HostMemPolicy and OnOffAuto). */
export const ENUM_VALUES: Record<string, readonly string[]> = {
  HostMemPolicy: ['default', 'preferred', 'bind', 'interleave'],
  OnOffAuto: ['auto', 'on', 'off'],
};

export interface PropertyInfo {
  name: string;
  type: string;
}

/** What qom-set may be tried on: every property but the read-only `type` and children. */
export function settable(props: readonly PropertyInfo[]): PropertyInfo[] {
  return props.filter((p) => p.name !== 'type' && !p.type.startsWith('child<'));
}

/** A value other than `current` that fits the property's type: the other boolean, a doubled
 *  number (2 MiB for 0, a valid huge page size and alignment), one more host node, another
 *  enum member, another path. Links have no other valid value without a target object: a
 *  path that resolves to nothing (the set is refused). */
export function anotherValue(p: PropertyInfo, current: JsonValue): JsonValue {
  if (typeof current === 'boolean') return !current;
  if (Array.isArray(current)) return current.length === 0 ? [0] : [];
  if (typeof current === 'number' || typeof current === 'bigint') {
    const n = Number(current);
    return n === 0 ? 2 * 1024 * 1024 : n * 2;
  }
  if (p.type.startsWith('link<')) return current === '' ? '/objects/no-such-object' : '';
  if (p.type === 'string' || p.type === 'str') return `${String(current)}.other`;
  const values = ENUM_VALUES[p.type];
  if (!values) throw new Error(`property '${p.name}': no values known for QOM type '${p.type}'; add them to ENUM_VALUES in test/helpers/property-values.ts`);
  return values.find((v) => v !== current)!;
}
