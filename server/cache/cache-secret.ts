/** Reads the key that signs cache entries (schema/003_cache_secret.sql). */
import type pg from 'pg';

export async function loadCacheSecret(pool: Pick<pg.Pool, 'query'>): Promise<Buffer> {
  const result = await pool.query<{ secret: Buffer }>('SELECT secret FROM cache_secret');
  const secret = result.rows[0]?.secret;
  if (!secret || secret.length < 32) throw new Error('cache_secret row missing: schema not applied');
  return secret;
}
