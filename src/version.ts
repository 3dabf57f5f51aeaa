// Version facts shown in the greeting and query-version.
// `qemu` is the QEMU release whose QMP behaviour hostmemd reproduces and is tested against
// (7.2: texts, reply shapes, HMP output); what exists beyond it (memory-backend-guest-memfd,
// hostmemd's own commands) is found in query-qmp-schema. `package` names hostmemd itself.

export const HOSTMEMD_VERSION = '0.1.0';
export const QEMU_LEVEL = { major: 7, minor: 2, micro: 0 } as const;
export const PACKAGE_STRING = `hostmemd ${HOSTMEMD_VERSION}`;
