// The semantic model of a QAPI schema: what the parser and checks produce and every generator
// consumes. Names are resolved (every type name used exists), sugar is removed, implicit
// types are materialised. Conditions (`if`) are kept; generators evaluate them against the
// set of defined configuration symbols (see `condHolds`).

export interface SourceInfo {
  file: string;
  line: number;
  /** The definition this belongs to, e.g. "struct 'Foo'" (for error messages). */
  defn?: string;
}

export type IfCond = string | { all: IfCond[] } | { any: IfCond[] } | { not: IfCond };

export interface Feature {
  name: string;
  if?: IfCond;
}

/** A member of an object type. `type` is a type name: builtin (`str`, `uint64`, ...), a
 *  user type name, or an array type name written `[T]` (arrays are entities of meta 'array'). */
export interface Member {
  name: string;
  type: string;
  optional: boolean;
  if?: IfCond;
  features: Feature[];
  /** The member's `@name:` description from the definition's doc block, if any. */
  doc?: string;
}

interface EntityBase {
  name: string;
  if?: IfCond;
  features: Feature[];
  info?: SourceInfo;
  /** Doc text of the definition, if any (used by the console and qom-list-properties). */
  doc?: string;
}

export interface BuiltinType extends EntityBase {
  meta: 'builtin';
  /** Introspection json-type: string, number, int, boolean, null, value. */
  jsonType: 'string' | 'number' | 'int' | 'boolean' | 'null' | 'value';
}

export interface EnumValue {
  name: string;
  if?: IfCond;
  features: Feature[];
  /** The value's `@name:` description from the enum's doc block, if any. */
  doc?: string;
}

export interface EnumType extends EntityBase {
  meta: 'enum';
  values: EnumValue[];
  prefix?: string;
}

export interface ArrayType extends EntityBase {
  meta: 'array';
  /** `[T]` */
  elementType: string;
}

export interface Variant {
  /** Discriminator value. */
  case: string;
  /** Object type of the branch (`q_empty` for an enum value without an explicit branch). */
  type: string;
  if?: IfCond;
}

export interface ObjectType extends EntityBase {
  meta: 'object';
  /** All members in visit order: base members first (flattened), then local members. */
  members: Member[];
  /** Name of the base type, if any (for unions with an inline base this is an implicit type). */
  base?: string;
  /** For unions: the discriminator member name and one variant per enum value. */
  tag?: string;
  variants?: Variant[];
  /** True for types the schema did not name (inline command args `q_obj_<cmd>-arg`, inline
   *  union bases `q_obj_<Union>-base`, `q_empty`). */
  implicit: boolean;
}

export interface AlternateType extends EntityBase {
  meta: 'alternate';
  members: { name: string; type: string; if?: IfCond; doc?: string }[];
}

export interface Command extends EntityBase {
  meta: 'command';
  /** Object type of the arguments (implicit `q_obj_<name>-arg` for inline data); absent = none. */
  argType?: string;
  /** Return type name (possibly `[T]` or `any`); absent = returns `{}`. */
  retType?: string;
  boxed: boolean;
  allowOob: boolean;
  allowPreconfig: boolean;
  coroutine: boolean;
  gen: boolean;
  successResponse: boolean;
}

export interface Event extends EntityBase {
  meta: 'event';
  argType?: string;
  boxed: boolean;
}

export type TypeEntity = BuiltinType | EnumType | ArrayType | ObjectType | AlternateType;
export type Entity = TypeEntity | Command | Event;

export interface Pragmas {
  docRequired: boolean;
  commandNameExceptions: string[];
  commandReturnsExceptions: string[];
  documentationExceptions: string[];
  memberNameExceptions: string[];
}

export interface SchemaModel {
  /** Every entity by name (builtins, array types `[T]`, implicit types included). */
  entities: Map<string, Entity>;
  /** Names of user-defined entities (types, commands, events) in definition order,
   *  followed by nothing else (implicit and array types are not listed here). */
  definitionOrder: string[];
  pragmas: Pragmas;
}

/** Evaluates a condition against the set of defined configuration symbols. */
export function condHolds(cond: IfCond | undefined, defined: ReadonlySet<string>): boolean {
  if (cond === undefined) return true;
  if (typeof cond === 'string') return defined.has(cond);
  if ('all' in cond) return cond.all.every((c) => condHolds(c, defined));
  if ('any' in cond) return cond.any.some((c) => condHolds(c, defined));
  return !condHolds(cond.not, defined);
}
