/**
 * Scratch databases on the benchmark's PostgreSQL server, tracked so that every one created is
 * dropped again, also on failure or Ctrl-C (dropAllDatabases), and their activity counters.
 */
import pg from 'pg';
import { progress } from './progress.js';

/** The server the databases are created on; also where pgbench and the describeMachine queries go. */
export const ADMIN_URL = process.env.ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const createdDatabases = new Set<string>();

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** One client connected to url for the length of work. */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(ADMIN_URL, work);
}

/** Creates (or re-creates) the database and returns its URL. */
export async function createDatabase(name: string): Promise<string> {
  // The name is interpolated into SQL, so only ever our own safe identifiers.
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unsafe database name ${name}`);
  await withAdmin(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${name}`);
  });
  createdDatabases.add(name);
  return databaseUrl(name);
}

export async function dropDatabase(name: string): Promise<void> {
  // FORCE: a server that failed to stop must not keep its database alive.
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  createdDatabases.delete(name);
}

export async function dropAllDatabases(): Promise<void> {
  for (const name of [...createdDatabases]) {
    await dropDatabase(name).catch((error: unknown) => progress(`could not drop database ${name}: ${String(error)}`));
  }
}

export type DatabaseCounters = { sessions: number; rollbacks: number; commits: number };

/**
 * Sessions opened to the database, and its commits and rollbacks. Many sessions mean the
 * server replaced pooled connections during the run, each a backend fork on the same cores.
 * Read after the server stopped: a backend reports its counters when it ends.
 */
export async function databaseCounters(name: string): Promise<DatabaseCounters | null> {
  try {
    return await withAdmin(async (client) => {
      const result = await client.query<{ sessions: string; rollbacks: string; commits: string }>(
        'SELECT sessions::text, xact_rollback::text AS rollbacks, xact_commit::text AS commits FROM pg_stat_database WHERE datname = $1',
        [name],
      );
      const row = result.rows[0];
      return row
        ? { sessions: Number(row.sessions), rollbacks: Number(row.rollbacks), commits: Number(row.commits) }
        : null;
    });
  } catch {
    return null; // pg_stat_database.sessions is PostgreSQL 14+
  }
}
