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
import { ReplyBlocks } from './reply-blocks';

/** Each backend's query-memdev entry as QMP text, kept current as it changes: encoded when the
 *  backend is added (the daemon calls refresh() on 'object-added') and again after each qom-set
 *  on it (the only way a live backend's Memdev changes), and joined with its neighbours into
 *  blocks of bytes (ReplyBlocks), so that the first query after adding 10,000 backends hands
 *  ready blocks to the transport instead of encoding or joining 10,000 entries (issue 16). A
 *  backend nobody refreshed (tests without the daemon's events) is encoded on first use. */
export class MemdevReplies {
  private readonly encoded = new WeakMap<QomObject, string>();
  private readonly blocks = new ReplyBlocks<HostMemoryBackend>(
    (b) => this.entry(b),
    (o): o is HostMemoryBackend => o instanceof HostMemoryBackend,
  );

  entry(b: HostMemoryBackend): string {
    let text = this.encoded.get(b);
    if (text === undefined) {
      text = flatCopy(encodeJson(b.memdev(), { qdictOrder: true }));
      this.encoded.set(b, text);
    }
    return text;
  }

  /** 'object-added': encodes `obj`'s entry now and puts it at the end of the list. */
  refresh(obj: QomObject): void {
    this.encoded.delete(obj);
    if (obj instanceof HostMemoryBackend) this.blocks.append(obj);
  }

  /** qom-set: even a refused value may have changed part of it (host-nodes ORs values in). */
  changed(obj: QomObject): void {
    this.encoded.delete(obj);
    if (obj instanceof HostMemoryBackend) this.blocks.update(obj);
  }

  /** 'object-deleted'. */
  removed(obj: QomObject): void {
    this.encoded.delete(obj);
    if (obj instanceof HostMemoryBackend) this.blocks.remove(obj);
  }

  /** query-memdev's result for the backends among `list()` (the live objects), in their order. */
  reply(list: () => Iterable<QomObject>): PreEncoded {
    return new PreEncoded([OPEN, ...this.blocks.chunks(list), CLOSE]);
  }
}

const OPEN = Buffer.from('[', 'latin1');
const CLOSE = Buffer.from(']', 'latin1');

/** The QDict order of a qom-list entry's members (ObjectPropertyInfo: name, type). */
const LIST_ENTRY_KEYS = qdictKeyOrder(['name', 'type']);

function listEntry(name: string, type: string): string {
  const entry: Record<string, JsonValue> = { name, type };
  let text = '';
  for (const k of LIST_ENTRY_KEYS) text += `${text === '' ? '{' : ', '}${encodeJson(k)}: ${encodeJson(entry[k])}`;
  return flatCopy(text + '}');
}

/** qom-list's entries (QomObject.listProperties(): the class properties, then one
 *  `child<T>` entry per child) as QMP text. A child's entry (its name and type, which never
 *  change) is encoded once; the children of an object that had some announced as added (the
 *  10,000 backends under /objects) are kept in blocks of bytes, so that listing them hands
 *  ready blocks to the transport. */
export class QomListReplies {
  private readonly pieces = new WeakMap<QomObject, string>();
  /** Per parent, the blocks of its children's entries; per child, its parent's blocks. */
  private readonly childBlocks = new WeakMap<QomObject, ReplyBlocks<QomObject>>();
  private readonly inBlocks = new WeakMap<QomObject, ReplyBlocks<QomObject>>();
  private readonly piece = (child: QomObject): string => {
    let text = this.pieces.get(child);
    if (text === undefined) {
      text = listEntry(child.name, `child<${child.typeName}>`);
      this.pieces.set(child, text);
    }
    return text;
  };

  /** 'object-added': encodes `child`'s entry in its parent's listing now. */
  refresh(child: QomObject): void {
    const parent = child.parent;
    if (parent === undefined) return;
    let blocks = this.childBlocks.get(parent);
    if (blocks === undefined) {
      blocks = new ReplyBlocks(this.piece);
      this.childBlocks.set(parent, blocks);
    }
    blocks.append(child);
    this.inBlocks.set(child, blocks);
  }

  /** 'object-deleted'. */
  removed(child: QomObject): void {
    this.inBlocks.get(child)?.remove(child);
    this.inBlocks.delete(child);
  }

  /** qom-list's result for `obj`: encodeJson(obj.listProperties()) as it would be. */
  reply(obj: QomObject): PreEncoded {
    let head = '[';
    for (const p of obj.type.properties.values()) head += `${head === '[' ? '' : ', '}${listEntry(p.name, p.type)}`;
    const blocks = this.childBlocks.get(obj);
    if (blocks === undefined) {
      for (const c of obj.children.values()) head += `${head === '[' ? '' : ', '}${this.piece(c)}`;
      return new PreEncoded(head + ']');
    }
    const chunks = blocks.chunks(() => obj.children.values(), head !== '[');
    return new PreEncoded([Buffer.from(head, 'latin1'), ...chunks, CLOSE]);
  }
}

export function qomHandlers(tree: ObjectTree, objects: ObjectManager, memdevs = new MemdevReplies(), lists = new QomListReplies()): Map<string, Handler> {
  return new Map<string, Handler>([
    ['qom-list', (a) => lists.reply(tree.lookupForList(a.path as string))],
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
      // Ready blocks of entries kept current (MemdevReplies), checked against the live list.
      () => memdevs.reply(() => tree.objects.children.values()),
    ],
  ]);
}
