/** pgbench -N: PostgreSQL's own commit ceiling on this machine, measured in a scratch database. */
import { existsSync } from 'node:fs';
import { ADMIN_URL, createDatabase, dropDatabase } from './databases.js';
import { runProcess } from './processes.js';
import { progress } from './progress.js';
import { mean } from './stats.js';

const pgbenchBinary = process.env.PGBENCH ?? (existsSync('/usr/bin/pgbench') ? '/usr/bin/pgbench' : 'pgbench');

export type PgbenchResult = { tps: number[]; mean: number };

/** Host, port and user for pgbench, taken from the admin URL so both hit the same server. */
function pgbenchConnection(): { args: string[]; env: NodeJS.ProcessEnv } {
  const url = new URL(ADMIN_URL);
  const args = ['-h', url.hostname || '127.0.0.1', '-p', url.port || '5432', '-U', decodeURIComponent(url.username) || 'postgres'];
  // Same durability as the server (its pool sets synchronous_commit=on): a commit waits for the WAL flush.
  const env: NodeJS.ProcessEnv = { ...process.env, PGOPTIONS: '-c synchronous_commit=on' };
  if (url.password) env.PGPASSWORD = decodeURIComponent(url.password);
  return { args, env };
}

function parseTps(output: string): number {
  const match = /tps = ([\d.]+) \(without initial connection time\)/.exec(output);
  if (!match?.[1]) throw new Error(`no "tps = ... (without initial connection time)" in pgbench output:\n${output}`);
  return Number(match[1]);
}

/** The pgbench command line of one measured run, for reports. */
export function pgbenchCommand(connections: number, seconds: number): string {
  return `pgbench -N -c ${connections} -j ${Math.min(2, connections)} -T ${seconds} -M prepared`;
}

/**
 * `pgbench -i -s 10` into a fresh database `name`, then `repeats` runs of pgbench -N with
 * `connections` clients for `seconds` each; the database is dropped afterwards.
 */
export async function measurePgbench(name: string, options: { repeats: number; seconds: number; connections: number }): Promise<PgbenchResult> {
  await createDatabase(name);
  try {
    const { args, env } = pgbenchConnection();
    progress(`pgbench -i -s 10 into scratch database ${name}`);
    const init = await runProcess(pgbenchBinary, [...args, '-i', '-s', '10', '-q', name], env);
    if (init.code !== 0) throw new Error(`pgbench -i failed (${init.code}):\n${init.stderr}`);
    const tps: number[] = [];
    // One pgbench run per repeat, so its spread can be compared with the server's.
    for (let repeat = 1; repeat <= options.repeats; repeat++) {
      const threads = Math.min(2, options.connections); // pgbench refuses more threads than clients
      const run = await runProcess(
        pgbenchBinary,
        [...args, '-N', '-c', String(options.connections), '-j', String(threads), '-T', String(options.seconds), '-M', 'prepared', name],
        env,
      );
      if (run.code !== 0) throw new Error(`pgbench failed (${run.code}):\n${run.stderr}`);
      tps.push(parseTps(run.stdout));
      progress(`pgbench -N -c ${options.connections} run ${repeat}/${options.repeats}: ${tps.at(-1)?.toFixed(0)} tps`);
    }
    return { tps, mean: mean(tps) };
  } finally {
    await dropDatabase(name);
  }
}
