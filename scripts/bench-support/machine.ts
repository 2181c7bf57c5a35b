/** What the benchmark ran on: CPU, memory, PostgreSQL and its key settings, Node, kernel. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { withAdmin } from './databases.js';

export type Machine = {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  postgres: string;
  node: string;
  kernel: string;
  pgSettings: string;
};

export async function describeMachine(): Promise<Machine> {
  const cpuModel =
    /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ??
    os.cpus()[0]?.model ??
    'unknown';
  const { version, settings } = await withAdmin(async (client) => {
    const versionRow = await client.query<{ version: string }>('SELECT version()');
    const settingRows = await client.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings
        WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'wal_sync_method', 'commit_delay')
        ORDER BY name`,
    );
    return { version: versionRow.rows[0]?.version ?? 'unknown', settings: settingRows.rows };
  });
  return {
    cpuModel,
    cores: os.availableParallelism(),
    memoryGiB: os.totalmem() / 2 ** 30,
    postgres: version,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    pgSettings: settings.map((row) => `${row.name}=${row.setting}${row.unit ? ` (unit ${row.unit})` : ''}`).join(', '),
  };
}
