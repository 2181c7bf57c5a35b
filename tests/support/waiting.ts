/** Waiting in tests: for a while, or until something is true. */
export { setTimeout as sleep } from 'node:timers/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `condition` every 20 ms; resolves with the milliseconds it took, rejects naming `what` at the deadline. */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<number> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
  return Date.now() - started;
}
