/**
 * The signals that stop the server (Ctrl-C, a service manager, a closed terminal),
 * and who handles them: until a graceful shutdown is in place, a stop signal ends
 * the start at once. Exiting, rather than dying of the signal, runs the exit hook
 * that stops an embedded PostgreSQL, which runs in a process group of its own and
 * so does not get the terminal's Ctrl-C.
 */
import { constants } from 'node:os';
import { log } from './log.js';

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function exitDuringStart(signal: NodeJS.Signals): void {
  log.info('stopped during start-up', { signal });
  process.exit(128 + constants.signals[signal]);
}

/** From now until a graceful shutdown takes over, a stop signal exits at once. */
export function exitOnStopSignal(): void {
  for (const signal of STOP_SIGNALS) process.on(signal, exitDuringStart);
}

/** Hands the stop signals to a graceful shutdown (called for each signal that arrives). */
export function onStopSignal(handler: (signal: NodeJS.Signals) => void): void {
  for (const signal of STOP_SIGNALS) {
    process.off(signal, exitDuringStart);
    process.on(signal, () => handler(signal));
  }
}
