// The native layer's public face: the rest of hostmemd imports from here and never from koffi
// or the files behind it. Raw addresses stay inside native/ (ffi.ts's Address, and mapping.ts's
// adoptMapping/mappingAddress, are deliberately not exported).
export { SysError, errnoName, strerror } from './errno';
export { Fd } from './fd';
export { Mapping } from './mapping';
export type { NodeMask } from './mapping';
export * from './libc';
export { beneathMode, openBeneath, openDirectory, unlinkAt, ELOOP, EXDEV, ENOTDIR, ENOSYS } from './beneath';
export { populateWrite, preallocate, threadpoolSize, PREALLOC_PIECE } from './prealloc';
export type { PreallocOptions, PreallocProgress } from './prealloc';
export * from './kvm';
export * as sockets from './socket';
export { Watch } from './poller';
export type { Received } from './socket';
export { execWithFds, exitNow, openFilesLimit, FIRST_FREE_FD } from './exec';
export type { Placement, ExecFailure } from './exec';
