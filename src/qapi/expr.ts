// Stage 2 of the QAPI compiler: checks each expression on its own (facts §3.2, §3.3) — one
// meta key, allowed and required keys, flag values, `if` and `features` syntax, name rules —
// and removes the sugar, producing one normalised Definition per expression. Whether the
// names it mentions exist, clash or form cycles is left to schema.ts.

import { QapiSemError } from './errors';
import { QapiDoc } from './doc';
import { IfCond, Pragmas } from './model';
import { ParsedExpr, QDict, QValue, isDict } from './parser';
import { QapiSourceInfo } from './source';
import { cName, checkNameCamel, checkNameLower, checkNameUpper } from './names';

export interface FeatureDef {
  name: string;
  if?: IfCond;
}

/** An object member. `type` is a type name, or `[T]` for an array of T. */
export interface MemberDef {
  name: string;
  optional: boolean;
  type: string;
  if?: IfCond;
  features: FeatureDef[];
}

export interface EnumValueDef {
  name: string;
  if?: IfCond;
  features: FeatureDef[];
}

/** A union or alternate branch. */
export interface BranchDef {
  name: string;
  type: string;
  if?: IfCond;
}

interface DefBase {
  name: string;
  info: QapiSourceInfo;
  doc?: QapiDoc;
  if?: IfCond;
  features: FeatureDef[];
}

export interface EnumDef extends DefBase {
  meta: 'enum';
  values: EnumValueDef[];
  prefix?: string;
}
export interface StructDef extends DefBase {
  meta: 'struct';
  base?: string;
  members: MemberDef[];
}
export interface UnionDef extends DefBase {
  meta: 'union';
  /** A struct name, or the members of an inline base. */
  base: string | MemberDef[];
  discriminator: string;
  branches: BranchDef[];
}
export interface AlternateDef extends DefBase {
  meta: 'alternate';
  branches: BranchDef[];
}
export interface CommandDef extends DefBase {
  meta: 'command';
  /** A type name, or inline argument members. */
  data?: string | MemberDef[];
  returns?: string;
  boxed: boolean;
  gen: boolean;
  successResponse: boolean;
  allowOob: boolean;
  allowPreconfig: boolean;
  coroutine: boolean;
}
export interface EventDef extends DefBase {
  meta: 'event';
  data?: string | MemberDef[];
  boxed: boolean;
}

export type Definition = EnumDef | StructDef | UnionDef | AlternateDef | CommandDef | EventDef;
export type Meta = Definition['meta'];

const METAS: readonly Meta[] = ['enum', 'struct', 'union', 'alternate', 'command', 'event'];

/** Keys per meta: [required, optional] (facts §3.2). */
const KEYS: Record<Meta, readonly [readonly string[], readonly string[]]> = {
  enum: [['enum', 'data'], ['if', 'features', 'prefix']],
  struct: [['struct', 'data'], ['base', 'if', 'features']],
  union: [['union', 'base', 'discriminator', 'data'], ['if', 'features']],
  alternate: [['alternate', 'data'], ['if', 'features']],
  command: [
    ['command'],
    ['data', 'returns', 'boxed', 'if', 'features', 'gen', 'success-response', 'allow-oob', 'allow-preconfig', 'coroutine'],
  ],
  event: [['event'], ['data', 'boxed', 'if', 'features']],
};

const TYPE_KEY = ['type'];
const NAME_KEY = ['name'];
const IF_KEY = ['if'];
const IF_FEATURES_KEYS = ['if', 'features'];
const COND_KEYS = ['all', 'any', 'not'];

/** Checks and normalises every definition; directives were consumed by the parser. */
export function checkExprs(exprs: readonly ParsedExpr[], pragmas: Pragmas): Definition[] {
  return exprs.map((e) => new ExprChecker(e, pragmas).check());
}

const COND_SYMBOL = /^[A-Z][A-Z0-9_]*$/;
const LEADING_DIGIT = /^[0-9]/;

/** Python truthiness, for `'boxed': <anything>` before the flag check has run. */
function truthy(v: QValue | undefined): boolean {
  if (v === undefined || v === false || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isDict(v)) return v.size > 0;
  return true;
}

function quoteSorted(keys: Iterable<string>): string {
  return [...keys].sort().map((k) => `'${k}'`).join(', ');
}

class ExprChecker {
  private readonly info: QapiSourceInfo;
  private readonly expr: QDict;

  constructor(
    private readonly parsed: ParsedExpr,
    private readonly pragmas: Pragmas,
  ) {
    this.info = parsed.info;
    this.expr = parsed.expr;
  }

  private err(text: string): QapiSemError {
    return new QapiSemError(this.info, text);
  }

  check(): Definition {
    const { expr, info } = this;
    let meta: Meta | undefined;
    let count = 0;
    for (const m of METAS) {
      if (expr.has(m)) {
        meta = m;
        count++;
      }
    }
    if (count !== 1 || meta === undefined) {
      throw this.err(`expression must have exactly one key 'enum', 'struct', 'union', 'alternate', 'command', 'event'`);
    }
    const name = expr.get(meta);
    if (typeof name !== 'string') throw this.err(`'${meta}' requires a string name`);
    info.defn = { meta, name };
    this.checkDefnName(name, meta);
    this.checkDoc(name, meta);

    const [required, optional] = KEYS[meta];
    this.checkKeys(expr, meta, required, optional);
    const doc = this.parsed.doc;
    // Object literals with a fixed key order, not spreads: V8 clones spreads slowly, and the
    // whole pipeline must stay well under 20 ms for a few thousand lines.
    switch (meta) {
      case 'enum': {
        const { values, prefix } = this.checkEnum(name);
        const t = this.checkTail(meta);
        return { meta, name, info, doc, if: t.cond, features: t.features, values, prefix };
      }
      case 'struct': {
        const { base, members } = this.checkStruct(name);
        const t = this.checkTail(meta);
        return { meta, name, info, doc, if: t.cond, features: t.features, base, members };
      }
      case 'union': {
        const { base, discriminator, branches } = this.checkUnion(name);
        const t = this.checkTail(meta);
        return { meta, name, info, doc, if: t.cond, features: t.features, base, discriminator, branches };
      }
      case 'alternate': {
        const branches = this.checkAlternate();
        const t = this.checkTail(meta);
        return { meta, name, info, doc, if: t.cond, features: t.features, branches };
      }
      case 'command': {
        const c = this.checkCommand();
        const t = this.checkTail(meta);
        return {
          meta, name, info, doc, if: t.cond, features: t.features, data: c.data, returns: c.returns, boxed: c.boxed,
          gen: c.gen, successResponse: c.successResponse, allowOob: c.allowOob, allowPreconfig: c.allowPreconfig,
          coroutine: c.coroutine,
        };
      }
      case 'event': {
        const { data, boxed } = this.checkEvent();
        const t = this.checkTail(meta);
        return { meta, name, info, doc, if: t.cond, features: t.features, data, boxed };
      }
    }
  }

  /** The checks QEMU runs after the meta-specific ones: `if`, `features`, flags. */
  private checkTail(meta: Meta): { cond: IfCond | undefined; features: FeatureDef[] } {
    const cond = this.checkIf(this.expr, meta);
    const features = this.checkFeatures(this.expr.get('features'));
    this.checkFlags();
    return { cond, features };
  }

  private checkDefnName(name: string, meta: Meta): void {
    const { info } = this;
    if (meta === 'event') return checkNameUpper(name, info, meta);
    if (meta === 'command') {
      return checkNameLower(name, info, meta, false, this.pragmas.commandNameExceptions.includes(name));
    }
    checkNameCamel(name, info, meta);
    // `<T>List` is how QEMU names array types in C; keep the namespace free.
    if (name.endsWith('List')) throw this.err(`${meta} name should not end in 'List'`);
  }

  private checkDoc(name: string, meta: Meta): void {
    const doc = this.parsed.doc;
    if (doc) {
      if (doc.symbol !== name) throw this.err(`documentation comment is for '${doc.symbol}'`);
      const returns = doc.sections.find((s) => s.name === 'Returns');
      const errors = doc.sections.find((s) => s.name === 'Errors');
      if (meta === 'command') {
        if (returns && !this.expr.has('returns')) {
          throw new QapiSemError(returns.info, `'Returns' section, but command doesn't return anything`);
        }
      } else if (returns) {
        throw new QapiSemError(returns.info, `'Returns' section is only valid for commands`);
      } else if (errors) {
        throw new QapiSemError(errors.info, `'Errors' section is only valid for commands`);
      }
    } else if (this.pragmas.docRequired) {
      throw this.err('documentation comment required');
    }
  }

  private checkKeys(value: QDict, source: string, required: readonly string[], optional: readonly string[]): void {
    // Allocation-free when the keys are fine (the common case, thousands of times).
    let ok = true;
    for (const k of required) if (!value.has(k)) ok = false;
    for (const k of value.keys()) if (!required.includes(k) && !optional.includes(k)) ok = false;
    if (ok) return;
    const missing = required.filter((k) => !value.has(k));
    if (missing.length > 0) {
      throw this.err(`${source} misses key${missing.length > 1 ? 's' : ''} ${quoteSorted(missing)}`);
    }
    const allowed = new Set([...required, ...optional]);
    const unknown = [...value.keys()].filter((k) => !allowed.has(k));
    throw this.err(
      `${source} has unknown key${unknown.length > 1 ? 's' : ''} ${quoteSorted(unknown)}\n` +
        `Valid keys are ${quoteSorted(allowed)}.`,
    );
  }

  /** Validates `value.if` (facts §3.2 COND) and returns it in model form. */
  private checkIf(value: QDict, source: string): IfCond | undefined {
    const cond = value.get('if');
    if (cond === undefined) return undefined;
    const check = (c: QValue): IfCond => {
      if (typeof c === 'string') {
        if (!COND_SYMBOL.test(c)) {
          throw this.err(`'if' condition '${c}' of ${source} is not a valid identifier`);
        }
        return c;
      }
      if (!isDict(c)) throw this.err(`'if' condition of ${source} must be a string or an object`);
      this.checkKeys(c, `'if' condition of ${source}`, [], COND_KEYS);
      if (c.size !== 1) throw this.err(`'if' condition of ${source} has conflicting keys`);
      const not = c.get('not');
      if (not !== undefined) return { not: check(not) };
      const op = c.has('all') ? 'all' : 'any';
      const operands = c.get(op) as QValue;
      if (!Array.isArray(operands)) throw this.err(`'${op}' condition of ${source} must be an array`);
      if (operands.length === 0) throw this.err(`'if' condition [] of ${source} is useless`);
      const list = operands.map(check);
      return op === 'all' ? { all: list } : { any: list };
    };
    return check(cond);
  }

  private checkFeatures(features: QValue | undefined): FeatureDef[] {
    if (features === undefined) return [];
    if (!Array.isArray(features)) throw this.err(`'features' must be an array`);
    return features.map((f) => {
      const feat: QDict = isDict(f) ? f : new Map([['name', f]]);
      let source = `'features' member`;
      this.checkKeys(feat, source, NAME_KEY, IF_KEY);
      const name = feat.get('name');
      if (typeof name !== 'string') throw this.err(`${source} requires a string name`);
      source = `${source} '${name}'`;
      checkNameLower(name, this.info, source);
      return { name, if: this.checkIf(feat, source) };
    });
  }

  private checkFlags(): void {
    const { expr } = this;
    for (const key of ['gen', 'success-response']) {
      if (expr.has(key) && expr.get(key) !== false) throw this.err(`flag '${key}' may only use false value`);
    }
    for (const key of ['boxed', 'allow-oob', 'allow-preconfig', 'coroutine']) {
      if (expr.has(key) && expr.get(key) !== true) throw this.err(`flag '${key}' may only use true value`);
    }
    // No use case, and unclear semantics (QEMU expr.py check_flags).
    if (expr.has('allow-oob') && expr.has('coroutine')) {
      throw this.err(`flags 'allow-oob' and 'coroutine' are incompatible`);
    }
  }

  /** A type reference: `'T'`, `['T']` where allowed, or inline members where allowed
   *  (`allowDict` is the owning type's name when `member-name-exceptions` may apply).
   *  Sugar `'m': 'T'` becomes `{type: 'T'}` before the member checks, as in QEMU. */
  private checkType(
    value: QValue | undefined,
    source: string,
    allowArray: boolean,
    allowDict: boolean | string,
  ): string | MemberDef[] | undefined {
    if (value === undefined) return undefined;
    if (typeof value === 'string') return value;
    if (Array.isArray(value)) {
      if (!allowArray) throw this.err(`${source} cannot be an array`);
      if (value.length !== 1 || typeof value[0] !== 'string') {
        throw this.err(`${source}: array type must contain single type name`);
      }
      return `[${value[0]}]`;
    }
    if (allowDict === false) throw this.err(`${source} should be a type name`);
    if (!isDict(value)) throw this.err(`${source} should be an object or type name`);
    const permissive = typeof allowDict === 'string' && this.pragmas.memberNameExceptions.includes(allowDict);
    const members: MemberDef[] = [];
    for (const [key, raw] of value) {
      const keySource = `${source} member '${key}'`;
      const optional = key.startsWith('*');
      const name = optional ? key.slice(1) : key;
      checkNameLower(name, this.info, keySource, permissive, permissive);
      const c = cName(name);
      // `u` holds a union's branches in C, `has_x` an optional member's presence flag.
      if (c === 'u' || c.startsWith('has_')) throw this.err(`${keySource} uses reserved name`);
      const arg: QDict = isDict(raw) ? raw : new Map([['type', raw]]);
      this.checkKeys(arg, keySource, TYPE_KEY, IF_FEATURES_KEYS);
      const cond = this.checkIf(arg, keySource);
      const features = this.checkFeatures(arg.get('features'));
      const type = this.checkType(arg.get('type'), keySource, true, false) as string;
      members.push({ name, optional, type, if: cond, features });
    }
    return members;
  }

  private checkEnum(name: string): Pick<EnumDef, 'values' | 'prefix'> {
    const data = this.expr.get('data');
    const prefix = this.expr.get('prefix');
    if (!Array.isArray(data)) throw this.err(`'data' must be an array`);
    if (prefix !== undefined && typeof prefix !== 'string') throw this.err(`'prefix' must be a string`);
    const permissive = this.pragmas.memberNameExceptions.includes(name);
    const values = data.map((raw): EnumValueDef => {
      const member: QDict = isDict(raw) ? raw : new Map([['name', raw]]);
      let source = `'data' member`;
      this.checkKeys(member, source, NAME_KEY, IF_FEATURES_KEYS);
      const value = member.get('name');
      if (typeof value !== 'string') throw this.err(`${source} requires a string name`);
      source = `${source} '${value}'`;
      // Enum values may start with a digit (facts §3.3); hide it from the name check.
      checkNameLower(LEADING_DIGIT.test(value) ? 'd' + value : value, this.info, source, permissive, permissive);
      const cond = this.checkIf(member, source);
      return { name: value, if: cond, features: this.checkFeatures(member.get('features')) };
    });
    return { values, prefix };
  }

  private checkStruct(name: string): Pick<StructDef, 'base' | 'members'> {
    const members = this.checkType(this.expr.get('data'), `'data'`, false, name);
    // QEMU accepts a type name here and then fails; a struct needs its own members.
    if (!Array.isArray(members)) throw this.err(`'data' must be an object`);
    const base = this.checkType(this.expr.get('base'), `'base'`, false, false) as string | undefined;
    return { base, members };
  }

  private checkBranches(data: QValue | undefined, allowArray: boolean, checkNames: boolean): BranchDef[] {
    if (!isDict(data)) throw this.err(`'data' must be an object`);
    const branches: BranchDef[] = [];
    for (const [key, raw] of data) {
      const source = `'data' member '${key}'`;
      if (checkNames) checkNameLower(key, this.info, source);
      const value: QDict = isDict(raw) ? raw : new Map([['type', raw]]);
      this.checkKeys(value, source, TYPE_KEY, IF_KEY);
      const cond = this.checkIf(value, source);
      const type = this.checkType(value.get('type'), source, allowArray, false) as string;
      branches.push({ name: key, type, if: cond });
    }
    return branches;
  }

  private checkUnion(name: string): Pick<UnionDef, 'base' | 'discriminator' | 'branches'> {
    const base = this.checkType(this.expr.get('base'), `'base'`, false, name) as string | MemberDef[];
    const discriminator = this.expr.get('discriminator');
    if (typeof discriminator !== 'string') throw this.err(`'discriminator' requires a string name`);
    // Branch names are checked against the discriminator enum later (schema.ts).
    return { base, discriminator, branches: this.checkBranches(this.expr.get('data'), false, false) };
  }

  private checkAlternate(): BranchDef[] {
    const data = this.expr.get('data');
    if (!truthy(data)) throw this.err(`'data' must not be empty`);
    return this.checkBranches(data, true, true);
  }

  private checkCommand(): Omit<CommandDef, keyof DefBase | 'meta'> {
    const { expr } = this;
    const boxed = truthy(expr.get('boxed'));
    if (boxed && !expr.has('data')) throw this.err(`'boxed': true requires 'data'`);
    const data = this.checkType(expr.get('data'), `'data'`, false, !boxed);
    const returns = this.checkType(expr.get('returns'), `'returns'`, true, false) as string | undefined;
    return {
      data,
      returns,
      boxed,
      gen: !expr.has('gen'),
      successResponse: !expr.has('success-response'),
      allowOob: expr.has('allow-oob'),
      allowPreconfig: expr.has('allow-preconfig'),
      coroutine: expr.has('coroutine'),
    };
  }

  private checkEvent(): Pick<EventDef, 'data' | 'boxed'> {
    const boxed = truthy(this.expr.get('boxed'));
    if (boxed && !this.expr.has('data')) throw this.err(`'boxed': true requires 'data'`);
    const data = this.checkType(this.expr.get('data'), `'data'`, false, !boxed);
    return { data, boxed };
  }
}
