/**
 * The exchange server under test, as a child process: pinned to CPUs with taskset, WORKERS
 * processes, the given WRITE_QUEUE, length framing, no Redis, JSON log on stderr. stop() reads the serialization retry
 * counters and write-lane totals every process logs in its "stopped" line.
 */
import { spawn } from 'node:child_process';
import type { WriteQueue } from '../../server/config.js';
import { isRecord } from './json.js';
import { SERVER_ENTRY } from './paths.js';
import { freePort, sleep, track } from './processes.js';

export type ServerShutdown = {
  exitCode: number | null;
  serializationRetries: number;
  retriesExhausted: number;
  /** Summed over the processes' write lanes, over the server's life (from the same lines). */
  writeLane: WriteLaneTotals;
  /** The server's warn and error log lines, which explain a failed run. */
  problems: string[];
  /** Set when the server was gone before we stopped it (crashed, or someone else signalled it). */
  exitedEarly: string | null;
};
export type WriteLaneTotals = { busySeconds: number; batches: number; writes: number };
export type RunningServer = { pid: number; port: number; stop: () => Promise<ServerShutdown> };

/** The server's JSON log lines; anything that is not one is ignored. */
function logRecords(text: string): Array<Record<string, unknown>> {
  const records: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const parsed: unknown = JSON.parse(line);
      if (isRecord(parsed)) records.push(parsed);
    } catch {
      // A partial line at the end of the buffer; the complete one is read later.
    }
  }
  return records;
}

/**
 * Starts `taskset -c <cpus> node dist/server/main.js` with WORKERS=workers and
 * WRITE_QUEUE=writeQueue, and waits until every worker listens.
 */
export async function startServer(
  cpus: number[],
  workers: number,
  writeQueue: WriteQueue,
  databaseUrl: string,
): Promise<RunningServer> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    REPLY_FRAMING: 'length',
    WORKERS: String(workers),
    WRITE_QUEUE: writeQueue,
    LOG_LEVEL: 'info',
  };
  delete env.REDIS_URL; // measure the server and PostgreSQL, not a cache
  // taskset execs node, so the pid is the server's, and cluster workers inherit the CPU mask.
  const child = track(
    spawn('taskset', ['-c', cpus.join(','), process.execPath, SERVER_ENTRY], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
    if (log.length > 1_000_000) log = log.slice(-500_000); // info level is quiet per request, but stay bounded
  });
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let exited = false;
  void closed.then(() => (exited = true));

  // With WORKERS > 1 the primary does not listen; each worker logs its own "listening" line.
  const listening = (): number => logRecords(log).filter((record) => record.msg === 'exchange server listening').length;
  const deadline = Date.now() + 30_000;
  while (listening() < workers) {
    if (exited) throw new Error(`server exited during start-up:\n${log.slice(-3000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not report ${workers} listening worker(s) within 30 s:\n${log.slice(-3000)}`);
    }
    await sleep(50);
  }

  const stop = async (): Promise<ServerShutdown> => {
    // Nobody but us should stop it; if it is gone already, its last lines say why (a signal, a crash).
    const exitedEarly = exited
      ? `server exited before the run ended; its last lines: ${log.trim().split('\n').slice(-3).join(' | ')}`
      : null;
    if (!exited) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    // 'close', not 'exit': the shutdown log lines may still be in the stderr pipe at exit.
    const exitCode = await closed;
    clearTimeout(killer);
    // Each process that served requests logs its retry counters in its "stopped" line.
    let serializationRetries = 0;
    let retriesExhausted = 0;
    const writeLane: WriteLaneTotals = { busySeconds: 0, batches: 0, writes: 0 };
    for (const record of logRecords(log)) {
      if (record.msg !== 'stopped') continue;
      if (typeof record.serializationRetries === 'number') serializationRetries += record.serializationRetries;
      if (typeof record.retriesExhausted === 'number') retriesExhausted += record.retriesExhausted;
      const lane = record.writeLane;
      if (isRecord(lane)) {
        for (const key of ['busySeconds', 'batches', 'writes'] as const) {
          const value = lane[key];
          if (typeof value === 'number') writeLane[key] += value;
        }
      }
    }
    const problems = logRecords(log)
      .filter((record) => record.level === 'warn' || record.level === 'error')
      .map((record) => JSON.stringify(record));
    return { exitCode, serializationRetries, retriesExhausted, writeLane, problems, exitedEarly };
  };
  if (child.pid === undefined) throw new Error('taskset did not start');
  return { pid: child.pid, port, stop };
}
