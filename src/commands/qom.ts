// Handlers of the object-tree and memory commands (qapi/qom.json, qapi/machine.json):
// qom-list, qom-get, qom-set, qom-list-types, qom-list-properties, object-add, object-del,
// query-memdev. Thin: the QOM layer does the work and throws QEMU's errors.
import { Handler, PreEncoded } from '../qmp/messages';
import { ObjectTree } from '../qom/tree';
import { ObjectManager } from '../qom/user-creatable';
import { HostMemoryBackend } from '../backends';

export function qomHandlers(tree: ObjectTree, objects: ObjectManager): Map<string, Handler> {
  return new Map<string, Handler>([
    ['qom-list', (a) => tree.lookupForList(a.path as string).listProperties()],
    ['qom-get', (a) => tree.lookup(a.path as string).getProperty(a.property as string)],
    [
      'qom-set',
      async (a) => {
        const obj = tree.lookup(a.path as string);
        await obj.setProperty(a.property as string, a.value, 'live');
        await objects.changed(obj, a.property as string);
        return {};
      },
    ],
    ['qom-list-types', (a) => tree.types.list(a.implements as string | undefined, (a.abstract as boolean | undefined) ?? false)],
    ['qom-list-properties', (a) => tree.types.listProperties(a.typename as string)],
    [
      'object-add',
      async (a) => {
        await objects.add(a);
        return {};
      },
    ],
    [
      'object-del',
      async (a) => {
        await objects.del(a.id as string);
        return {};
      },
    ],
    [
      'query-memdev',
      () => {
        // Linear, with each backend's entry encoded once (see memdevJson).
        const parts: string[] = [];
        for (const o of objects.list()) if (o instanceof HostMemoryBackend) parts.push(o.memdevJson());
        return new PreEncoded(`[${parts.join(', ')}]`);
      },
    ],
  ]);
}
