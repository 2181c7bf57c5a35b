/**
 * Keeps a pool's first connections open, so requests under load never wait for a new one.
 *
 * pg-pool opens connections on demand. A connection opened in the middle of load costs a
 * backend fork on the cores that serve the load, and where new connections hang (seen with
 * PostgreSQL in a container: 10 s, then "connection timeout"), the request that needed it
 * waited that long, with the write lane behind it. So the pool opens `min` connections at
 * start, pg-pool's `min` keeps them from being closed when idle, and a connection the pool
 * dropped (it failed: PostgreSQL restarted, a backend was terminated) is replaced in the
 * background, retried with back-off while PostgreSQL stays away.
 */
import type pg from 'pg';

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;

export class PoolWarmer {
  private filling: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private retryMs = FIRST_RETRY_MS;

  constructor(
    private readonly pool: pg.Pool,
    private readonly min: number,
    private readonly onFailure: (error: Error) => void = () => undefined,
  ) {
    pool.on('remove', () => this.schedule(0));
  }

  /**
   * Opens connections until the pool holds `min`; settles once they are open, or rejects
   * when one failed, and then tries again later by itself.
   */
  fill(): Promise<void> {
    if (this.filling) {
      // A connection dropped while this fill runs may not be counted by it: fill again after.
      this.again = true;
      return this.filling;
    }
    this.filling = this.openMissing().then(
      () => {
        this.filling = null;
        this.retryMs = FIRST_RETRY_MS;
        if (this.again) {
          this.again = false;
          this.schedule(0);
        }
      },
      (error: Error) => {
        this.filling = null;
        this.again = false;
        this.onFailure(error);
        this.schedule(this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
        throw error;
      },
    );
    return this.filling;
  }

  private async openMissing(): Promise<void> {
    const missing = this.min - this.pool.totalCount;
    if (missing <= 0 || this.pool.ending) return;
    // connect() hands out idle clients first, so those are asked for too; then `missing` new
    // ones open. Each goes back idle at once: a checked-out client has no pool error
    // listener, and its connection dying would be an uncaught error.
    const count = this.pool.idleCount + missing;
    const opened = await Promise.allSettled(
      Array.from({ length: count }, () => this.pool.connect().then((client) => client.release())),
    );
    const failed = opened.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.pool.ending) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      // A failure has scheduled the next try already.
      this.fill().catch(() => undefined);
    }, delayMs);
    // Never what keeps a stopping process alive.
    this.timer.unref();
  }
}
