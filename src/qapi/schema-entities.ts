// The schema's entities while it is being checked: two-phase objects that first hold only the
// *names* of the types they use and get the resolved entities in schema.ts's check pass
// (QEMU's schema.py shape, style-anchors §1). Also how entities and members describe
// themselves in error messages. The checked model handed to generators is model.ts.

import { QapiDoc } from './doc';
import { BuiltinType, IfCond } from './model';
import { QapiSourceInfo } from './source';

/** What a named thing inside a definition is, for messages ("member 'x' collides with ..."). */
export type Role = 'member' | 'branch' | 'value' | 'feature';

interface Named {
  readonly role: Role;
  readonly name: string;
  /** The entity it was written in; `q_obj_*` names are mapped back in `describeMember`. */
  readonly definedIn: string;
}

export interface FeatureEnt extends Named {
  readonly role: 'feature';
  readonly if?: IfCond;
}

export interface EnumValueEnt extends Named {
  readonly role: 'value';
  readonly if?: IfCond;
  readonly features: FeatureEnt[];
  doc?: string;
}

/** An object member, union branch or alternate branch. */
export interface MemberEnt extends Named {
  readonly role: 'member' | 'branch';
  readonly info: QapiSourceInfo;
  readonly typeName: string;
  readonly optional: boolean;
  readonly if?: IfCond;
  readonly features: FeatureEnt[];
  /** Set by check. */
  type?: TypeEnt;
  doc?: string;
}

interface EntBase {
  readonly name: string;
  /** Absent for predefined entities (builtins, QType, q_empty). */
  readonly info?: QapiSourceInfo;
  readonly doc?: QapiDoc;
  readonly if?: IfCond;
  readonly features: FeatureEnt[];
  checked: boolean;
}

export interface BuiltinEnt extends EntBase {
  readonly kind: 'builtin';
  readonly jsonType: BuiltinType['jsonType'];
}

export interface EnumEnt extends EntBase {
  readonly kind: 'enum';
  readonly values: EnumValueEnt[];
  readonly prefix?: string;
}

export interface ArrayEnt extends EntBase {
  readonly kind: 'array';
  readonly elementName: string;
  element?: TypeEnt;
}

export interface ObjectEnt extends EntBase {
  readonly kind: 'object';
  readonly baseName?: string;
  base?: ObjectEnt;
  /** Members written in this type (none for unions). */
  readonly local: MemberEnt[];
  /** Unions only: discriminator name and branches (implicit `q_empty` ones added by check). */
  readonly tagName?: string;
  readonly variants?: MemberEnt[];
  tag?: MemberEnt;
  /** Set by check: base members, then local members. */
  members: MemberEnt[];
  /** Set once check finished; `checked` without `complete` means a check is under way. */
  complete: boolean;
}

export interface AlternateEnt extends EntBase {
  readonly kind: 'alternate';
  readonly variants: MemberEnt[];
}

export interface CommandEnt extends EntBase {
  readonly kind: 'command';
  readonly argName?: string;
  readonly retName?: string;
  readonly boxed: boolean;
  readonly gen: boolean;
  readonly successResponse: boolean;
  readonly allowOob: boolean;
  readonly allowPreconfig: boolean;
  readonly coroutine: boolean;
  arg?: ObjectEnt;
  ret?: TypeEnt;
}

export interface EventEnt extends EntBase {
  readonly kind: 'event';
  readonly argName?: string;
  readonly boxed: boolean;
  arg?: ObjectEnt;
}

export type TypeEnt = BuiltinEnt | EnumEnt | ArrayEnt | ObjectEnt | AlternateEnt;
export type Ent = TypeEnt | CommandEnt | EventEnt;

export function isTypeEnt(e: Ent): e is TypeEnt {
  return e.kind !== 'command' && e.kind !== 'event';
}

/** QEMU's meta for messages: objects are 'struct' or 'union' by whether they have branches. */
export function entMeta(e: Ent): string {
  if (e.kind === 'builtin') return 'built-in';
  if (e.kind === 'object') return e.variants ? 'union' : 'struct';
  return e.kind;
}

/** `struct type 'Foo'`, `array type ['Foo']`, `command 'bar'`. */
export function describeEnt(e: Ent): string {
  if (e.kind === 'array') return `array type ['${e.elementName}']`;
  if (isTypeEnt(e)) return `${entMeta(e)} type '${e.name}'`;
  return `${e.kind} '${e.name}'`;
}

/** Types the schema did not name: `q_obj_*`, `q_empty`, QType, arrays and builtins. */
export function isImplicit(e: Ent): boolean {
  if (e.kind === 'object') return e.name.startsWith('q_');
  if (e.kind === 'enum') return e.name === 'QType';
  return e.kind === 'array' || e.kind === 'builtin';
}

/** Describes a member relative to the definition being reported (`info.defn`): plain
 *  `member 'x'` inside its own definition, `member 'x' of type 'Base'` otherwise; members
 *  of implicit types read as `parameter 'x'` (command arguments) or `base member 'x'`. */
export function describeMember(m: Named, info: QapiSourceInfo | undefined): string {
  let role: string = m.role;
  let meta = 'type';
  let definedIn = m.definedIn;
  if (definedIn.startsWith('q_obj_')) {
    definedIn = definedIn.slice('q_obj_'.length);
    if (definedIn.endsWith('-arg')) {
      role = 'parameter';
      meta = 'command';
      definedIn = definedIn.slice(0, -'-arg'.length);
    } else if (definedIn.endsWith('-base')) {
      role = `base ${role}`;
      definedIn = definedIn.slice(0, -'-base'.length);
    }
  }
  if (definedIn !== info?.defn?.name) return `${role} '${m.name}' of ${meta} '${definedIn}'`;
  return `${role} '${m.name}'`;
}
