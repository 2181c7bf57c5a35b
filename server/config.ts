/** Configuration from the environment, overridden by command-line flags, validated at start. */
import { parseArgs } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import type { ReplyFraming } from './protocol/framing.js';
import type { WriteFlush } from './store/exchange-store.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './log.js';

/**
 * Workers started when WORKERS is unset: one per CORES_PER_WORKER cores, at least one, at most
 * MAX_DEFAULT_WORKERS. Measured (docs/performance.md): at its peak one server process uses
 * about a quarter of the CPU an order costs, PostgreSQL and the clients the rest, so a second
 * process pays off only where it has cores of its own. Below that it was slower than one, even
 * with every worker's writes in the primary's one write lane: each process then wakes up for
 * fewer requests, and the processes together spent about three times the CPU per request.
 */
export const CORES_PER_WORKER = 4;
export const MAX_DEFAULT_WORKERS = 4;

export function defaultWorkers(cores: number): number {
  return Math.min(MAX_DEFAULT_WORKERS, Math.max(1, Math.floor(cores / CORES_PER_WORKER)));
}

/** Short tokens can be guessed; 32 hex characters (openssl rand -hex 16) is the least accepted. */
export const MIN_ADMIN_TOKEN_LENGTH = 32;

export type WriteQueue = 'shared' | 'per-worker';

export type Config = {
  host: string;
  port: number;
  databaseUrl: string | null;
  redisUrl: string | null;
  replyFraming: ReplyFraming;
  maxRequestBytes: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  graceMs: number;
  maxConnections: number;
  maxBufferedBytes: number;
  dbPoolSize: number;
  /** PostgreSQL connections opened at start and kept open, per pool (at most dbPoolSize). */
  dbPoolMin: number;
  /** 'auto': write batches flush WAL under the write lock unless other writers wait; 'after-lock': never under it. */
  writeFlush: WriteFlush;
  /** The longest one write batch may hold the write lock. */
  writeTimeoutMs: number;
  workers: number;
  /** With WORKERS > 1: one write queue in the primary for every worker ('shared'), or one per worker. */
  writeQueue: WriteQueue;
  metricsPort: number | null;
  /** Address of the metrics, dashboard and operator API port (127.0.0.1: this machine only). */
  metricsHost: string;
  /** Bearer token of the private operator API (/api/accounts); null: that API is off. */
  adminToken: string | null;
  slowRequestMs: number;
  cacheTtlSeconds: number;
  cacheTimeoutMs: number;
  dataDir: string;
  embeddedPgPort: number;
  shutdownTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
};

type Setting = {
  key: keyof Config;
  env: string;
  /** null: environment only (a secret: command lines are visible to every user of the machine in ps). */
  flag: string | null;
  default: string;
  help: string;
  parse: (text: string) => Config[keyof Config];
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function integer(min: number, max: number) {
  return (text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
      throw new ConfigError(`must be an integer from ${min} to ${max}`);
    }
    return Number(text);
  };
}
function oneOf<T extends string>(allowed: readonly T[]) {
  return (text: string): T => {
    if (!(allowed as readonly string[]).includes(text)) throw new ConfigError(`must be one of ${allowed.join(', ')}`);
    return text as T;
  };
}
const optionalText = (text: string): string | null => (text.length > 0 ? text : null);

const SETTINGS: Setting[] = [
  { key: 'port', env: 'PORT', flag: 'port', default: '12345', help: 'TCP port to listen on', parse: integer(0, 65535) },
  { key: 'host', env: 'HOST', flag: 'host', default: '0.0.0.0', help: 'address to listen on', parse: (text) => text },
  {
    key: 'databaseUrl',
    env: 'DATABASE_URL',
    flag: 'database-url',
    default: '',
    help: 'PostgreSQL URL; unset: an embedded PostgreSQL under --data-dir',
    parse: optionalText,
  },
  {
    key: 'redisUrl',
    env: 'REDIS_URL',
    flag: 'redis-url',
    default: '',
    help: 'Redis URL for the read cache; unset: no cache',
    parse: optionalText,
  },
  {
    key: 'cacheTtlSeconds',
    env: 'CACHE_TTL_SECONDS',
    flag: 'cache-ttl-seconds',
    default: '3600',
    help: 'lifetime of a cache entry',
    parse: integer(1, 30 * 86_400),
  },
  {
    key: 'cacheTimeoutMs',
    env: 'CACHE_TIMEOUT_MS',
    flag: 'cache-timeout-ms',
    default: '50',
    help: 'a cache call slower than this is a miss',
    parse: integer(1, 10_000),
  },
  {
    key: 'replyFraming',
    env: 'REPLY_FRAMING',
    flag: 'reply-framing',
    default: 'bare',
    help: "'bare' (reply, then close) or 'length' (length-prefixed replies, persistent connections)",
    parse: (text) => {
      if (text !== 'bare' && text !== 'length') throw new ConfigError("must be 'bare' or 'length'");
      return text;
    },
  },
  {
    key: 'maxRequestBytes',
    env: 'MAX_REQUEST_BYTES',
    flag: 'max-request-bytes',
    default: '1048576',
    help: 'largest request body accepted',
    parse: integer(64, 64 * 1024 * 1024),
  },
  {
    key: 'requestTimeoutMs',
    env: 'REQUEST_TIMEOUT_MS',
    flag: 'request-timeout-ms',
    default: '10000',
    help: 'a request must arrive whole within this long of its first byte',
    parse: integer(100, 3_600_000),
  },
  {
    key: 'idleTimeoutMs',
    env: 'IDLE_TIMEOUT_MS',
    flag: 'idle-timeout-ms',
    default: '60000',
    help: 'close connections idle this long',
    parse: integer(100, 86_400_000),
  },
  {
    key: 'graceMs',
    env: 'GRACE_MS',
    flag: 'grace-ms',
    default: '100',
    help: 'wait this long before processing a complete document shorter than its declared length',
    parse: integer(1, 10_000),
  },
  {
    key: 'maxConnections',
    env: 'MAX_CONNECTIONS',
    flag: 'max-connections',
    default: '10000',
    help: 'concurrent connections accepted',
    parse: integer(1, 1_000_000),
  },
  {
    key: 'maxBufferedBytes',
    env: 'MAX_BUFFERED_BYTES',
    flag: 'max-buffered-bytes',
    default: String(64 * 1024 * 1024),
    help: 'bytes a server process holds for its clients (requests not yet answered, replies not yet sent); beyond it connections stop reading and wait their turn',
    parse: integer(64 * 1024, 64 * 1024 * 1024 * 1024),
  },
  {
    key: 'metricsPort',
    env: 'METRICS_PORT',
    flag: 'metrics-port',
    default: '',
    help: 'HTTP port for /metrics (Prometheus), /healthz, the dashboard (/) and the operator API (/api/...); unset: off',
    parse: (text) => (text.length === 0 ? null : integer(1, 65535)(text)),
  },
  {
    key: 'metricsHost',
    env: 'METRICS_HOST',
    flag: 'metrics-host',
    default: '127.0.0.1',
    help: 'address of the METRICS_PORT listener (0.0.0.0: every interface, e.g. for Prometheus in another container)',
    parse: (text) => text,
  },
  {
    key: 'adminToken',
    env: 'ADMIN_TOKEN',
    flag: null,
    default: '',
    help: `bearer token for the private operator API (/api/accounts/ID), at least ${MIN_ADMIN_TOKEN_LENGTH} characters; unset: that API answers 404`,
    parse: (text) => {
      if (text.length === 0) return null;
      if (text.length < MIN_ADMIN_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(text)) {
        throw new ConfigError(
          `must be at least ${MIN_ADMIN_TOKEN_LENGTH} printable ASCII characters without spaces (try: openssl rand -hex 32)`,
        );
      }
      return text;
    },
  },
  {
    key: 'slowRequestMs',
    env: 'SLOW_REQUEST_MS',
    flag: 'slow-request-ms',
    default: '1000',
    help: 'log requests slower than this',
    parse: integer(1, 3_600_000),
  },
  {
    // One per 4 cores (see defaultWorkers). Up to 4: each worker holds up to DB_POOL_SIZE
    // PostgreSQL connections, and on a big host a container limited to a few CPUs still sees
    // every core.
    key: 'workers',
    env: 'WORKERS',
    flag: 'workers',
    default: String(defaultWorkers(os.availableParallelism())),
    help: `server processes sharing the port (node:cluster); the default is one per ${CORES_PER_WORKER} cores, at least 1, at most ${MAX_DEFAULT_WORKERS}`,
    parse: integer(1, 256),
  },
  {
    key: 'writeFlush',
    env: 'WRITE_FLUSH',
    flag: 'write-flush',
    default: 'auto',
    help: "'auto' (a write batch waits for its WAL flush under the write lock unless other writers wait for it) or 'after-lock' (never under the lock; replies wait for a shared flush)",
    parse: (text) => {
      if (text !== 'auto' && text !== 'after-lock') throw new ConfigError("must be 'auto' or 'after-lock'");
      return text;
    },
  },
  {
    key: 'writeQueue',
    env: 'WRITE_QUEUE',
    flag: 'write-queue',
    default: 'shared',
    help: "with WORKERS > 1: 'shared' (workers forward orders and cancels to the primary, which batches them all: one write lane for the host) or 'per-worker' (each worker batches its own, and the batches take turns on the write lock)",
    parse: (text) => {
      if (text !== 'shared' && text !== 'per-worker') throw new ConfigError("must be 'shared' or 'per-worker'");
      return text;
    },
  },
  {
    key: 'writeTimeoutMs',
    env: 'WRITE_TIMEOUT_MS',
    flag: 'write-timeout-ms',
    default: '5000',
    help: "the longest one write batch may hold the exchange's write lock; a write that alone takes longer (an order crossing too many resting orders) is refused, changing nothing",
    parse: integer(100, 600_000),
  },
  {
    key: 'dbPoolSize',
    env: 'DB_POOL_SIZE',
    flag: 'db-pool-size',
    default: '10',
    help: 'PostgreSQL connections per server process',
    parse: integer(1, 1000),
  },
  {
    key: 'dbPoolMin',
    env: 'DB_POOL_MIN',
    flag: 'db-pool-min',
    default: '4',
    help: 'PostgreSQL connections each process opens at start and keeps open, so load never waits for a new one (at most DB_POOL_SIZE)',
    parse: integer(0, 1000),
  },
  {
    key: 'dataDir',
    env: 'DATA_DIR',
    flag: 'data-dir',
    default: 'data/postgres',
    help: 'embedded PostgreSQL data directory (kept across restarts)',
    parse: (text) => path.resolve(text),
  },
  {
    key: 'embeddedPgPort',
    env: 'EMBEDDED_PG_PORT',
    flag: 'embedded-pg-port',
    default: '54329',
    help: 'port of the embedded PostgreSQL',
    parse: integer(1, 65535),
  },
  {
    key: 'shutdownTimeoutMs',
    env: 'SHUTDOWN_TIMEOUT_MS',
    flag: 'shutdown-timeout-ms',
    default: '10000',
    help: 'on SIGINT/SIGTERM, wait this long for in-flight requests',
    parse: integer(0, 600_000),
  },
  {
    key: 'logLevel',
    env: 'LOG_LEVEL',
    flag: 'log-level',
    default: 'info',
    help: `least severe log level written: ${LOG_LEVELS.join(', ')}`,
    parse: oneOf(LOG_LEVELS),
  },
  {
    key: 'logFormat',
    env: 'LOG_FORMAT',
    flag: 'log-format',
    default: 'auto',
    help: "'pretty' (one readable line per event), 'json' (JSON lines), or 'auto': pretty on a terminal, JSON otherwise",
    parse: oneOf(LOG_FORMATS),
  },
];

export function helpText(): string {
  const lines = [
    'exchange-server: XML-over-TCP exchange matching server',
    '',
    'Usage: npm start -- [flags]    (or: node dist/server/main.js [flags])',
    '',
    'Each flag can also be set by its environment variable; a flag wins over the variable.',
    '',
  ];
  for (const setting of SETTINGS) {
    const fallback = setting.default === '' ? 'unset' : setting.default;
    const flag = setting.flag === null ? '(environment only)'.padEnd(24) : `--${setting.flag.padEnd(22)}`;
    lines.push(`  ${flag} ${setting.env.padEnd(20)} ${setting.help} (default: ${fallback})`);
  }
  lines.push('  --help                                          show this help', '');
  return lines.join('\n');
}

export type ParsedCommandLine = { help: true } | { help: false; config: Config };

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedCommandLine {
  const options = Object.fromEntries(
    SETTINGS.flatMap((setting) => (setting.flag === null ? [] : [[setting.flag, { type: 'string' as const }]])),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { ...options, help: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new ConfigError(`${(error as Error).message} (see --help)`);
  }
  if (values.help) return { help: true };
  const config: Partial<Record<keyof Config, unknown>> = {};
  for (const setting of SETTINGS) {
    const flagValue = setting.flag === null ? undefined : values[setting.flag];
    const text = typeof flagValue === 'string' ? flagValue : (env[setting.env] ?? setting.default);
    try {
      config[setting.key] = setting.parse(text.trim());
    } catch (error) {
      const source = typeof flagValue === 'string' ? `--${setting.flag}` : setting.env;
      // A secret is never repeated, not even in an error message (it would land in logs).
      const shown = setting.flag === null ? '(value not shown)' : JSON.stringify(text);
      throw new ConfigError(`${source}=${shown}: ${(error as Error).message}`);
    }
  }
  return { help: false, config: config as Config };
}
