import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, defaultWorkers, helpText, loadConfig, type Config } from '../../server/config.js';

function config(argv: string[], env: Record<string, string> = {}): Config {
  const parsed = loadConfig(argv, env);
  if (parsed.help) throw new Error('unexpected --help');
  return parsed.config;
}

function configError(argv: string[], env: Record<string, string> = {}): ConfigError {
  try {
    loadConfig(argv, env);
  } catch (error) {
    expect(error).to.be.instanceOf(ConfigError);
    expect((error as Error).name).to.equal('ConfigError');
    return error as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify({ argv, env })}`);
}

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    expect(config([])).to.deep.equal({
      host: '0.0.0.0',
      port: 12345,
      databaseUrl: null,
      redisUrl: null,
      replyFraming: 'bare',
      maxRequestBytes: 1_048_576,
      requestTimeoutMs: 10_000,
      idleTimeoutMs: 60_000,
      graceMs: 100,
      maxConnections: 10_000,
      maxBufferedBytes: 64 * 1024 * 1024,
      dbPoolSize: 10,
      dbPoolMin: 4,
      writeFlush: 'auto',
      writeQueue: 'shared',
      writeTimeoutMs: 5000,
      workers: defaultWorkers(os.availableParallelism()),
      metricsPort: null,
      metricsHost: '127.0.0.1',
      adminToken: null,
      slowRequestMs: 1000,
      cacheTtlSeconds: 3600,
      cacheTimeoutMs: 50,
      dataDir: path.resolve('data/postgres'),
      embeddedPgPort: 54329,
      shutdownTimeoutMs: 10_000,
      logLevel: 'info',
      logFormat: 'auto',
    });
  });

  it('starts one worker per 4 cores by default, at least 1 and at most 4', () => {
    expect([1, 2, 3, 4, 7, 8, 12, 16, 64].map(defaultWorkers)).to.deep.equal([1, 1, 1, 1, 1, 2, 3, 4, 4]);
  });

  it('checks LOG_LEVEL and LOG_FORMAT instead of ignoring a typo', () => {
    expect(config([], { LOG_LEVEL: 'warn', LOG_FORMAT: 'json' })).to.include({ logLevel: 'warn', logFormat: 'json' });
    expect(config(['--log-level', 'debug', '--log-format', 'pretty'])).to.include({
      logLevel: 'debug',
      logFormat: 'pretty',
    });
    expect(configError([], { LOG_LEVEL: 'verbose' }).message).to.match(
      /LOG_LEVEL="verbose": must be one of debug, info, warn, error, silent/,
    );
    expect(configError([], { LOG_LEVEL: 'INFO' }).message).to.match(/LOG_LEVEL/);
    expect(configError(['--log-format', 'xml']).message).to.match(/--log-format="xml"/);
  });

  it('does not read process.env by itself', () => {
    const saved = process.env.PORT;
    process.env.PORT = '4242';
    try {
      expect(config([]).port).to.equal(12345);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });

  it('reads the environment', () => {
    const loaded = config([], {
      PORT: '2000',
      HOST: '127.0.0.1',
      DATABASE_URL: 'postgres://u:p@db/exchange',
      REDIS_URL: 'redis://cache:6379',
      REPLY_FRAMING: 'length',
      MAX_REQUEST_BYTES: '4096',
      REQUEST_TIMEOUT_MS: '500',
      IDLE_TIMEOUT_MS: '1000',
      GRACE_MS: '50',
      MAX_CONNECTIONS: '7',
      MAX_BUFFERED_BYTES: '1000000',
      DB_POOL_SIZE: '3',
      DB_POOL_MIN: '2',
      WRITE_FLUSH: 'after-lock',
      WRITE_QUEUE: 'per-worker',
      WRITE_TIMEOUT_MS: '800',
      WORKERS: '2',
      METRICS_PORT: '9464',
      METRICS_HOST: '0.0.0.0',
      ADMIN_TOKEN: 'x'.repeat(40),
      SLOW_REQUEST_MS: '250',
      CACHE_TTL_SECONDS: '60',
      CACHE_TIMEOUT_MS: '20',
      DATA_DIR: '/tmp/exchange-data',
      EMBEDDED_PG_PORT: '5555',
      SHUTDOWN_TIMEOUT_MS: '0',
      LOG_LEVEL: 'error',
      LOG_FORMAT: 'json',
    });
    expect(loaded).to.deep.equal({
      host: '127.0.0.1',
      port: 2000,
      databaseUrl: 'postgres://u:p@db/exchange',
      redisUrl: 'redis://cache:6379',
      replyFraming: 'length',
      maxRequestBytes: 4096,
      requestTimeoutMs: 500,
      idleTimeoutMs: 1000,
      graceMs: 50,
      maxConnections: 7,
      maxBufferedBytes: 1_000_000,
      dbPoolSize: 3,
      dbPoolMin: 2,
      writeFlush: 'after-lock',
      writeQueue: 'per-worker',
      writeTimeoutMs: 800,
      workers: 2,
      metricsPort: 9464,
      metricsHost: '0.0.0.0',
      adminToken: 'x'.repeat(40),
      slowRequestMs: 250,
      cacheTtlSeconds: 60,
      cacheTimeoutMs: 20,
      dataDir: '/tmp/exchange-data',
      embeddedPgPort: 5555,
      shutdownTimeoutMs: 0,
      logLevel: 'error',
      logFormat: 'json',
    });
  });

  it('reads flags, in both --flag value and --flag=value forms', () => {
    const loaded = config([
      '--port',
      '3000',
      '--reply-framing=length',
      '--database-url',
      'postgres://x/y',
      '--data-dir',
      'rel/dir',
    ]);
    expect(loaded.port).to.equal(3000);
    expect(loaded.replyFraming).to.equal('length');
    expect(loaded.databaseUrl).to.equal('postgres://x/y');
    expect(loaded.dataDir).to.equal(path.resolve('rel/dir'));
  });

  it('lets a flag override the environment', () => {
    const loaded = config(['--port', '1', '--grace-ms', '7'], { PORT: '2', GRACE_MS: '9', DB_POOL_SIZE: '4' });
    expect(loaded.port).to.equal(1);
    expect(loaded.graceMs).to.equal(7);
    expect(loaded.dbPoolSize).to.equal(4);
  });

  it('ignores an invalid environment value that a flag overrides', () => {
    expect(config(['--reply-framing', 'length'], { REPLY_FRAMING: 'nope' }).replyFraming).to.equal('length');
  });

  it('treats empty URLs as unset and trims values', () => {
    const loaded = config([], { DATABASE_URL: '', REDIS_URL: '  ', PORT: ' 80 ' });
    expect(loaded.databaseUrl).to.equal(null);
    expect(loaded.redisUrl).to.equal(null);
    expect(loaded.port).to.equal(80);
  });

  it('accepts the bounds of integer settings', () => {
    expect(config([], { PORT: '0' }).port).to.equal(0);
    expect(config([], { PORT: '65535' }).port).to.equal(65535);
    expect(config([], { MAX_REQUEST_BYTES: '64' }).maxRequestBytes).to.equal(64);
  });

  const badEnv: Array<[string, string]> = [
    ['PORT', 'abc'],
    ['PORT', '-1'],
    ['PORT', '1.5'],
    ['PORT', '65536'],
    ['PORT', '1e3'],
    ['PORT', ''],
    ['REPLY_FRAMING', 'nope'],
    ['REPLY_FRAMING', 'BARE'],
    ['MAX_REQUEST_BYTES', '10'],
    ['MAX_REQUEST_BYTES', '0x100'],
    ['GRACE_MS', '0'],
    ['REQUEST_TIMEOUT_MS', '99'],
    ['IDLE_TIMEOUT_MS', 'soon'],
    ['MAX_CONNECTIONS', '0'],
    ['DB_POOL_SIZE', '1001'],
    ['EMBEDDED_PG_PORT', '0'],
    ['SHUTDOWN_TIMEOUT_MS', '-5'],
    ['WRITE_QUEUE', 'primary'],
  ];
  for (const [name, value] of badEnv) {
    it(`rejects ${name}=${JSON.stringify(value)} naming the variable`, () => {
      const error = configError([], { [name]: value });
      expect(error.message).to.contain(name);
    });
  }

  it('names the flag when a flag value is invalid', () => {
    const error = configError(['--port', 'x'], { PORT: '5' });
    expect(error.message).to.contain('--port');
    expect(configError(['--max-connections=0']).message).to.contain('--max-connections');
  });

  it('rejects unknown flags and positional arguments', () => {
    expect(configError(['--bogus', '1']).message).to.contain('--bogus');
    configError(['extra']);
    configError(['--port']);
  });

  it('serves metrics on 127.0.0.1 unless METRICS_HOST says otherwise', () => {
    expect(config([]).metricsHost).to.equal('127.0.0.1');
    expect(config([], { METRICS_HOST: '0.0.0.0' }).metricsHost).to.equal('0.0.0.0');
    expect(config(['--metrics-host', '::1']).metricsHost).to.equal('::1');
  });

  it('takes ADMIN_TOKEN from the environment only, refuses a short one, and never repeats it', () => {
    const token = 'a'.repeat(32);
    expect(config([], { ADMIN_TOKEN: token }).adminToken).to.equal(token);
    expect(config([], { ADMIN_TOKEN: '' }).adminToken).to.equal(null);
    // A flag would show the token to every user of the machine (ps).
    expect(configError(['--admin-token', token]).message).to.match(/admin-token/);
    const short = configError([], { ADMIN_TOKEN: 'hunter2-secret' });
    expect(short.message).to.match(/ADMIN_TOKEN=\(value not shown\): must be at least 32/);
    expect(short.message).not.to.contain('hunter2');
    expect(configError([], { ADMIN_TOKEN: `${'b'.repeat(32)} c` }).message).not.to.contain('bbbb');
    expect(helpText()).to.match(/\(environment only\)\s+ADMIN_TOKEN/);
  });

  it('returns help for --help, even with invalid settings around it', () => {
    expect(loadConfig(['--help'], {})).to.deep.equal({ help: true });
    expect(loadConfig(['--help'], { PORT: 'x' })).to.deep.equal({ help: true });
  });
});

describe('helpText', () => {
  it('lists every flag with its environment variable and default', () => {
    const text = helpText();
    const pairs: Array<[string, string]> = [
      ['--port', 'PORT'],
      ['--host', 'HOST'],
      ['--database-url', 'DATABASE_URL'],
      ['--redis-url', 'REDIS_URL'],
      ['--reply-framing', 'REPLY_FRAMING'],
      ['--max-request-bytes', 'MAX_REQUEST_BYTES'],
      ['--request-timeout-ms', 'REQUEST_TIMEOUT_MS'],
      ['--idle-timeout-ms', 'IDLE_TIMEOUT_MS'],
      ['--grace-ms', 'GRACE_MS'],
      ['--max-connections', 'MAX_CONNECTIONS'],
      ['--db-pool-size', 'DB_POOL_SIZE'],
      ['--db-pool-min', 'DB_POOL_MIN'],
      ['--data-dir', 'DATA_DIR'],
      ['--embedded-pg-port', 'EMBEDDED_PG_PORT'],
      ['--shutdown-timeout-ms', 'SHUTDOWN_TIMEOUT_MS'],
      ['--metrics-host', 'METRICS_HOST'],
    ];
    for (const [flag, env] of pairs) {
      const line = text.split('\n').find((candidate) => candidate.trimStart().startsWith(`${flag} `));
      expect(line, flag).to.be.a('string');
      expect(line, flag).to.contain(env);
      expect(line, flag).to.match(/\(default: [^)]+\)$/);
    }
    expect(text).to.contain('--help');
    expect(text).to.contain('(default: 12345)');
    expect(text).to.contain('(default: bare)');
  });
});
