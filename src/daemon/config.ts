// Configuration symbols that the QAPI schema's 'if' conditions are evaluated against, and
// where the schema files live. hostmemd runs on Linux only.
import * as path from 'node:path';

export const CONFIG_SYMBOLS: ReadonlySet<string> = new Set(['CONFIG_LINUX', 'CONFIG_POSIX', 'CONFIG_KVM']);

/** qapi/schema.json, found from both src/daemon (ts-jest) and dist/daemon (built). */
export const SCHEMA_MAIN = path.resolve(__dirname, '..', '..', 'qapi', 'schema.json');
