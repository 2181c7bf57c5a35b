/** pgbench -N: PostgreSQL's own commit ceiling on this machine, measured in a scratch database. */
import { existsSync } from 'node:fs';
import { ADMIN_URL, createDatabase } from './databases.js';
import { runProcess } from './processes.js';
import { progress } from './progress.js';
import type { PgTransport } from './transport.js';

const pgbenchBinary = process.env.PGBENCH ?? (existsSync('/usr/bin/pgbench') ? '/usr/bin/pgbench' : 'pgbench');

/** Host (or socket directory) and port as the server gets them; user and password from the admin URL. */
function pgbenchConnection(transport: PgTransport): { args: string[]; env: NodeJS.ProcessEnv } {
  const url = new URL(ADMIN_URL);
  const args = ['-h', transport.host, '-p', transport.port, '-U', decodeURIComponent(url.username) || 'postgres'];
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

/** Creates the scratch database `name` and fills it with `pgbench -i -s 10`. */
export async function preparePgbench(name: string, transport: PgTransport): Promise<void> {
  await createDatabase(name);
  const { args, env } = pgbenchConnection(transport);
  progress(`pgbench -i -s 10 into scratch database ${name}`);
  const init = await runProcess(pgbenchBinary, [...args, '-i', '-s', '10', '-q', name], env);
  if (init.code !== 0) throw new Error(`pgbench -i failed (${init.code}):\n${init.stderr}`);
}

/** One run of pgbench -N against the prepared database `name`: its transactions per second. */
export async function runPgbench(
  name: string,
  connections: number,
  seconds: number,
  transport: PgTransport,
): Promise<number> {
  const { args, env } = pgbenchConnection(transport);
  const threads = Math.min(2, connections); // pgbench refuses more threads than clients
  const run = await runProcess(
    pgbenchBinary,
    [...args, '-N', '-c', String(connections), '-j', String(threads), '-T', String(seconds), '-M', 'prepared', name],
    env,
  );
  if (run.code !== 0) throw new Error(`pgbench failed (${run.code}):\n${run.stderr}`);
  return parseTps(run.stdout);
}
