// The native layer's public face: everything else imports from here, never koffi.
export * from './syscalls';
