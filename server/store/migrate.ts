/** Applies schema/*.sql in name order at start. Every file is idempotent. */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { withRetry } from './retry.js';
import { withPoolClient } from './pool.js';

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
 * migration transaction makes them apply the schema one at a time. The DDL
 * takes locks that conflict with live orders, so it runs only when the schema
 * files changed (their digest is stored), and a deadlock with orders is retried.
 * Returns the files applied (none when the schema was current).
 */
export async function applySchema(pool: pg.Pool, schemaDirectory?: string): Promise<string[]> {
  const directory = schemaDirectory ?? (await findSchemaDirectory());
  const files = (await readdir(directory)).filter((name) => name.endsWith('.sql')).sort();
  const scripts = await Promise.all(files.map((file) => readFile(path.join(directory, file), 'utf8')));
  const digest = createHash('sha256');
  files.forEach((file, index) => digest.update(`${file}\0${scripts[index]}\0`));
  const schemaDigest = digest.digest('hex');
  return withRetry(
    () =>
      withPoolClient(pool, async (client) => {
        try {
          await client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
          await client.query("SELECT pg_advisory_xact_lock(hashtext('exchange-schema'))");
          await client.query('SET LOCAL client_min_messages = warning');
          await client.query(`CREATE TABLE IF NOT EXISTS exchange_schema_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), digest text NOT NULL)`);
          const current = await client.query<{ digest: string }>('SELECT digest FROM exchange_schema_version');
          if (current.rows[0]?.digest === schemaDigest) {
            await client.query('COMMIT');
            return [];
          }
          for (const script of scripts) await client.query(script);
          await client.query(
            `INSERT INTO exchange_schema_version (digest) VALUES ($1)
         ON CONFLICT (singleton) DO UPDATE SET digest = EXCLUDED.digest`,
            [schemaDigest],
          );
          await client.query('COMMIT');
          return files;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }),
    { maxAttempts: 10, baseDelayMs: 10, maxDelayMs: 500 },
  );
}
