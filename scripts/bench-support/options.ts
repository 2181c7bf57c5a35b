/** The benchmark's command line, and the usage-error handling around parseArgs. */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PROJECT_ROOT } from './paths.js';
import { SCENARIOS, type Scenario } from './plan.js';

export class UsageError extends Error {}

export type BenchOptions = {
  scenarios: Scenario[];
  connections: number[];
  /** Core counts of the cores sweep. */
  cores: number[];
  repeats: number;
  seconds: number;
  warmup: number;
  quick: boolean;
  /** --plan / --dry-run: print the plan and stop. */
  dryRun: boolean;
  json: boolean;
  outDir: string | null;
  /** --pg-socket: the directory of PostgreSQL's Unix-domain socket; null: TCP. */
  pgSocket: string | null;
};

function wholeNumber(
  name: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max = Number.POSITIVE_INFINITY,
): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = Number.isFinite(max) ? `from ${min} to ${max}` : `of at least ${min}`;
    throw new UsageError(`--${name} takes whole numbers ${range}, got "${text}"`);
  }
  return value;
}

/** A comma-separated list, each item once, in the order given. */
const list = (text: string): string[] => [...new Set(text.split(',').map((item) => item.trim()))];

function scenarioList(text: string | undefined): Scenario[] {
  if (text === undefined) return [...SCENARIOS];
  return list(text).map((name) => {
    const scenario = SCENARIOS.find((known) => known === name);
    if (!scenario) throw new UsageError(`--scenarios: unknown scenario "${name}" (known: ${SCENARIOS.join(', ')})`);
    return scenario;
  });
}

/** The directory made absolute: node-postgres and libpq take a host for a socket directory only if it starts with '/'. */
function socketDirectory(text: string | undefined): string | null {
  if (text === undefined) return null;
  if (text.trim() === '') throw new UsageError('--pg-socket takes a directory, e.g. /var/run/postgresql');
  return path.resolve(PROJECT_ROOT, text);
}

/** allowedCores: the CPUs this process may use, the most a run or the cores sweep can have. */
export function parseBenchOptions(argv: string[], allowedCores: number): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      scenarios: { type: 'string' },
      connections: { type: 'string' },
      cores: { type: 'string' },
      repeats: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      quick: { type: 'boolean' },
      plan: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      'out-dir': { type: 'string' },
      'pg-socket': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return 'help';
  const scenarios = scenarioList(values.scenarios);
  if (values.cores !== undefined && !scenarios.includes('cores')) {
    throw new UsageError('--cores sets the core counts of the cores scenario, which --scenarios leaves out');
  }
  const quick = values.quick === true;
  return {
    scenarios,
    connections: list(values.connections ?? '8,32').map((text) => wholeNumber('connections', text, 8, 1)),
    cores:
      values.cores === undefined
        ? Array.from({ length: allowedCores }, (_, index) => index + 1)
        : list(values.cores).map((text) => wholeNumber('cores', text, 1, 1, allowedCores)),
    // --quick: smoke settings; explicit flags still win.
    repeats: wholeNumber('repeats', values.repeats, 1, 1),
    seconds: wholeNumber('seconds', values.seconds, quick ? 3 : 10, 1),
    // The warm-up may be 0 (no warm-up).
    warmup: wholeNumber('warmup', values.warmup, quick ? 1 : 2, 0),
    quick,
    dryRun: values.plan === true || values['dry-run'] === true,
    json: values.json === true,
    outDir: values['out-dir'] === undefined ? null : path.resolve(PROJECT_ROOT, values['out-dir']),
    pgSocket: socketDirectory(values['pg-socket']),
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
