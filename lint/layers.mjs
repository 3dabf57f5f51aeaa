// The layer table of src/: which src/ folder may import from which.
//
// hostmemd is built in layers. The lower ones (json, errors, native) know nothing of the
// ones above; the protocol, schema and object-model layers (qmp, qapi, qom) are pure
// code that does no I/O; resources (fds, accel, backends, journal) sit on native; the
// QMP commands tie those together; transport, handover and web carry QMP to the outside;
// daemon/ wires everything and is the only folder that may import any other.
//
// Each key is a folder directly under src/. Its value lists the other src/ folders that
// the folder's files may import from; a folder may always import from itself, and the
// files directly in src/ (version.ts) are a leaf that anyone may import (and that imports
// no src/ folder). '*' means every folder. `import type` counts like any other import.
//
// eslint.config.mjs turns this table into `import-x/no-restricted-paths` zones. A folder
// under src/ that is not listed here is a lint error of its own: add it to this table,
// with the folders it may import from, before giving it files.
//
// Dependency cycles between files of src/ are forbidden as well (`import-x/no-cycle`),
// inside a folder as much as across folders.
export const layers = {
  json: [], //                                              JSON value model, writer, stream parser
  errors: [], //                                            QMP error classes, the error funnel
  native: ['errors'], //                                    koffi: the only importer of koffi
  qapi: ['json', 'errors'], //                              QAPI schema compiler
  qmp: ['json', 'errors'], //                               protocol: session, dispatcher, monitor
  qom: ['json', 'errors'], //                               object model
  fds: ['native', 'errors'], //                             named-fd registry
  accel: ['native', 'errors'], //                           KVM accelerator
  backends: ['qom', 'fds', 'accel', 'native', 'json', 'errors'],
  journal: ['qom', 'fds', 'native', 'json', 'errors'], //   state journal: never backends
  service: ['native', 'json', 'errors'], //                 sd_notify / LISTEN_FDS / notify server
  commands: ['qmp', 'qom', 'backends', 'accel', 'journal', 'fds', 'json', 'errors'],
  transport: ['qmp', 'native', 'json', 'errors'],
  handover: ['qmp', 'fds', 'native', 'json', 'errors'],
  web: ['qmp', 'transport', 'json', 'errors'],
  vmm: ['native', 'json', 'errors'], //                     driving VMMs (QEMU's QMP): the upgrade tool
  client: ['native', 'json', 'errors'], //                   QMP client that receives fds (memdev-export)
  launcher: ['client', 'native', 'errors'], //               hostmemd-run: fetch fds, exec a VMM
  daemon: ['*'], //                                         wires everything together
};

// Folders whose code does no I/O and loads no native code or web server: they must not
// import sockets, files, koffi, ws or fastify (no-restricted-imports).
export const pure = ['json', 'errors', 'qapi', 'qmp', 'qom', 'commands'];

// The one folder that may import koffi.
export const koffiFolder = 'native';
