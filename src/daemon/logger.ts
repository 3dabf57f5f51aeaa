// Structured logging with pino on stderr (stdout stays free; under systemd both reach the
// journal). One line per command at debug level, failures at warn.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  return pino({ level, base: { name: 'hostmemd' } }, pino.destination({ fd: 2, sync: false }));
}
