// Where a piece of schema text came from: file, line, the include chain that led to the file,
// and (once the expression checks know it) the definition it belongs to. Only locations and
// their GCC-style rendering live here; raising errors is errors.ts's job.

/** Location of a schema expression or doc block. Mutable only in `defn`, which expr.ts sets
 *  once it knows the definition's meta and name (QEMU's `QAPISourceInfo.set_defn`). */
export interface QapiSourceInfo {
  readonly file: string;
  readonly line: number;
  /** The `include` directive that brought `file` in; absent for the main file. */
  readonly parent?: QapiSourceInfo;
  defn?: { meta: string; name: string };
}

/** `file:line` */
export function infoLoc(info: QapiSourceInfo): string {
  return `${info.file}:${info.line}`;
}

/** Context lines printed before the location line, as QEMU does (facts §3.1):
 *  `In file included from main.json:3:` for each enclosing include, then
 *  `file.json: In struct 'Foo':` when the definition is known. */
export function infoContext(info: QapiSourceInfo): string[] {
  const lines: string[] = [];
  for (let p = info.parent; p; p = p.parent) lines.unshift(`In file included from ${infoLoc(p)}:`);
  if (info.defn) lines.push(`${info.file}: In ${info.defn.meta} '${info.defn.name}':`);
  return lines;
}

/** The definition as the model's `SourceInfo.defn` spells it: `struct 'Foo'`. */
export function infoDefn(info: QapiSourceInfo): string | undefined {
  return info.defn ? `${info.defn.meta} '${info.defn.name}'` : undefined;
}
