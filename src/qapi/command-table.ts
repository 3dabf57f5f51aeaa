// Back end: the command and event tables a build of the schema has (QEMU's generated
// qmp_init_marshal registrations and event emitters): what the dispatcher needs to know about
// each command and what the event layer needs per event. Handlers, argument validation
// (validate.ts) and the compat policy decisions are left to their owners.
import { Feature, SchemaModel, condHolds } from './model';

export interface CommandSpec {
  name: string;
  /** Object type of the arguments; absent when the command takes none. */
  argType?: string;
  /** Return type; absent when the command answers `{}`. */
  retType?: string;
  boxed: boolean;
  allowOob: boolean;
  allowPreconfig: boolean;
  /** False only for commands that send nothing on success (QGA style, §1.4). */
  successResponse: boolean;
  /** Feature names whose condition holds, in schema order. */
  features: string[];
  /** Has the special feature `deprecated` / `unstable` (for -compat policies, §3.2). */
  deprecated: boolean;
  unstable: boolean;
}

export interface EventSpec {
  name: string;
  /** Object type of the event's data; absent when the event carries none. */
  argType?: string;
  boxed: boolean;
  features: string[];
  deprecated: boolean;
  unstable: boolean;
}

function featureNames(fs: Feature[], defined: ReadonlySet<string>): string[] {
  return fs.filter((f) => condHolds(f.if, defined)).map((f) => f.name);
}

/** The commands whose condition holds for `defined`, in definition order. */
export function buildCommandTable(model: SchemaModel, defined: ReadonlySet<string>): CommandSpec[] {
  const out: CommandSpec[] = [];
  for (const name of model.definitionOrder) {
    const e = model.entities.get(name);
    if (e?.meta !== 'command' || !condHolds(e.if, defined)) continue;
    const features = featureNames(e.features, defined);
    const spec: CommandSpec = {
      name,
      boxed: e.boxed,
      allowOob: e.allowOob,
      allowPreconfig: e.allowPreconfig,
      successResponse: e.successResponse,
      features,
      deprecated: features.includes('deprecated'),
      unstable: features.includes('unstable'),
    };
    if (e.argType !== undefined) spec.argType = e.argType;
    if (e.retType !== undefined) spec.retType = e.retType;
    out.push(spec);
  }
  return out;
}

/** The events whose condition holds for `defined`, in definition order. */
export function buildEventTable(model: SchemaModel, defined: ReadonlySet<string>): EventSpec[] {
  const out: EventSpec[] = [];
  for (const name of model.definitionOrder) {
    const e = model.entities.get(name);
    if (e?.meta !== 'event' || !condHolds(e.if, defined)) continue;
    const features = featureNames(e.features, defined);
    const spec: EventSpec = {
      name,
      boxed: e.boxed,
      features,
      deprecated: features.includes('deprecated'),
      unstable: features.includes('unstable'),
    };
    if (e.argType !== undefined) spec.argType = e.argType;
    out.push(spec);
  }
  return out;
}
