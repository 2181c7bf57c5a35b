/**
 * What PostgreSQL spent over a measured window: WAL bytes written, and, where the
 * pg_stat_statements extension is preloaded, execution and planning time per statement.
 * The postmaster's pid lets the CPU sampler count only this PostgreSQL server's processes,
 * not every `postgres` process on a shared machine.
 */
import { readFileSync } from 'node:fs';
import { withClient } from './databases.js';

export type StatementCost = { query: string; calls: number; execMs: number; planMs: number };
export type PgWindow = { walBytes: number; statements: StatementCost[] | null };
type WindowStart = { lsn: string; statements: boolean };

/** The pid of the postmaster serving url, when it runs on this machine (else null). */
export async function postmasterPid(url: string): Promise<number | null> {
  try {
    const backend = await withClient(
      url,
      async (client) => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid,
    );
    // A PostgreSQL in a container or on another host has pids of its own: check they are ours.
    const comm = (pid: number | undefined): string => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    const stat = readFileSync(`/proc/${backend}/stat`, 'utf8');
    const postmaster = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return comm(backend) === 'postgres' && comm(postmaster) === 'postgres' ? postmaster : null;
  } catch {
    return null;
  }
}

export async function beginPgWindow(url: string): Promise<WindowStart> {
  return withClient(url, async (client) => {
    let statements = false;
    try {
      // Works only where shared_preload_libraries has it; counts are then reset for the window
      // (for every database of that server: use a PostgreSQL of the benchmark's own).
      await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await client.query('SELECT pg_stat_statements_reset()');
      statements = true;
    } catch {
      statements = false;
    }
    const lsn =
      (await client.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0]?.lsn ?? '0/0';
    return { lsn, statements };
  });
}

export async function endPgWindow(url: string, start: WindowStart): Promise<PgWindow> {
  return withClient(url, async (client) => {
    const wal = await client.query<{ bytes: string }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::text AS bytes',
      [start.lsn],
    );
    let statements: StatementCost[] | null = null;
    if (start.statements) {
      const rows = await client.query<{ query: string; calls: string; exec_ms: number; plan_ms: number }>(
        `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::text, total_exec_time AS exec_ms, total_plan_time AS plan_ms
           FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY total_exec_time + total_plan_time DESC LIMIT 12`,
      );
      statements = rows.rows.map((row) => ({
        query: row.query,
        calls: Number(row.calls),
        execMs: row.exec_ms,
        planMs: row.plan_ms,
      }));
    }
    return { walBytes: Number(wal.rows[0]?.bytes ?? 0), statements };
  });
}
