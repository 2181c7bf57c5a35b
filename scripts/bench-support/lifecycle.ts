/**
 * Runs a benchmark's main function and undoes what it started whatever happens: on return, on
 * an exception and on SIGINT/SIGTERM, every tracked child is stopped and every scratch database
 * dropped; then the process exits with main's status (1 after an exception, 130 after a signal).
 */
import { dropAllDatabases } from './databases.js';
import { stopAllChildren } from './processes.js';
import { progress } from './progress.js';

async function abort(signal: NodeJS.Signals): Promise<never> {
  progress(`${signal}: stopping child processes and dropping the databases`);
  stopAllChildren();
  await dropAllDatabases();
  process.exit(130);
}

export async function runBenchmark(main: () => Promise<number>): Promise<never> {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void abort(signal));
  let exitCode = 1;
  try {
    exitCode = await main();
  } catch (error) {
    progress(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  } finally {
    stopAllChildren();
    await dropAllDatabases();
  }
  process.exit(exitCode);
}
