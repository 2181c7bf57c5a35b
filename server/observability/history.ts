/**
 * The last minutes of the server's own metrics, for the dashboard: every second
 * it reads the Prometheus text this process serves at /metrics (aggregated over
 * the workers in a multi-process server) and keeps, per second, the requests
 * and orders counted and the latency quantiles of that second. A fixed ring:
 * HISTORY_SECONDS samples, whatever the load.
 */

/** Ten minutes of one-second points. */
export const HISTORY_SECONDS = 600;

export type HistoryPoint = {
  /** End of the second, epoch milliseconds. */
  time: number;
  requestsPerSecond: number;
  ordersPerSecond: number;
  /** Request latency quantiles over that second, milliseconds (null: no request finished). */
  p50Ms: number | null;
  p99Ms: number | null;
};

/** Cumulative counters read from one scrape. */
type Sample = { time: number; requests: number; orders: number; buckets: Array<[number, number]> };

function labelValue(labels: string, name: string): string | undefined {
  return new RegExp(`${name}="([^"]*)"`).exec(labels)?.[1];
}

/** The counters the dashboard plots, from Prometheus text format (summed over labels). */
export function sampleOf(text: string, time: number): Sample {
  let requests = 0;
  let orders = 0;
  const buckets = new Map<number, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const [, name, labels = '', valueText = ''] = match;
    const value = Number(valueText);
    if (!Number.isFinite(value)) continue;
    if (name === 'exchange_requests_total') requests += value;
    else if (name === 'exchange_orders_opened_total') orders += value;
    else if (name === 'exchange_request_duration_seconds_bucket') {
      const le = labelValue(labels, 'le');
      const bound = le === '+Inf' ? Infinity : Number(le);
      if (!Number.isNaN(bound)) buckets.set(bound, (buckets.get(bound) ?? 0) + value);
    }
  }
  return { time, requests, orders, buckets: [...buckets].sort((a, b) => a[0] - b[0]) };
}

/**
 * A quantile from cumulative bucket counts (upper bound, count), interpolated
 * linearly inside the bucket, as Prometheus' histogram_quantile does.
 */
export function quantile(q: number, buckets: Array<[number, number]>): number | null {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      // The open-ended bucket has no upper bound: answer its lower one.
      if (bound === Infinity) return lowerBound;
      return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / Math.max(count - lowerCount, 1e-12);
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return lowerBound;
}

/** A counter that went down was reset (a worker restarted): count from zero. */
function increase(now: number, before: number): number {
  return now >= before ? now - before : now;
}

export function pointBetween(before: Sample, after: Sample): HistoryPoint {
  const seconds = Math.max((after.time - before.time) / 1000, 0.001);
  const earlier = new Map(before.buckets);
  const buckets = after.buckets.map(([bound, count]): [number, number] => [
    bound,
    increase(count, earlier.get(bound) ?? 0),
  ]);
  const toMs = (seconds: number | null) => (seconds === null ? null : Math.round(seconds * 1e6) / 1e3);
  return {
    time: after.time,
    requestsPerSecond: increase(after.requests, before.requests) / seconds,
    ordersPerSecond: increase(after.orders, before.orders) / seconds,
    p50Ms: toMs(quantile(0.5, buckets)),
    p99Ms: toMs(quantile(0.99, buckets)),
  };
}

export class MetricsHistory {
  private readonly points: HistoryPoint[] = [];
  private last: Sample | null = null;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(
    private readonly scrape: () => Promise<string>,
    private readonly intervalMs = 1_000,
  ) {}

  start(): void {
    if (this.timer) return;
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    // Sampling alone must not keep a stopping process alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Oldest first. */
  history(): HistoryPoint[] {
    return [...this.points];
  }

  private async tick(): Promise<void> {
    // A scrape slower than the interval (workers busy) is not stacked up.
    if (this.busy) return;
    this.busy = true;
    try {
      const sample = sampleOf(await this.scrape(), Date.now());
      if (this.last) {
        this.points.push(pointBetween(this.last, sample));
        if (this.points.length > HISTORY_SECONDS) this.points.splice(0, this.points.length - HISTORY_SECONDS);
      }
      this.last = sample;
    } catch {
      // A missed scrape is a gap in the chart, nothing more.
    } finally {
      this.busy = false;
    }
  }
}
