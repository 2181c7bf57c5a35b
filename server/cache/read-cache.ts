/**
 * The cache the store decorator talks to: get and set of strings, where any
 * failure is a miss. PostgreSQL stays the only source of truth, and Redis is not
 * trusted: the caller decodes each entry, and one it refuses is a miss and is removed.
 */
import { createClient } from 'redis';
import { log } from '../log.js';

/** rejected: entries found but refused by their decoder (also counted as misses). */
export type CacheCounters = { hits: number; misses: number; errors: number; rejected: number };

export interface ReadCache {
  readonly counters: CacheCounters;
  /**
   * null on a miss, on any Redis failure, and when decode refuses the entry (null), which
   * is then deleted: whatever is at a key, only what decode accepts is ever returned.
   */
  get<T>(key: string, decode: (text: string) => T | null): Promise<T | null>;
  /** Best effort: a failure is logged once in a while and otherwise ignored. */
  set(key: string, value: string): Promise<void>;
  close(): Promise<void>;
}

export type RedisCacheOptions = {
  url: string;
  ttlSeconds: number;
  /** A cache call slower than this counts as a miss: PostgreSQL answers instead. */
  commandTimeoutMs: number;
};

export class RedisReadCache implements ReadCache {
  readonly counters: CacheCounters = { hits: 0, misses: 0, errors: 0, rejected: 0 };
  private readonly client;
  private lastErrorLog = 0;

  constructor(private readonly options: RedisCacheOptions) {
    this.client = createClient({
      url: options.url,
      // No queueing while disconnected: a call then fails at once and counts as a miss.
      disableOfflineQueue: true,
      commandOptions: { timeout: options.commandTimeoutMs },
      socket: {
        connectTimeout: 1_000,
        // Keep trying forever, at most once a second, so the cache comes back with Redis.
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 5), 1_000),
      },
    });
    // Without a listener node-redis errors would crash the process.
    this.client.on('error', (error: Error) => this.noteError('redis connection error', error));
    this.client.on('ready', () => log.info('redis cache connected'));
    this.client.connect().catch((error: unknown) => this.noteError('redis connect failed', error));
  }

  /** True while connected (used by health checks and tests). */
  get connected(): boolean {
    return this.client.isReady;
  }

  async get<T>(key: string, decode: (text: string) => T | null): Promise<T | null> {
    if (!this.client.isReady) {
      this.counters.misses++;
      return null;
    }
    let text: string | null;
    try {
      text = await this.withinTimeout(this.client.get(key));
    } catch (error) {
      this.counters.misses++;
      this.noteError('redis get failed', error);
      return null;
    }
    const value = text === null ? null : decode(text);
    if (value !== null) {
      this.counters.hits++;
      return value;
    }
    this.counters.misses++;
    if (text !== null) {
      this.counters.rejected++;
      await this.remove(key);
    }
    return null;
  }

  /** Best effort, like set: an entry left behind is refused again at the next read. */
  private async remove(key: string): Promise<void> {
    try {
      await this.withinTimeout(this.client.del(key));
    } catch (error) {
      this.noteError('redis del failed', error);
    }
  }

  async set(key: string, value: string): Promise<void> {
    if (!this.client.isReady) return;
    try {
      await this.withinTimeout(this.client.set(key, value, { EX: this.options.ttlSeconds }));
    } catch (error) {
      this.noteError('redis set failed', error);
    }
  }

  /**
   * Our own deadline on every call: a Redis that is alive but frozen (stopped,
   * swapping, a full network buffer) must cost at most this long per request.
   */
  private withinTimeout<T>(call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`redis call took over ${this.options.commandTimeoutMs} ms`)),
        this.options.commandTimeoutMs,
      );
    });
    call.catch(() => undefined); // a late failure after the deadline is not unhandled
    return Promise.race([call, deadline]).finally(() => clearTimeout(timer));
  }

  /** For health checks: rejects when Redis does not answer. */
  async ping(): Promise<void> {
    await this.client.ping();
  }

  /** Nothing in a cache needs flushing, so the connection is simply dropped. */
  async close(): Promise<void> {
    if (this.client.isOpen) this.client.destroy();
  }

  private noteError(message: string, error: unknown): void {
    this.counters.errors++;
    // A Redis outage must not flood the log: one line per 5 s at most.
    const now = Date.now();
    if (now - this.lastErrorLog < 5_000) return;
    this.lastErrorLog = now;
    log.warn(message, {
      error: error instanceof Error ? error.message : String(error),
      errorsSoFar: this.counters.errors,
    });
  }
}
