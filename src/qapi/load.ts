// Entry point of the QAPI compiler front end: parser → expression checks → semantic check →
// model (style-anchors §1). File access is the caller's: it passes a reader, so this layer
// stays free of I/O. Generators take the returned SchemaModel from here.

import { checkExprs } from './expr';
import { SchemaModel } from './model';
import { SchemaReader, parseSchema } from './parser';
import { buildModel } from './schema-to-model';

/** Loads and checks the schema rooted at `mainFile`; `readFile` gets paths joined from it
 *  (includes are relative to the including file). Throws QapiError at the first problem. */
export function loadSchema(mainFile: string, readFile: SchemaReader): SchemaModel {
  const parsed = parseSchema(mainFile, readFile);
  const defs = checkExprs(parsed.exprs, parsed.pragmas);
  return buildModel(defs, parsed.docs, parsed.pragmas);
}
