// The logging interface lower layers write to (pino's Logger fits it); the daemon decides
// where lines go. A leaf: anyone may import it.
export interface Log {
  debug(o: object, msg: string): void;
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
  error(o: object, msg: string): void;
}
