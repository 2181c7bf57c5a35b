/**
 * Structured logs: JSON lines on stderr through pino, written synchronously so
 * the last lines before an exit are never lost. Quiet per request by design:
 * one line per start, stop, connection problem, retry storm or slow request.
 */
import pino from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

function initialLevel(): LogLevel {
  const wanted = process.env['LOG_LEVEL'] as LogLevel | undefined;
  return wanted !== undefined && LEVELS.includes(wanted) ? wanted : 'info';
}

const logger = pino(
  {
    level: initialLevel(),
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Level names rather than numbers: readable, and what operators grep for.
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ dest: 2, sync: true }),
);

export function setLogLevel(level: LogLevel): void {
  logger.level = level;
}

type Fields = Record<string, unknown>;

export const log = {
  debug: (message: string, fields?: Fields) => logger.debug(fields ?? {}, message),
  info: (message: string, fields?: Fields) => logger.info(fields ?? {}, message),
  warn: (message: string, fields?: Fields) => logger.warn(fields ?? {}, message),
  error: (message: string, fields?: Fields) => logger.error(fields ?? {}, message),
};
