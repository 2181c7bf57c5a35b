/**
 * Logs on stderr through pino, written synchronously so the last lines before an exit are
 * never lost: JSON lines for programs (and whenever stderr is not a terminal), one readable
 * line per event on a terminal (pino-pretty). Quiet per request by design: one line per
 * start, stop, connection problem, retry storm or slow request.
 */
import pino from 'pino';
import pretty from 'pino-pretty';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** 'auto': pretty on a terminal, JSON otherwise. */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

function fromEnvironment<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
  const wanted = process.env[name];
  // An invalid value is reported by the configuration check at start (exit 2); until then, the fallback.
  return wanted !== undefined && (allowed as readonly string[]).includes(wanted) ? (wanted as T) : fallback;
}

function createLogger(level: LogLevel, format: LogFormat): pino.Logger {
  if (format === 'pretty' || (format === 'auto' && process.stderr.isTTY)) {
    return pino(
      { level, base: { pid: process.pid } },
      pretty({
        destination: 2,
        sync: true,
        singleLine: true,
        colorize: Boolean(process.stderr.isTTY),
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'hostname',
      }),
    );
  }
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level names rather than numbers: readable, and what operators grep for.
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}

let logger = createLogger(
  fromEnvironment('LOG_LEVEL', LOG_LEVELS, 'info'),
  fromEnvironment('LOG_FORMAT', LOG_FORMATS, 'auto'),
);

/** Applies the checked configuration (the logger before it read the environment leniently). */
export function configureLog(level: LogLevel, format: LogFormat): void {
  logger = createLogger(level, format);
}

type Fields = Record<string, unknown>;

export const log = {
  debug: (message: string, fields?: Fields) => logger.debug(fields ?? {}, message),
  info: (message: string, fields?: Fields) => logger.info(fields ?? {}, message),
  warn: (message: string, fields?: Fields) => logger.warn(fields ?? {}, message),
  error: (message: string, fields?: Fields) => logger.error(fields ?? {}, message),
};
