// human-monitor-command (qapi/human-monitor.json): the subset of QEMU's human monitor a memory
// daemon can answer (help, info version/status/memdev/qom-tree/cpr, object_add, object_del,
// qom-list, qom-get, qom-set), printing what QEMU 7.2 prints. Failures are printed
// ("Error: ..."), as QEMU's monitor does; only a bad cpu-index is a QMP error.
import { JsonObject, JsonValue } from '../json/value';
import { QmpError, genericError } from '../errors/qmp-error';
import { toQmpError } from '../errors/to-qmp';
import { Handler } from '../qmp/messages';
import { VersionInfo } from '../qmp/monitor';
import { QomObject } from '../qom/object';
import { ObjectTree } from '../qom/tree';
import { ObjectManager } from '../qom/user-creatable';
import { HostMemoryBackend } from '../backends';
import { HmpCommandDef, findCommand, helpLines, parseHmpLine } from './hmp-line';
import { parseOneJson, prettyJson, qomTreeText, rangesText, valueFromText } from './hmp-text';

/** object_add's argument read as QEMU reads it (keyval, or JSON when it starts with `{`):
 *  the object-add arguments, checked as a QMP object-add's are, or a request for help. */
export type ObjectArgText = { help: false; args: JsonObject } | { help: true; qomType?: string };

export interface HmpServices {
  version: VersionInfo;
  tree: ObjectTree;
  objects: ObjectManager;
  /** Throws QmpError with QEMU's text when the argument is wrong. */
  objectArgs(text: string): ObjectArgText;
  /** query-cpr's answer (for `info cpr`). */
  cpr(): JsonValue;
  /** After a qom-set (the query-memdev cache must forget the object). */
  changed(obj: QomObject): void;
}

type Run = (args: Record<string, string | boolean>, out: string[]) => void | Promise<void>;

/** QEMU appends this hint to the id error when a person reads it. */
const ID_HINT = "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

export function hmpHandlers(svc: HmpServices): Map<string, Handler> {
  const table = hmpTable(svc);
  return new Map<string, Handler>([
    [
      'human-monitor-command',
      async (a) => {
        // hostmemd has no CPUs: every index is out of range, as on QEMU's machine "none".
        if (a['cpu-index'] !== undefined) throw genericError("Parameter 'cpu-index' expects a CPU number");
        const parsed = parseHmpLine(a['command-line'] as string, table);
        if (parsed.kind === 'empty') return '';
        if (parsed.kind === 'output') return crlf(parsed.text);
        const out: string[] = [];
        try {
          await parsed.cmd.run?.(parsed.args, out);
        } catch (e) {
          // QEMU prints a command's error; a bug is still a bug (the dispatcher logs it).
          if (!(e instanceof QmpError) && typeof (e as { toQmp?: unknown })?.toQmp !== 'function') throw e;
          const desc = toQmpError(e).desc;
          out.push(`Error: ${desc}\n`);
          if (desc === "Parameter 'id' expects an identifier") out.push(`${ID_HINT}\n`);
        }
        return crlf(out.join(''));
      },
    ],
  ]);
}

/** The monitor writes "\n" as CRLF. */
function crlf(text: string): string {
  return text.replace(/\n/g, '\r\n');
}

function hmpTable(svc: HmpServices): HmpCommandDef<Run>[] {
  const { tree, objects } = svc;
  const info: HmpCommandDef<Run>[] = [
    {
      name: 'version',
      args: '',
      params: '',
      help: 'show the version of the QEMU interface level and of hostmemd',
      run: (_a, out) => {
        const q = svc.version.qemu;
        out.push(`${q.major}.${q.minor}.${q.micro}${svc.version.package}\n`);
      },
    },
    { name: 'status', args: '', params: '', help: 'show the run state (always running)', run: (_a, out) => void out.push('VM status: running\n') },
    { name: 'memdev', args: '', params: '', help: 'show the memory backends', run: (_a, out) => void out.push(memdevText(objects)) },
    {
      name: 'qom-tree',
      args: 'path:s?',
      params: '[path]',
      help: 'show the object tree (all of it without a path)',
      run: (a, out) => {
        // QEMU starts at /machine; hostmemd has no machine, so the default is the root.
        const path = (a.path as string | undefined) ?? '/';
        const r = tree.resolve(path);
        if (r.kind !== 'found') out.push(`Path '${path}' could not be resolved.\n`);
        else out.push(qomTreeText(r.obj, tree.root));
      },
    },
    { name: 'cpr', args: '', params: '', help: 'show what a restart keeps of each object (hostmemd)', run: (_a, out) => void out.push(cprText(svc.cpr())) },
  ];
  const table: HmpCommandDef<Run>[] = [
    {
      name: 'help|?',
      args: 'name:S?',
      params: '[cmd]',
      help: 'show the commands, or the one named',
      run: (a, out) => void out.push(helpText(table, (a.name as string | undefined) ?? '')),
    },
    {
      name: 'info',
      args: 'item:s?',
      params: '[subcommand]',
      help: 'show information about the server',
      sub: info,
      run: (_a, out) => void out.push(helpLines(info, 'info ')),
    },
    {
      name: 'object_add',
      args: 'object:S',
      params: '[qom-type=]type,id=str[,prop=value][,...]',
      help: 'create an object, as -object does',
      run: async (a, out) => {
        const parsed = svc.objectArgs(a.object as string);
        if (parsed.help) out.push(objectHelp(tree, parsed.qomType));
        else await objects.add(parsed.args);
      },
    },
    { name: 'object_del', args: 'id:s', params: 'id', help: 'delete an object', run: async (a) => void (await objects.del(a.id as string)) },
    {
      name: 'qom-list',
      args: 'path:s?',
      params: 'path',
      help: 'list the properties of an object',
      run: (a, out) => {
        if (a.path === undefined) return void out.push('/\n');
        for (const p of tree.lookupForList(a.path as string).listProperties() as { name: string; type: string }[]) out.push(`${p.name} (${p.type})\n`);
      },
    },
    {
      name: 'qom-get',
      args: 'path:s,property:s',
      params: 'path property',
      help: 'print a property of an object',
      run: (a, out) => void out.push(`${prettyJson(tree.lookup(a.path as string).getProperty(a.property as string))}\n`),
    },
    {
      name: 'qom-set',
      args: 'json:-j,path:s,property:s,value:S',
      params: '[-j] path property value',
      help: 'set a property of an object\n\t\t\t-j: the value is JSON',
      run: async (a) => {
        // With -j QEMU parses the value before it looks for the object; without, after.
        const json = a.json === true ? parseOneJson(a.value as string) : undefined;
        const obj = tree.lookup(a.path as string);
        const property = a.property as string;
        const value = json !== undefined ? json : valueFromText(obj, property, a.value as string);
        try {
          await objects.setProperty(obj, property, value);
        } finally {
          svc.changed(obj);
        }
      },
    },
  ];
  return table;
}

function helpText(table: readonly HmpCommandDef<Run>[], args: string): string {
  const words = args.split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return helpLines(table);
  let defs = table;
  let prefix = '';
  for (let i = 0; i < words.length; i++) {
    const d = findCommand(defs, words[i]);
    if (!d) return `unknown command: '${words.slice(0, i + 1).join(' ')}'\n`;
    if (i === words.length - 1) return d.sub ? helpLines(d.sub, `${prefix}${words[i]} `) : helpLines([d], prefix);
    if (!d.sub) return helpLines([d], prefix);
    prefix += `${words[i]} `;
    defs = d.sub;
  }
  return '';
}

/** `info memdev`: one block per backend, then an empty line. */
function memdevText(objects: ObjectManager): string {
  let text = '';
  for (const o of objects.list()) {
    if (!(o instanceof HostMemoryBackend)) continue;
    text +=
      `memory backend: ${o.name}\n` +
      `  size:  ${o.size}\n` +
      `  merge: ${o.merge}\n` +
      `  dump: ${o.dump}\n` +
      `  prealloc: ${o.prealloc}\n` +
      `  share: ${o.share}\n` +
      `  reserve: ${o.reserve}\n` +
      `  policy: ${o.policy}\n` +
      `  host nodes: ${rangesText(o.hostNodes)}\n`;
  }
  return `${text}\n`;
}

/** `object_add help` lists the types object_add can create; `TYPE,help` a type's settable
 *  properties, `  name=<type>` padded to 24 columns before ` - description`. */
function objectHelp(tree: ObjectTree, qomType: string | undefined): string {
  const t = qomType !== undefined ? tree.types.get(qomType) : undefined;
  if (!t || !t.info.userCreatable || t.info.abstract) {
    const names = (tree.types.list() as { name: string }[]).map((e) => e.name).filter((n) => tree.types.get(n)?.info.userCreatable);
    return `List of user creatable objects:\n${names.sort().map((n) => `  ${n}\n`).join('')}`;
  }
  const lines = [...t.properties.values()]
    .filter((p) => p.set)
    .map((p) => {
      const head = `  ${p.name}=<${p.type}>`;
      return p.description === undefined ? head : `${head.padEnd(24)} - ${p.description}`;
    })
    .sort();
  return lines.length ? `${qomType} options:\n${lines.map((l) => `${l}\n`).join('')}` : `There are no options for ${qomType}.\n`;
}

/** `info cpr` (hostmemd's own): query-cpr as lines. */
function cprText(v: JsonValue): string {
  const c = v as Record<string, JsonValue>;
  let text = `journal: ${c.journal as string} (${c['journal-state'] as string})\n`;
  if (c['journal-error'] !== undefined) text += `  error: ${c['journal-error'] as string}\n`;
  text += `fd store: ${c['fd-store'] ? 'yes' : 'no'}\n`;
  for (const o of c.objects as Record<string, JsonValue>[]) {
    text += `object ${o.id as string} (${o['qom-type'] as string}): ${o.preserved ? 'preserved' : 'not preserved'}, origin ${o.origin as string}\n`;
  }
  for (const p of c.problems as Record<string, JsonValue>[]) text += `problem${p.id !== undefined ? ` (${p.id as string})` : ''}: ${p.problem as string}\n`;
  for (const l of c.lost as Record<string, JsonValue>[]) text += `lost ${l.id as string} (${l['qom-type'] as string}): ${l.reason as string}\n`;
  return text;
}
