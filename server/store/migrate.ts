/** Applies schema/*.sql in name order at start. Every file is idempotent. */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/** schema/ at the project root, found from this file in both server/ and dist/server/. */
export async function findSchemaDirectory(): Promise<string> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const candidate of [path.resolve(here, '../../schema'), path.resolve(here, '../../../schema')]) {
    try {
      const entries = await readdir(candidate);
      if (entries.some((name) => name.endsWith('.sql'))) return candidate;
    } catch {
      // try the next candidate
    }
  }
  throw new Error('schema directory with .sql files not found');
}

/**
 * Several server processes may start at once: an advisory lock held for the
 * migration transaction makes them apply the schema one at a time.
 */
export async function applySchema(pool: pg.Pool, schemaDirectory?: string): Promise<string[]> {
  const directory = schemaDirectory ?? (await findSchemaDirectory());
  const files = (await readdir(directory)).filter((name) => name.endsWith('.sql')).sort();
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('exchange-schema'))");
    await client.query('SET LOCAL client_min_messages = warning');
    for (const file of files) {
      await client.query(await readFile(path.join(directory, file), 'utf8'));
    }
    await client.query('COMMIT');
    return files;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
