// Handlers of the object-tree and memory commands (qapi/qom.json, qapi/machine.json):
// qom-list, qom-get, qom-set, qom-list-types, qom-list-properties, object-add, object-del,
// query-memdev. Thin: the QOM layer does the work and throws QEMU's errors.
import { Handler, PreEncoded } from '../qmp/messages';
import { encodeJson, flatCopy, qdictKeyOrder } from '../json/writer';
import { JsonValue } from '../json/value';
import { QomObject } from '../qom/object';
import { ObjectTree } from '../qom/tree';
import { ObjectManager } from '../qom/user-creatable';
import { HostMemoryBackend } from '../backends';

/** Each backend's query-memdev entry as QMP text, kept current as it changes: encoded when the
 *  backend is added (the daemon calls refresh() on 'object-added') and again after each qom-set
 *  on it (the only way a live backend's Memdev changes), so that the first query after adding
 *  10,000 backends joins ready pieces instead of encoding 10,000 objects (issue 16). A backend
 *  nobody refreshed (tests without the daemon's events) is encoded on first use. */
export class MemdevReplies {
  private readonly encoded = new WeakMap<QomObject, string>();
  /** The last reply and the pieces it was joined from: reused while every piece is the same. */
  private last?: { pieces: string[]; text: string };

  entry(b: HostMemoryBackend): string {
    let text = this.encoded.get(b);
    if (text === undefined) {
      text = flatCopy(encodeJson(b.memdev(), { qdictOrder: true }));
      this.encoded.set(b, text);
    }
    return text;
  }

  /** Re-encodes `obj`'s entry now (object-add, qom-set); other objects are ignored. */
  refresh(obj: QomObject): void {
    this.encoded.delete(obj);
    if (obj instanceof HostMemoryBackend) this.entry(obj);
  }

  /** qom-set: even a refused value may have changed part of it (host-nodes ORs values in). */
  changed(obj: QomObject): void {
    this.refresh(obj);
  }

  /** query-memdev's result text for the backends among `objects`, in their order. */
  reply(objects: Iterable<QomObject>): string {
    const pieces: string[] = [];
    for (const o of objects) if (o instanceof HostMemoryBackend) pieces.push(this.entry(o));
    const last = this.last;
    if (last && last.pieces.length === pieces.length && last.pieces.every((p, i) => p === pieces[i])) return last.text;
    const text = `[${pieces.join(', ')}]`;
    this.last = { pieces, text };
    return text;
  }
}

/** The QDict order of a qom-list entry's members (ObjectPropertyInfo: name, type). */
const LIST_ENTRY_KEYS = qdictKeyOrder(['name', 'type']);

/** qom-list's `child<T>` entries as QMP text, one per child object, so that listing /objects
 *  with 10,000 backends joins ready pieces. Each piece is checked against the entry
 *  listProperties() gives now (name and type), so a stale piece is never used. */
export class QomListReplies {
  private readonly pieces = new WeakMap<QomObject, { name: string; type: string; text: string }>();

  /** Encodes `child`'s entry in its parent's listing now (on 'object-added'). */
  refresh(child: QomObject): void {
    this.piece(child, child.name, `child<${child.typeName}>`);
  }

  private piece(child: QomObject, name: string, type: string): string {
    const had = this.pieces.get(child);
    if (had && had.name === name && had.type === type) return had.text;
    const entry: Record<string, JsonValue> = { name, type };
    let text = '';
    for (const k of LIST_ENTRY_KEYS) text += `${text === '' ? '{' : ', '}${encodeJson(k)}: ${encodeJson(entry[k])}`;
    text = flatCopy(text + '}');
    this.pieces.set(child, { name, type, text });
    return text;
  }

  /** qom-list's result text for `obj`. */
  reply(obj: QomObject): string {
    const items = obj.listProperties();
    const parts = new Array<string>(items.length);
    for (let i = 0; i < items.length; i++) {
      const it = items[i] as Record<string, JsonValue>;
      const { name, type } = it;
      const child = typeof name === 'string' && typeof type === 'string' && type.startsWith('child<') && Object.keys(it).length === 2 ? obj.children.get(name) : undefined;
      parts[i] = child ? this.piece(child, name as string, type as string) : encodeJson(it, { qdictOrder: true });
    }
    return `[${parts.join(', ')}]`;
  }
}

export function qomHandlers(tree: ObjectTree, objects: ObjectManager, memdevs = new MemdevReplies(), lists = new QomListReplies()): Map<string, Handler> {
  return new Map<string, Handler>([
    ['qom-list', (a) => new PreEncoded(lists.reply(tree.lookupForList(a.path as string)))],
    ['qom-get', (a) => tree.lookup(a.path as string).getProperty(a.property as string)],
    [
      'qom-set',
      async (a, ctx) => {
        const obj = tree.lookup(a.path as string);
        try {
          // Set and journaled, or undone if the journal cannot record it (a full state disk).
          await objects.setProperty(obj, a.property as string, a.value, ctx.staged);
        } finally {
          // Even a refused value may have changed part of it (host-nodes ORs values in).
          memdevs.changed(obj);
        }
        return {};
      },
    ],
    ['qom-list-types', (a) => tree.types.list(a.implements as string | undefined, (a.abstract as boolean | undefined) ?? false)],
    ['qom-list-properties', (a) => tree.types.listProperties(a.typename as string)],
    [
      'object-add',
      async (a, ctx) => {
        await objects.add(a, { staged: ctx.staged });
        return {};
      },
    ],
    [
      'object-del',
      async (a, ctx) => {
        await objects.del(a.id as string, ctx.staged);
        return {};
      },
    ],
    [
      'query-memdev',
      // Linear, joining entries kept current (MemdevReplies).
      () => new PreEncoded(memdevs.reply(objects.list())),
    ],
  ]);
}
