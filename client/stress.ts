#!/usr/bin/env node
/**
 * exchange-stress: a seeded, reproducible load on an exchange server. Creates
 * accounts and symbols of its own, then C connections send orders (around a
 * moving mid price, a chosen share of them crossing), queries and cancels, and
 * finally verifies that nothing was lost or created.
 */
import { parseArgs } from 'node:util';
import hdr from 'hdr-histogram-js';
import pg from 'pg';
import { findInvariantViolations } from './invariants.js';
import { seededRandom } from './random.js';
import { codeOfMessage, type ErrorCode } from '../server/errors.js';
import {
  ConnectionError,
  describeFailure,
  openChannel,
  parseFramingChoice,
  type Framing,
  type FramingChoice,
  type RequestChannel,
} from './wire.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** A server that refuses connections this long is gone: the run stops instead of hammering it. */
const GONE_AFTER_MS = 5_000;

const HELP = `Usage: exchange-stress [options]      (npm run stress -- [options])

Load:
  --host H            server address (default 127.0.0.1)
  --port P            server port (default 12345)
  --framing F         the server's reply framing: 'auto' (default: detected from its first reply),
                      'length' (persistent connections) or 'bare' (one connection per request)
  --connections C     concurrent connections (default 8)
  --seconds S         measured duration (default 10), or
  --requests N        stop after N measured requests instead
  --warmup W          seconds of load before measuring starts (default 2)
  --rate R            pace the load to R requests/s in total, warm-up included (default: unpaced).
                      Connection i of C sends its k-th request (k = 0, 1, ...) no earlier than
                      start + (k*C + i)/R seconds; otherwise still a closed loop: one request in
                      flight per connection, the next sent after the reply. Latency is measured
                      from when a request was due, so a request sent late because an earlier
                      reply was slow counts its wait too
Workload:
  --accounts A        accounts created (default 100), each with 1,000,000 cash
  --symbols S         symbols created (default 10), 10,000 shares per account each
  --cross X           share of orders priced to cross the book (default 0.5)
  --mix O:Q:C         weights of orders, queries and cancels (default 70:20:10)
  --seed N            PRNG seed: same seed, same request sequence per connection (default 1)
Verification:
  --database-url URL  check the SPEC invariants in SQL (default: env DATABASE_URL);
                      without it, checks through the protocol (every order queryable, fills balance)
  --no-verify         skip verification
Output:
  --json              print the summary as one JSON object on stdout, and mark the measured
                      window on stderr with the lines {"phase":"measuring"} and {"phase":"measured"}
  --csv               print the summary as CSV on stdout: a header, then one row for all requests
                      and one per kind (order, query, cancel)
  --help              this text

Progress (setup, load, verification) goes to stderr: updated in place on a terminal, one line
per phase otherwise, nothing with --json or --csv. Business rejections (insufficient funds or
shares, nothing open to cancel) are expected under random load and reported apart from failures.
While the server refuses connections the client backs off; after ${GONE_AFTER_MS / 1000} s of refusals it
gives the server up for gone and stops.

Exit status: 0 on success; 1 when verification finds a violation, a request failed (not a business
rejection), or the server could not be reached or went away; 2 on bad usage.`;

type Options = {
  host: string;
  port: number;
  framing: FramingChoice;
  connections: number;
  seconds: number;
  requests: number | null;
  warmup: number;
  rate: number | null;
  accounts: number;
  symbols: number;
  cross: number;
  mix: [number, number, number];
  seed: number;
  databaseUrl: string | null;
  verify: boolean;
  json: boolean;
  csv: boolean;
};

type OpenedOrder = { account: string; sym: string; id: string; amount: number; canceled: boolean };

type Kind = 'order' | 'query' | 'cancel';
const KINDS: readonly Kind[] = ['order', 'query', 'cancel'];

type Latency = { count: number; p50: number; p90: number; p99: number; p999: number; max: number; mean: number };

type Summary = {
  framing: Framing;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  /** The --rate pacing in requests/s, or null for an unpaced closed loop. */
  rate: number | null;
  requests: number;
  requestsPerSecond: number;
  orders: number;
  ordersPerSecond: number;
  latencyMs: Latency;
  latencyMsByKind: Record<Kind, Latency>;
  /** Failures by reason (whole run, warm-up included): each one is a failed request. */
  errors: Record<string, number>;
  /** Expected business rejections by reason (whole run): not failures. */
  rejections: Record<string, number>;
  failedRequests: number;
  /** Why the run stopped early: the server refused connections for too long. */
  serverGone: string | null;
  invariants: { checked: 'sql' | 'protocol' | 'none'; violations: string[]; note?: string };
};

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      framing: { type: 'string' },
      connections: { type: 'string' },
      seconds: { type: 'string' },
      requests: { type: 'string' },
      warmup: { type: 'string' },
      rate: { type: 'string' },
      accounts: { type: 'string' },
      symbols: { type: 'string' },
      cross: { type: 'string' },
      mix: { type: 'string' },
      seed: { type: 'string' },
      'database-url': { type: 'string' },
      'no-verify': { type: 'boolean' },
      json: { type: 'boolean' },
      csv: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.json && values.csv) throw new Error('--json and --csv cannot be used together');
  if (values.help) return 'help';
  const number = (text: string | undefined, fallback: number, name: string, min: number, max: number): number => {
    const value = text === undefined ? fallback : Number(text);
    if (!Number.isFinite(value) || value < min || value > max)
      throw new Error(`--${name} must be a number from ${min} to ${max}`);
    return value;
  };
  const mix = (values.mix ?? '70:20:10').split(':').map(Number);
  if (mix.length !== 3 || mix.some((weight) => !Number.isFinite(weight) || weight < 0) || (mix[0] ?? 0) <= 0) {
    throw new Error('--mix must be three non-negative weights O:Q:C with O > 0');
  }
  const framing = parseFramingChoice(values.framing ?? 'auto');
  if (framing === null) throw new Error('--framing must be auto, length or bare');
  return {
    host: values.host ?? '127.0.0.1',
    port: number(values.port, 12345, 'port', 1, 65535),
    framing,
    connections: Math.floor(number(values.connections, 8, 'connections', 1, 10_000)),
    seconds: number(values.seconds, 10, 'seconds', 0.1, 86_400),
    requests: values.requests === undefined ? null : Math.floor(number(values.requests, 0, 'requests', 1, 1e9)),
    warmup: number(values.warmup, 2, 'warmup', 0, 3600),
    rate: values.rate === undefined ? null : number(values.rate, 0, 'rate', 0.001, 10_000_000),
    accounts: Math.floor(number(values.accounts, 100, 'accounts', 2, 100_000)),
    symbols: Math.floor(number(values.symbols, 10, 'symbols', 1, 10_000)),
    cross: number(values.cross, 0.5, 'cross', 0, 1),
    mix: mix as [number, number, number],
    seed: Math.floor(number(values.seed, 1, 'seed', 0, 2 ** 32)),
    databaseUrl: values['database-url'] || process.env.DATABASE_URL || null,
    verify: !values['no-verify'],
    json: Boolean(values.json),
    csv: Boolean(values.csv),
  };
}

const CASH_PER_ACCOUNT = '1000000';
const SHARES_PER_ACCOUNT = 10_000;

/** Business rejections are expected under random load; anything else is a failure. */
const EXPECTED_REJECTIONS = new Set<ErrorCode | undefined>([
  'insufficient_funds',
  'insufficient_shares',
  'nothing_open',
]);

function newHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

class Load {
  /** Latency in microseconds, measured requests only: all of them, and per kind. */
  readonly histogram = newHistogram();
  readonly byKind: Record<Kind, hdr.Histogram> = {
    order: newHistogram(),
    query: newHistogram(),
    cancel: newHistogram(),
  };
  readonly errors: Record<string, number> = {};
  readonly rejections: Record<string, number> = {};
  readonly orders: OpenedOrder[] = [];
  requests = 0;
  /** Every request answered, warm-up included (what the ticker shows). */
  answered = 0;
  ordersSent = 0;
  failedRequests = 0;
  measuring = false;
  /** Set when the server refused connections for GONE_AFTER_MS: every connection stops. */
  serverGone: string | null = null;
  /** When the load began (performance.now()): the origin of the --rate schedule. */
  startedAt = 0;
  /** Mid price per symbol, in cents: a random walk shared by all connections. */
  readonly mid: number[];

  /** The framing the server speaks (detected during setup unless --framing named it). */
  constructor(
    readonly options: Options,
    readonly framing: Framing,
    readonly accountIds: string[],
    readonly symbols: string[],
  ) {
    this.mid = symbols.map(() => 10_000);
  }

  /** An <error> in a reply: a business rejection, or a failure. Counted by message, for people. */
  countError(reason: string): void {
    if (EXPECTED_REJECTIONS.has(codeOfMessage(reason))) {
      this.rejections[reason] = (this.rejections[reason] ?? 0) + 1;
    } else {
      this.countFailure(reason);
    }
  }

  countFailure(reason: string): void {
    this.errors[reason] = (this.errors[reason] ?? 0) + 1;
    this.failedRequests++;
  }

  /** The server refused connections too long: stop every connection, once. */
  giveUp(error: unknown): void {
    this.serverGone ??= describeFailure(error);
  }
}

/**
 * Progress on stderr: one line updated in place on a terminal, a line per phase otherwise,
 * nothing at all with --json or --csv (their stdout is for programs, and the benchmarks read
 * stderr's phase markers).
 */
class Progress {
  private readonly enabled: boolean;
  private readonly tty = Boolean(process.stderr.isTTY);
  private lastUpdate = 0;

  constructor(options: Options) {
    this.enabled = !options.json && !options.csv;
  }

  start(text: string): void {
    if (this.enabled) process.stderr.write(this.tty ? `\r${text}\x1b[K` : `${text}\n`);
  }

  /** Terminal only, at most ten times a second. */
  update(text: string): void {
    if (!this.enabled || !this.tty || performance.now() - this.lastUpdate < 100) return;
    this.lastUpdate = performance.now();
    process.stderr.write(`\r${text}\x1b[K`);
  }

  done(text: string): void {
    if (this.enabled) process.stderr.write(this.tty ? `\r${text}\x1b[K\n` : `${text}\n`);
  }
}

function price(cents: number): string {
  return (Math.max(1, cents) / 100).toFixed(2);
}

function errorsOf(reply: string): string[] {
  return [...reply.matchAll(/<error[^>]*>([^<]*)<\/error>/g)].map((match) => match[1] ?? '');
}

async function setUp(
  channel: RequestChannel,
  options: Options,
  runTag: string,
  progress: Progress,
): Promise<{ accounts: string[]; symbols: string[] }> {
  const started = performance.now();
  const accounts = Array.from({ length: options.accounts }, (_, index) => `${runTag}${String(index).padStart(6, '0')}`);
  const symbols = Array.from({ length: options.symbols }, (_, index) => `ST${runTag}X${index}`);
  const steps = Math.ceil(accounts.length / 500) * (1 + symbols.length);
  let step = 0;
  const what = `setup: ${accounts.length} accounts, ${symbols.length} symbols`;
  progress.start(`${what}...`);
  const advance = () => progress.update(`${what}: ${Math.round((++step / steps) * 100)}%`);
  for (let start = 0; start < accounts.length; start += 500) {
    const batch = accounts.slice(start, start + 500);
    const reply = await channel.send(
      `<create>${batch.map((id) => `<account id="${id}" balance="${CASH_PER_ACCOUNT}"/>`).join('')}</create>`,
    );
    if (errorsOf(reply).length > 0) throw new Error(`creating accounts failed: ${errorsOf(reply)[0]}`);
    advance();
  }
  for (const sym of symbols) {
    for (let start = 0; start < accounts.length; start += 500) {
      const batch = accounts.slice(start, start + 500);
      const reply = await channel.send(
        `<create><symbol sym="${sym}">${batch.map((id) => `<account id="${id}">${SHARES_PER_ACCOUNT}</account>`).join('')}</symbol></create>`,
      );
      if (errorsOf(reply).length > 0) throw new Error(`creating shares failed: ${errorsOf(reply)[0]}`);
      advance();
    }
  }
  progress.done(
    `${what}: done in ${((performance.now() - started) / 1000).toFixed(1)} s (server framing: ${channel.framing ?? 'unknown'})`,
  );
  return { accounts, symbols };
}

/** One connection's loop: its own seeded PRNG, so the request sequence is reproducible. */
async function runConnection(load: Load, index: number, stopAt: () => boolean): Promise<void> {
  const { options } = load;
  const random = seededRandom(options.seed * 7919 + index);
  const [orderWeight, queryWeight, cancelWeight] = options.mix;
  const total = orderWeight + queryWeight + cancelWeight;
  const connectOptions = { retryRefusedForMs: GONE_AFTER_MS };
  let channel: RequestChannel;
  try {
    channel = await openChannel(load.framing, options.host, options.port, connectOptions);
  } catch (error) {
    load.giveUp(error);
    return;
  }
  const mine: OpenedOrder[] = [];
  // Orders this connection has not canceled, in no particular order: picking one must not scan
  // every order ever placed (that scan was the client's biggest cost, CPU the server needs).
  const cancelable: OpenedOrder[] = [];
  // --rate: this connection's k-th request is due at start + (k*C + index)/R, so the C connections
  // interleave evenly and together send R requests/s (when the server keeps up).
  let sent = 0;
  while (!stopAt()) {
    // When paced, latency counts from when the request was due, not from when it went out: a
    // slow reply delays this connection's next sends, and that wait is latency too (otherwise
    // the client would hide it: coordinated omission).
    let due: number | null = null;
    if (options.rate !== null) {
      due = load.startedAt + ((sent * options.connections + index) / options.rate) * 1000;
      const wait = due - performance.now();
      if (wait > 0) {
        await sleep(wait);
        if (stopAt()) break;
      }
    }
    sent++;
    const roll = random() * total;
    let xml: string;
    let kind: Kind;
    let placing: Omit<OpenedOrder, 'id' | 'canceled'> | null = null;
    let canceling: OpenedOrder | null = null;
    if (roll < orderWeight || mine.length === 0) {
      const symbolIndex = Math.floor(random() * load.symbols.length);
      const sym = load.symbols[symbolIndex] as string;
      const account = load.accountIds[Math.floor(random() * load.accountIds.length)] as string;
      load.mid[symbolIndex] = Math.max(500, (load.mid[symbolIndex] ?? 10_000) + Math.round((random() - 0.5) * 20));
      const mid = load.mid[symbolIndex] ?? 10_000;
      const buy = random() < 0.5;
      const crossing = random() < options.cross;
      // Crossing orders are priced through the mid; the others rest on their own side.
      const offset = 1 + Math.floor(random() * 50);
      const cents = buy === crossing ? mid + offset : mid - offset;
      const amount = (1 + Math.floor(random() * 100)) * (buy ? 1 : -1);
      xml = `<transactions id="${account}"><order sym="${sym}" amount="${amount}" limit="${price(cents)}"/></transactions>`;
      kind = 'order';
      placing = { account, sym, amount };
    } else if (roll < orderWeight + queryWeight) {
      const order = mine[Math.floor(random() * mine.length)] as OpenedOrder;
      xml = `<transactions id="${order.account}"><query id="${order.id}"/></transactions>`;
      kind = 'query';
    } else {
      if (cancelable.length > 0) {
        // Taken out while in flight (one request per connection), put back unless it was canceled.
        const pick = Math.floor(random() * cancelable.length);
        canceling = cancelable[pick] as OpenedOrder;
        cancelable[pick] = cancelable[cancelable.length - 1] as OpenedOrder;
        cancelable.pop();
      } else {
        canceling = mine[0] as OpenedOrder;
      }
      xml = `<transactions id="${canceling.account}"><cancel id="${canceling.id}"/></transactions>`;
      kind = 'cancel';
    }
    const started = due ?? performance.now();
    let reply: string;
    try {
      reply = await channel.send(xml);
    } catch (error) {
      // Its outcome is unknown: it stays a candidate, as if it had not been canceled.
      if (canceling && !canceling.canceled) cancelable.push(canceling);
      // Not connected (bare framing connects per request): nothing was sent, so nothing failed;
      // the server refused connections for GONE_AFTER_MS (or cannot be reached) and is gone.
      if (error instanceof ConnectionError && error.code !== 'lost') {
        load.giveUp(error);
        break;
      }
      load.countFailure(`${kind}: ${describeFailure(error)}`);
      channel.close();
      if (stopAt()) break;
      try {
        channel = await openChannel(load.framing, options.host, options.port, connectOptions);
      } catch (reconnect) {
        load.giveUp(reconnect);
        return;
      }
      continue;
    }
    load.answered++;
    const measured = load.measuring;
    if (measured) {
      const micros = Math.max(0, performance.now() - started) * 1_000;
      load.histogram.recordValue(micros);
      load.byKind[kind].recordValue(micros);
      load.requests++;
      if (placing) load.ordersSent++;
    }
    // A reply that is not a document (say, the server closed without answering) is a failure.
    if (!reply.includes('<results')) load.countFailure(`${kind}: not a <results> document`);
    for (const reason of errorsOf(reply)) load.countError(reason);
    if (placing) {
      const id = /<opened [^>]*id="(\d+)"/.exec(reply)?.[1];
      if (id) {
        const order = { ...placing, id, canceled: false };
        mine.push(order);
        cancelable.push(order);
        load.orders.push(order);
      }
    }
    if (canceling && !canceling.canceled) {
      if (reply.includes('<canceled id=')) canceling.canceled = true;
      else cancelable.push(canceling);
    }
  }
  channel.close();
}

/** Without database access: every order must be queryable and each symbol's fills must balance. */
async function verifyByProtocol(load: Load, progress: Progress): Promise<string[]> {
  const violations: string[] = [];
  const channel = await openChannel(load.framing, load.options.host, load.options.port);
  const filled = new Map<string, { bought: number; sold: number }>();
  const what = `verify: querying ${load.orders.length} orders`;
  progress.start(`${what}...`);
  try {
    for (const [index, order] of load.orders.entries()) {
      progress.update(`${what}: ${index}/${load.orders.length}`);
      const reply = await channel.send(`<transactions id="${order.account}"><query id="${order.id}"/></transactions>`);
      if (!reply.includes(`<status id="${order.id}"`)) {
        violations.push(`order ${order.id} acknowledged but not queryable: ${errorsOf(reply)[0] ?? reply}`);
        continue;
      }
      const shares = (tag: string) =>
        [...reply.matchAll(new RegExp(`<${tag} shares="([0-9.]+)"`, 'g'))].reduce(
          (sum, match) => sum + Number(match[1]),
          0,
        );
      const executed = shares('executed');
      const accounted = executed + shares('open') + shares('canceled');
      if (accounted !== Math.abs(order.amount))
        violations.push(`order ${order.id}: executed + open + canceled = ${accounted}, amount ${order.amount}`);
      const totals = filled.get(order.sym) ?? { bought: 0, sold: 0 };
      if (order.amount > 0) totals.bought += executed;
      else totals.sold += executed;
      filled.set(order.sym, totals);
    }
  } finally {
    channel.close();
  }
  for (const [sym, totals] of filled) {
    if (totals.bought !== totals.sold)
      violations.push(`${sym}: ${totals.bought} shares bought but ${totals.sold} sold`);
  }
  progress.done(`${what}: done`);
  return violations;
}

async function verifyBySql(load: Load, databaseUrl: string, progress: Progress): Promise<string[]> {
  const what = `verify: SPEC invariants in SQL over ${load.accountIds.length} accounts and ${load.symbols.length} symbols`;
  progress.start(`${what}...`);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  try {
    return await findInvariantViolations(pool, {
      cash: (BigInt(CASH_PER_ACCOUNT) * BigInt(load.accountIds.length)).toString(),
      shares: Object.fromEntries(load.symbols.map((sym) => [sym, String(SHARES_PER_ACCOUNT * load.accountIds.length)])),
      accounts: load.accountIds,
    });
  } finally {
    await pool.end();
    progress.done(`${what}: done`);
  }
}

/** Once a second on a terminal: the phase, requests per second (warm-up too), and failures so far. */
function startTicker(load: Load, progress: Progress, startedAt: number): () => void {
  let last = 0;
  const timer = setInterval(() => {
    const elapsed = (Date.now() - startedAt) / 1000;
    const phase = load.measuring ? 'measuring' : 'warm-up';
    const rate = load.answered - last;
    last = load.answered;
    const failed = load.failedRequests > 0 ? `, ${load.failedRequests} failed` : '';
    progress.update(
      `load: ${phase} ${elapsed.toFixed(0)} s: ${rate} req/s, ${load.requests} measured, ${load.orders.length} orders opened${failed}`,
    );
  }, 1000);
  return () => clearInterval(timer);
}

function latency(histogram: hdr.Histogram): Latency {
  // A percentile is reported as the top of its bucket, which can pass the largest value recorded.
  const ms = (micros: number) => Math.round(Math.min(micros, histogram.maxValue)) / 1000;
  return {
    count: histogram.totalCount,
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
    mean: ms(histogram.totalCount === 0 ? 0 : histogram.mean),
  };
}

function summarize(load: Load, seconds: number, invariants: Summary['invariants']): Summary {
  const { options } = load;
  return {
    framing: load.framing,
    connections: options.connections,
    seconds,
    warmupSeconds: options.warmup,
    rate: options.rate,
    requests: load.requests,
    requestsPerSecond: load.requests / seconds,
    orders: load.ordersSent,
    ordersPerSecond: load.ordersSent / seconds,
    latencyMs: latency(load.histogram),
    latencyMsByKind: {
      order: latency(load.byKind.order),
      query: latency(load.byKind.query),
      cancel: latency(load.byKind.cancel),
    },
    errors: load.errors,
    rejections: load.rejections,
    failedRequests: load.failedRequests,
    serverGone: load.serverGone,
    invariants,
  };
}

const counts = (record: Record<string, number>): string =>
  Object.keys(record).length === 0
    ? 'none'
    : Object.entries(record)
        .map(([reason, count]) => `${reason}: ${count}`)
        .join('; ');

function printSummary(summary: Summary): void {
  const row = (label: string, figures: Latency) =>
    `  ${label.padEnd(7)}${[figures.count, figures.p50, figures.p90, figures.p99, figures.p999, figures.max]
      .map((value) => String(value).padStart(9))
      .join('')}`;
  const invariants = summary.invariants;
  const lines = [
    `${summary.requests} requests in ${summary.seconds.toFixed(1)} s over ${summary.connections} ${summary.framing} connections (after ${summary.warmupSeconds} s warm-up)`,
    `throughput: ${summary.requestsPerSecond.toFixed(0)} requests/s, ${summary.ordersPerSecond.toFixed(0)} orders/s${summary.rate === null ? '' : ` (paced at ${summary.rate} requests/s)`}`,
    `latency ms   count      p50      p90      p99    p99.9      max`,
    row('all', summary.latencyMs),
    ...KINDS.map((kind) => row(kind, summary.latencyMsByKind[kind])),
    `business rejections (expected): ${counts(summary.rejections)}`,
    `failed requests: ${summary.failedRequests}${summary.failedRequests === 0 ? '' : ` (${counts(summary.errors)})`}`,
    ...(summary.serverGone === null ? [] : [`stopped early: ${summary.serverGone}`]),
    `invariants (${invariants.checked}): ${invariants.checked === 'none' ? (invariants.note ?? 'not checked') : invariants.violations.length === 0 ? 'all hold' : invariants.violations.join('; ')}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** One header, then a row for all requests and one per kind; a field with a comma or quote is quoted. */
function printCsv(summary: Summary): void {
  const header = ['kind', 'requests', 'requests_per_s', 'p50_ms', 'p90_ms', 'p99_ms', 'p999_ms', 'max_ms', 'mean_ms'];
  const row = (label: string, figures: Latency) =>
    [
      label,
      figures.count,
      (figures.count / summary.seconds).toFixed(1),
      figures.p50,
      figures.p90,
      figures.p99,
      figures.p999,
      figures.max,
      figures.mean,
    ].join(',');
  const lines = [
    header.join(','),
    row('all', summary.latencyMs),
    ...KINDS.map((kind) => row(kind, summary.latencyMsByKind[kind])),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** A usage error: one line naming the problem, not the whole help. */
function usage(message: string): number {
  process.stderr.write(`exchange-stress: ${message}\nTry 'exchange-stress --help' for more information.\n`);
  return 2;
}

async function main(): Promise<number> {
  let options: Options | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    return usage((error as Error).message);
  }
  if (options === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const progress = new Progress(options);
  // Ids unique to this run, so runs never meet each other's accounts or symbols.
  const runTag = `${Date.now() % 1e9}${Math.floor(Math.random() * 1000)}`;
  let created: { accounts: string[]; symbols: string[] };
  let framing: Framing;
  try {
    const setup = await openChannel(options.framing, options.host, options.port, { retryRefusedForMs: GONE_AFTER_MS });
    created = await setUp(setup, options, runTag, progress);
    framing = setup.framing ?? 'length';
    setup.close();
  } catch (error) {
    progress.done('setup: failed');
    process.stderr.write(`exchange-stress: setup failed: ${describeFailure(error)}\n`);
    return 1;
  }
  const load = new Load(options, framing, created.accounts, created.symbols);
  const startedAt = Date.now();
  load.startedAt = performance.now();
  const measureFrom = startedAt + options.warmup * 1000;
  const endAt = measureFrom + options.seconds * 1000;
  // With --json, the window's start and end as lines on stderr, for tools that sample around it
  // (the benchmarks read CPU use over exactly the measured window).
  const phase = (name: 'measuring' | 'measured') => {
    if (options.json) process.stderr.write(`${JSON.stringify({ phase: name })}\n`);
  };
  const startMeasuring = () => {
    load.measuring = true;
    phase('measuring');
  };
  const warmupTimer = options.warmup === 0 ? null : setTimeout(startMeasuring, options.warmup * 1000);
  if (options.warmup === 0) startMeasuring();
  const length =
    options.requests === null
      ? `${options.warmup} s warm-up, then ${options.seconds} s measured`
      : `${options.warmup} s warm-up, then ${options.requests} requests`;
  progress.start(`load: ${options.connections} ${framing} connections, ${length}...`);
  const stopTicker = startTicker(load, progress, startedAt);
  const stopAt =
    options.requests === null
      ? () => load.serverGone !== null || Date.now() >= endAt
      : () => load.serverGone !== null || (load.measuring && load.requests >= (options.requests as number));
  await Promise.all(Array.from({ length: options.connections }, (_, index) => runConnection(load, index, stopAt)));
  if (warmupTimer) clearTimeout(warmupTimer);
  phase('measured');
  stopTicker();
  progress.done(
    load.serverGone === null ? `load: done, ${load.answered} requests answered` : `load: stopped: ${load.serverGone}`,
  );
  const seconds =
    options.requests === null && load.serverGone === null
      ? options.seconds
      : Math.max(0.001, (Date.now() - measureFrom) / 1000);

  let invariants: Summary['invariants'] = { checked: 'none', violations: [] };
  if (options.verify && options.databaseUrl) {
    invariants = { checked: 'sql', violations: await verifyBySql(load, options.databaseUrl, progress) };
  } else if (options.verify && load.serverGone === null) {
    invariants = { checked: 'protocol', violations: await verifyByProtocol(load, progress) };
  } else if (options.verify) {
    invariants = {
      checked: 'none',
      violations: [],
      note: 'not checked: the server is gone (give --database-url to check in SQL)',
    };
  }
  const summary = summarize(load, seconds, invariants);
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else if (options.csv) printCsv(summary);
  else printSummary(summary);
  if (load.serverGone !== null) process.stderr.write(`exchange-stress: ${load.serverGone}\n`);
  return invariants.violations.length > 0 || load.serverGone !== null || load.failedRequests > 0 ? 1 : 0;
}

process.exitCode = await main();
