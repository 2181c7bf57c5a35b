/** The exchange's write lock (exchange_write_lock) as tests watch it: who waits for it. */
import type pg from 'pg';

/** Sessions waiting for the write lock now (a test holding it sees the writers queue behind it). */
export async function writeLockWaiters(db: pg.Pool | pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_locks
      WHERE locktype = 'relation' AND relation = 'exchange_write_lock'::regclass AND NOT granted`,
  );
  return Number(rows[0]?.n ?? 0);
}
