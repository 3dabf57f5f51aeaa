// The container instructions agree with the Dockerfile (no Docker engine runs here, so this is
// what can be checked): the image's user has the fixed uid/gid the host is told to prepare
// /run/hostmemd for, is not root, and the documented `docker run` mounts what the image uses.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../../helpers/daemon';

const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const docs = fs.readFileSync(path.join(ROOT, 'docs/deployment.md'), 'utf8');
const container = docs.slice(docs.indexOf('## In a container'));

test("the image's user has a fixed, non-root uid and gid, and the docs prepare /run/hostmemd for them", () => {
  const gid = /groupadd [^\n]*--gid (\d+) hostmemd/.exec(dockerfile)?.[1];
  const uid = /useradd [^\n]*--uid (\d+) [^\n]*hostmemd/.exec(dockerfile)?.[1];
  expect([uid, gid]).toEqual([expect.stringMatching(/^\d+$/), expect.stringMatching(/^\d+$/)]);
  expect(Number(uid)).toBeGreaterThan(0);
  expect(dockerfile).toMatch(/^USER hostmemd$/m);
  for (const text of [container, dockerfile]) expect(text).toContain(`install -d -m 0750 -o ${uid} -g ${gid} /run/hostmemd`);
});

test('the documented docker run mounts the image volumes and adds /dev/kvm with its group', () => {
  const volumes = JSON.parse(/^VOLUME (\[.*\])$/m.exec(dockerfile)![1]) as string[];
  const run = /docker run[^`]*/.exec(container)![0];
  for (const v of volumes) expect(run).toContain(`:${v}`);
  expect(run).toContain('--device /dev/kvm');
  expect(run).toContain('--group-add "$(stat -c %g /dev/kvm)"');
  // The CMD's socket is in the shared directory.
  expect(dockerfile).toMatch(/^CMD \[.*"unix:\/run\/hostmemd\/qmp\.sock"\]$/m);
});
