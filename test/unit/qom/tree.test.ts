// The object tree's name index: partial paths resolve through it, whether a name is unique (the
// object is indexed directly) or shared by several objects (a set), and detach keeps it exact.
import { QomObject, TypeRegistry, registerBaseTypes } from '../../../src/qom/object';
import { ObjectTree } from '../../../src/qom/tree';

function setup(): { tree: ObjectTree; obj: (name: string) => QomObject } {
  const types = new TypeRegistry();
  registerBaseTypes(types);
  const container = types.get('container')!;
  return { tree: new ObjectTree(types), obj: (name) => new QomObject(container, name) };
}

test('objects without children share no Map and list no child properties', () => {
  const { tree, obj } = setup();
  const a = obj('a');
  tree.attach(tree.objects, a);
  expect(a.children.size).toBe(0);
  expect(a.listProperties()).toEqual([{ name: 'type', type: 'string' }]);
  expect(tree.objects.children.get('a')).toBe(a);
  expect(tree.root.getProperty('objects')).toBe('/objects');
});

test('partial paths: unique, shared (ambiguous), and back to unique after detach', () => {
  const { tree, obj } = setup();
  const a = obj('x');
  tree.attach(tree.objects, a);
  expect(tree.resolve('x')).toEqual({ kind: 'found', obj: a });
  // A second 'x' under /objects/x: the name is now shared.
  const b = obj('x');
  tree.attach(a, b);
  expect(tree.resolve('x')).toEqual({ kind: 'ambiguous' });
  expect(tree.resolve('x/x')).toEqual({ kind: 'found', obj: b });
  expect(tree.resolve('objects/x')).toEqual({ kind: 'found', obj: a });
  expect(tree.resolve('/objects/x/x')).toEqual({ kind: 'found', obj: b });
  tree.detach(b);
  expect(a.children.size).toBe(0);
  expect(tree.resolve('x')).toEqual({ kind: 'found', obj: a });
  tree.detach(a);
  expect(tree.resolve('x')).toEqual({ kind: 'none' });
  expect(tree.resolve('/objects/x')).toEqual({ kind: 'none' });
  // Re-attaching the same object twice does not make its name look shared.
  tree.attach(tree.objects, a);
  tree.detach(a);
  tree.attach(tree.objects, a);
  expect(tree.resolve('x')).toEqual({ kind: 'found', obj: a });
});

test('an object named like the container is ambiguous by its last component only', () => {
  const { tree, obj } = setup();
  const o = obj('objects');
  tree.attach(tree.objects, o);
  expect(tree.resolve('objects')).toEqual({ kind: 'ambiguous' });
  expect(tree.resolve('objects/objects')).toEqual({ kind: 'found', obj: o });
  tree.detach(o);
  expect(tree.resolve('objects')).toEqual({ kind: 'found', obj: tree.objects });
});

test('one child, then two, then one again; children made before attach are indexed with it', () => {
  const { tree, obj } = setup();
  const a = obj('a');
  const a0 = obj('a[0]');
  a0.parent = a;
  a.addChild(a0);
  tree.attach(tree.objects, a);
  expect(tree.resolve('a[0]')).toEqual({ kind: 'found', obj: a0 });
  expect([...a.children.keys()]).toEqual(['a[0]']);
  expect(a.listProperties()).toEqual([{ name: 'type', type: 'string' }, { name: 'a[0]', type: 'child<container>' }]);
  const b = obj('b');
  tree.attach(a, b);
  expect([...a.children.keys()]).toEqual(['a[0]', 'b']);
  tree.detach(a0);
  expect([...a.children.entries()]).toEqual([['b', b]]);
  expect(a.children.has('a[0]')).toBe(false);
  expect(tree.resolve('a[0]').kind).toBe('none');
  tree.detach(a);
  expect(tree.resolve('b').kind).toBe('none');
});
