/**
 * The command-line options every benchmark takes (--repeats, --seconds, --warmup, --connections,
 * --quick, --help), and the usage-error handling around parseArgs.
 */
import type { ParseArgsConfig } from 'node:util';

export class UsageError extends Error {}

export function wholeNumber(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new UsageError(`--${name} must be a whole number of at least ${min}, got "${text}"`);
  return value;
}

/** For parseArgs: spread into its `options`. */
export const RUN_FLAGS = {
  repeats: { type: 'string' },
  seconds: { type: 'string' },
  warmup: { type: 'string' },
  connections: { type: 'string' },
  quick: { type: 'boolean' },
  help: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

export type RunOptions = { repeats: number; seconds: number; warmup: number; connections: number; quick: boolean };

type RunFlagValues = { repeats?: string; seconds?: string; warmup?: string; connections?: string; quick?: boolean };

/** --quick means 1 repeat of 3 s with 1 s warm-up; explicit flags still win. */
export function runOptions(values: RunFlagValues, defaults: { repeats: number; connections: number; minConnections: number }): RunOptions {
  const quick = values.quick === true;
  return {
    repeats: wholeNumber('repeats', values.repeats, quick ? 1 : defaults.repeats, 1),
    seconds: wholeNumber('seconds', values.seconds, quick ? 3 : 10, 1),
    // The warm-up may be 0 (no warm-up).
    warmup: wholeNumber('warmup', values.warmup, quick ? 1 : 2, 0),
    connections: wholeNumber('connections', values.connections, defaults.connections, defaults.minConnections),
    quick,
  };
}

/**
 * Parses the command line, or says why not: 'help' → HELP on stdout, exit 0; a usage error →
 * the message and HELP on stderr, exit 2. Returns the options, or the exit status.
 */
export function optionsOrExit<T>(help: string, parse: () => T | 'help'): T | number {
  let options: T | 'help';
  try {
    options = parse();
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${help}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  return options;
}
