// Version facts shown in the greeting and query-version.
// `qemu` is the QEMU QAPI level whose interface hostmemd implements (11.1.0 adds
// memory-backend-guest-memfd); `package` names hostmemd itself.

export const HOSTMEMD_VERSION = '0.1.0';
export const QEMU_LEVEL = { major: 11, minor: 1, micro: 0 } as const;
export const PACKAGE_STRING = `hostmemd ${HOSTMEMD_VERSION}`;
