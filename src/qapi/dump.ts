// A stable, human-readable text dump of a SchemaModel, for the golden tests in
// test/qapi-schema/ (our counterpart of QEMU's test-qapi.py output). One entity per block in
// model order; the predefined types are the same in every schema and are left out.

import { Entity, Feature, IfCond, SchemaModel } from './model';

const PREDEFINED = new Set([
  'str', 'number', 'int', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64',
  'size', 'bool', 'any', 'null', 'q_empty', 'QType',
]);

/** `CONFIG_A`, `all(A, not(B))`, `any(A, B)`. */
export function formatIfCond(c: IfCond): string {
  if (typeof c === 'string') return c;
  if ('all' in c) return `all(${c.all.map(formatIfCond).join(', ')})`;
  if ('any' in c) return `any(${c.any.map(formatIfCond).join(', ')})`;
  return `not(${formatIfCond(c.not)})`;
}

export function dumpSchema(model: SchemaModel): string {
  const out: string[] = [];
  for (const e of model.entities.values()) {
    if (!PREDEFINED.has(e.name)) dumpEntity(e, out);
  }
  const p = model.pragmas;
  out.push(`pragma doc-required ${p.docRequired}`);
  const lists: [string, string[]][] = [
    ['command-name-exceptions', p.commandNameExceptions],
    ['command-returns-exceptions', p.commandReturnsExceptions],
    ['documentation-exceptions', p.documentationExceptions],
    ['member-name-exceptions', p.memberNameExceptions],
  ];
  for (const [name, list] of lists) if (list.length > 0) out.push(`pragma ${name} ${list.join(' ')}`);
  out.push(['order', ...model.definitionOrder].join(' '));
  return out.join('\n') + '\n';
}

const IND = '    ';

function conds(out: string[], indent: string, x: { if?: IfCond; features?: Feature[]; doc?: string }): void {
  if (x.if !== undefined) out.push(`${indent}if ${formatIfCond(x.if)}`);
  for (const f of x.features ?? []) {
    out.push(`${indent}feature ${f.name}${f.if === undefined ? '' : ` if ${formatIfCond(f.if)}`}`);
  }
  if (x.doc !== undefined) out.push(`${indent}doc ${JSON.stringify(x.doc)}`);
}

function dumpEntity(e: Entity, out: string[]): void {
  const at = e.info ? ` @${e.info.file}:${e.info.line}` : '';
  switch (e.meta) {
    case 'builtin':
      out.push(`builtin ${e.name} ${e.jsonType}`);
      return;
    case 'enum':
      out.push(`enum ${e.name}${at}`);
      if (e.prefix !== undefined) out.push(`${IND}prefix ${e.prefix}`);
      conds(out, IND, e);
      for (const v of e.values) {
        out.push(`${IND}value ${v.name}`);
        conds(out, IND + IND, v);
      }
      return;
    case 'array':
      out.push(`array ${e.name} ${e.elementType}${at}`);
      conds(out, IND, e);
      return;
    case 'object':
      out.push(`object ${e.name}${e.implicit ? ' (implicit)' : ''}${at}`);
      if (e.base !== undefined) out.push(`${IND}base ${e.base}`);
      conds(out, IND, e);
      for (const m of e.members) {
        out.push(`${IND}member ${m.name}: ${m.type}${m.optional ? ' optional' : ''}`);
        conds(out, IND + IND, m);
      }
      if (e.tag !== undefined) out.push(`${IND}tag ${e.tag}`);
      for (const v of e.variants ?? []) {
        out.push(`${IND}case ${v.case}: ${v.type}`);
        conds(out, IND + IND, v);
      }
      return;
    case 'alternate':
      out.push(`alternate ${e.name}${at}`);
      conds(out, IND, e);
      for (const m of e.members) {
        out.push(`${IND}case ${m.name}: ${m.type}`);
        conds(out, IND + IND, m);
      }
      return;
    case 'command':
      out.push(`command ${e.name} ${e.argType ?? '-'} -> ${e.retType ?? '-'}${at}`);
      out.push(
        `${IND}gen=${e.gen} success-response=${e.successResponse} boxed=${e.boxed} oob=${e.allowOob} ` +
          `preconfig=${e.allowPreconfig} coroutine=${e.coroutine}`,
      );
      conds(out, IND, e);
      return;
    case 'event':
      out.push(`event ${e.name} ${e.argType ?? '-'}${at}`);
      out.push(`${IND}boxed=${e.boxed}`);
      conds(out, IND, e);
      return;
  }
}
