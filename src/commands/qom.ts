// Handlers of the object-tree and memory commands (qapi/qom.json, qapi/machine.json):
// qom-list, qom-get, qom-set, qom-list-types, qom-list-properties, object-add, object-del,
// query-memdev. Thin: the QOM layer does the work and throws QEMU's errors.
import { Handler, PreEncoded } from '../qmp/messages';
import { encodeJson, flatCopy } from '../json/writer';
import { QomObject } from '../qom/object';
import { ObjectTree } from '../qom/tree';
import { ObjectManager } from '../qom/user-creatable';
import { HostMemoryBackend } from '../backends';

/** Each backend's query-memdev entry as QMP text, encoded once and kept until a qom-set on it
 *  (the only way a live backend's Memdev changes): a reply for 10,000 backends is then a
 *  string join. */
export class MemdevReplies {
  private readonly encoded = new WeakMap<QomObject, string>();

  entry(b: HostMemoryBackend): string {
    let text = this.encoded.get(b);
    if (text === undefined) {
      text = flatCopy(encodeJson(b.memdev(), { qdictOrder: true }));
      this.encoded.set(b, text);
    }
    return text;
  }

  changed(obj: QomObject): void {
    this.encoded.delete(obj);
  }
}

export function qomHandlers(tree: ObjectTree, objects: ObjectManager, memdevs = new MemdevReplies()): Map<string, Handler> {
  return new Map<string, Handler>([
    ['qom-list', (a) => tree.lookupForList(a.path as string).listProperties()],
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
      () => {
        // Linear, with each backend's entry encoded once (MemdevReplies).
        const parts: string[] = [];
        for (const o of objects.list()) if (o instanceof HostMemoryBackend) parts.push(memdevs.entry(o));
        return new PreEncoded(`[${parts.join(', ')}]`);
      },
    ],
  ]);
}
