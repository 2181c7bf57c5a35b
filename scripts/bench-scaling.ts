/**
 * Scalability experiment (`npm run bench:scaling`): how orders/s grow with the
 * CPU cores given to the server, next to what PostgreSQL alone manages on the
 * same machine (pgbench), so the numbers say where the ceiling is.
 *
 * For k = 1..N cores and r = 1..R repeats it starts the server pinned to k
 * cores with WORKERS = k on a fresh database, drives it with the stress client
 * (dist/client/stress.js --json), stops it, and records the result. It writes
 * runs.csv, throughput.svg, latency.svg and report.md to docs/scaling/, prints a
 * summary on stdout (progress goes to stderr), and drops every database it
 * created, also on failure or Ctrl-C. Exits non-zero if any run failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

const HELP = `Usage: npm run bench:scaling -- [options]

Runs the server on 1..N cores (taskset, WORKERS = cores), R times each, drives it with the stress
client, measures PostgreSQL's own ceiling with pgbench, and writes docs/scaling/{runs.csv,
throughput.svg, latency.svg, report.md}. Progress on stderr, summary on stdout.

  --repeats N        runs per core count (default 3)
  --seconds S        measured seconds per stress run and per pgbench run (default 10)
  --warmup W         stress warm-up seconds before measuring (default 2)
  --connections C    stress connections, and pgbench clients (default 8)
  --max-cores N      highest core count to try (default: all available, here ${os.availableParallelism()})
  --accounts A       accounts the stress client trades with (default 100)
  --symbols S        symbols the stress client trades (default 10)
  --quick            CI smoke: 1 repeat, 3 s, 1 s warm-up (explicit flags still win)
  --out DIR          output directory (default docs/scaling)
  --stress-client F  stress client script (default dist/client/stress.js)
  --help             this text

Environment: ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres); databases
are created and dropped on that server. PGBENCH: pgbench binary (default /usr/bin/pgbench).
Exit status: 0 if every run succeeded, 1 if a stress run failed or reported invariant violations.`;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const adminUrl = process.env['ADMIN_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const pgbenchBinary = process.env['PGBENCH'] ?? (existsSync('/usr/bin/pgbench') ? '/usr/bin/pgbench' : 'pgbench');

// ---------------------------------------------------------------------------
// Options

type Options = {
  repeats: number;
  seconds: number;
  warmup: number;
  connections: number;
  maxCores: number;
  accounts: number;
  symbols: number;
  quick: boolean;
  outDir: string;
  stressClient: string;
};

class UsageError extends Error {}

function positiveInteger(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new UsageError(`--${name} must be a positive integer, got "${text}"`);
  return value;
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      repeats: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      'max-cores': { type: 'string' },
      accounts: { type: 'string' },
      symbols: { type: 'string' },
      quick: { type: 'boolean' },
      out: { type: 'string' },
      'stress-client': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return 'help';
  const quick = values.quick === true;
  const available = allowedCpus().length;
  const maxCores = positiveInteger('max-cores', values['max-cores'], available);
  if (maxCores > available) throw new UsageError(`--max-cores ${maxCores}: only ${available} cores are available to this process`);
  // The warm-up may be 0 (no warm-up); everything else must be at least 1.
  const warmup = values.warmup === undefined ? (quick ? 1 : 2) : Number(values.warmup);
  if (!Number.isInteger(warmup) || warmup < 0) throw new UsageError(`--warmup must be a whole number of seconds, got "${values.warmup}"`);
  return {
    repeats: positiveInteger('repeats', values.repeats, quick ? 1 : 3),
    seconds: positiveInteger('seconds', values.seconds, quick ? 3 : 10),
    warmup,
    connections: positiveInteger('connections', values.connections, 8),
    maxCores,
    accounts: positiveInteger('accounts', values.accounts, 100),
    symbols: positiveInteger('symbols', values.symbols, 10),
    quick,
    outDir: path.resolve(root, values.out ?? 'docs/scaling'),
    stressClient: path.resolve(root, values['stress-client'] ?? 'dist/client/stress.js'),
  };
}

/** CPU ids this process may run on; in a container they need not start at 0. */
function allowedCpus(): number[] {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('Cpus_allowed_list:'));
  if (!line) return Array.from({ length: os.availableParallelism() }, (_, index) => index);
  const cpus: number[] = [];
  for (const part of line.split(':')[1]?.trim().split(',') ?? []) {
    const [from, to] = part.split('-').map(Number);
    if (from === undefined || Number.isNaN(from)) continue;
    for (let cpu = from; cpu <= (to ?? from); cpu++) cpus.push(cpu);
  }
  return cpus;
}

function progress(message: string): void {
  process.stderr.write(`[bench:scaling ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------------------
// Databases and child processes, tracked so that failure or Ctrl-C undoes them

const createdDatabases = new Set<string>();
const liveChildren = new Set<ChildProcess>();

function databaseUrl(name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function createDatabase(name: string): Promise<string> {
  // The name is interpolated into SQL, so only ever our own safe identifiers.
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unsafe database name ${name}`);
  await withAdmin(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${name}`);
  });
  createdDatabases.add(name);
  return databaseUrl(name);
}

async function dropDatabase(name: string): Promise<void> {
  // FORCE: a server that failed to stop must not keep its database alive.
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  createdDatabases.delete(name);
}

async function dropAllDatabases(): Promise<void> {
  for (const name of [...createdDatabases]) {
    await dropDatabase(name).catch((error: unknown) => progress(`could not drop database ${name}: ${String(error)}`));
  }
}

function track(child: ChildProcess): ChildProcess {
  liveChildren.add(child);
  child.once('close', () => liveChildren.delete(child));
  return child;
}

type Finished = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };

/** Runs a command to completion, collecting its output. */
function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// pgbench: PostgreSQL's own ceiling on this machine

type PgbenchResult = { tps: number[]; mean: number };

/** Host, port and user for pgbench, taken from the admin URL so both hit the same server. */
function pgbenchConnection(): { args: string[]; env: NodeJS.ProcessEnv } {
  const url = new URL(adminUrl);
  const args = ['-h', url.hostname || '127.0.0.1', '-p', url.port || '5432', '-U', decodeURIComponent(url.username) || 'postgres'];
  // Same durability as the server (its pool sets synchronous_commit=on): a commit waits for the WAL flush.
  const env: NodeJS.ProcessEnv = { ...process.env, PGOPTIONS: '-c synchronous_commit=on' };
  if (url.password) env['PGPASSWORD'] = decodeURIComponent(url.password);
  return { args, env };
}

function parseTps(output: string): number {
  const match = /tps = ([\d.]+) \(without initial connection time\)/.exec(output);
  if (!match?.[1]) throw new Error(`no "tps = ... (without initial connection time)" in pgbench output:\n${output}`);
  return Number(match[1]);
}

async function measurePgbench(options: Options): Promise<PgbenchResult> {
  const name = `scaling_pgbench_${process.pid}`;
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

// ---------------------------------------------------------------------------
// The server under test

type ServerShutdown = {
  exitCode: number | null;
  serializationRetries: number;
  retriesExhausted: number;
  /** The server's warn and error log lines, which explain a failed run. */
  problems: string[];
  /** Set when the server was gone before we stopped it (crashed, or someone else signalled it). */
  exitedEarly: string | null;
};
type RunningServer = { pid: number; port: number; stop: () => Promise<ServerShutdown> };

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

async function startServer(cores: number[], databaseUrlForRun: string): Promise<RunningServer> {
  const port = await freePort();
  const workers = cores.length;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrlForRun,
    PORT: String(port),
    HOST: '127.0.0.1',
    REPLY_FRAMING: 'length',
    WORKERS: String(workers),
    LOG_LEVEL: 'info',
  };
  delete env['REDIS_URL']; // measure the server and PostgreSQL, not a cache
  // taskset execs node, so the pid is the server's, and cluster workers inherit the CPU mask.
  const child = track(spawn('taskset', ['-c', cores.join(','), process.execPath, path.join(root, 'dist/server/main.js')], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  }));
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log += chunk.toString();
    if (log.length > 1_000_000) log = log.slice(-500_000); // info level is quiet per request, but stay bounded
  });
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let exited = false;
  void closed.then(() => (exited = true));

  // With WORKERS > 1 the primary does not listen; each worker logs its own "listening" line.
  const listening = (): number => logRecords(log).filter((record) => record['msg'] === 'exchange server listening').length;
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
    const exitedEarly = exited ? `server exited before the run ended; its last lines: ${log.trim().split('\n').slice(-3).join(' | ')}` : null;
    if (!exited) child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    // 'close', not 'exit': the shutdown log lines may still be in the stderr pipe at exit.
    const exitCode = await closed;
    clearTimeout(killer);
    // Each process that served requests logs its retry counters in its "stopped" line.
    let serializationRetries = 0;
    let retriesExhausted = 0;
    for (const record of logRecords(log)) {
      if (record['msg'] !== 'stopped') continue;
      if (typeof record['serializationRetries'] === 'number') serializationRetries += record['serializationRetries'];
      if (typeof record['retriesExhausted'] === 'number') retriesExhausted += record['retriesExhausted'];
    }
    const problems = logRecords(log)
      .filter((record) => record['level'] === 'warn' || record['level'] === 'error')
      .map((record) => JSON.stringify(record));
    return { exitCode, serializationRetries, retriesExhausted, problems, exitedEarly };
  };
  if (child.pid === undefined) throw new Error('taskset did not start');
  return { pid: child.pid, port, stop };
}

// ---------------------------------------------------------------------------
// Who used the CPU during the measured window (from /proc)

type ProcessTicks = { comm: string; ppid: number; ticks: number };
type CpuSnapshot = { atMs: number; busyTicks: number; totalTicks: number; processes: Map<number, ProcessTicks> };
/** CPU use in cores (1.0 = one core busy for the whole window) and the machine's busy share. */
type CpuUse = { server: number; postgres: number; client: number; other: number; machineBusyPercent: number };

const ticksPerSecond = 100; // USER_HZ; 100 on every Linux this runs on (getconf CLK_TCK)

function readProcessTicks(pid: number): ProcessTicks | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses; the fields after the last ')' are fixed.
    const comm = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const [utime = 0, stime = 0, cutime = 0, cstime = 0] = fields.slice(11, 15).map(Number);
    // For PostgreSQL also cutime + cstime, the CPU of the children it has reaped: backends that end
    // inside the window (a replaced pool connection) would be lost otherwise. Not for other
    // processes: a shell reaping a long job would book that job's whole life into the window.
    const reaped = comm === 'postgres' ? cutime + cstime : 0;
    return { comm, ppid: Number(fields[1]), ticks: utime + stime + reaped };
  } catch {
    return null; // the process ended between listing and reading
  }
}

function cpuSnapshot(): CpuSnapshot {
  const cpuLine = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = cpuLine.trim().split(/\s+/).slice(1).map(Number);
  const busyTicks = user + nice + system + irq + softirq + steal;
  const processes = new Map<number, ProcessTicks>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ticks = readProcessTicks(Number(entry));
    if (ticks) processes.set(Number(entry), ticks);
  }
  return { atMs: Date.now(), busyTicks, totalTicks: busyTicks + idle + iowait, processes };
}

function descendsFrom(pid: number, ancestor: number, processes: Map<number, ProcessTicks>): boolean {
  for (let current: number | undefined = pid, hops = 0; current !== undefined && current > 1 && hops < 64; hops++) {
    if (current === ancestor) return true;
    current = processes.get(current)?.ppid;
  }
  return false;
}

function cpuUse(before: CpuSnapshot, after: CpuSnapshot, serverPid: number, clientPid: number): CpuUse {
  const seconds = (after.atMs - before.atMs) / 1000;
  const use = { server: 0, postgres: 0, client: 0 };
  for (const [pid, now] of after.processes) {
    // A process born inside the window counts from zero.
    const delta = (now.ticks - (before.processes.get(pid)?.ticks ?? 0)) / ticksPerSecond / seconds;
    if (descendsFrom(pid, serverPid, after.processes)) use.server += delta;
    else if (now.comm === 'postgres') use.postgres += delta; // all of PostgreSQL: it serves every database
    else if (descendsFrom(pid, clientPid, after.processes)) use.client += delta;
  }
  const busyShare = (after.busyTicks - before.busyTicks) / Math.max(1, after.totalTicks - before.totalTicks);
  // Everything else is what the machine did beyond the three of them (kernel, unrelated jobs),
  // taken as the remainder so short-lived processes elsewhere are not lost.
  const other = Math.max(0, busyShare * os.cpus().length - use.server - use.postgres - use.client);
  return { ...use, other, machineBusyPercent: 100 * busyShare };
}

// ---------------------------------------------------------------------------
// The stress client and its JSON

type Latency = { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
type StressResult = {
  requests: number;
  requestsPerSecond: number;
  orders: number;
  ordersPerSecond: number;
  latencyMs: Latency;
  errors: Record<string, number>;
  failedRequests: number;
  invariants: { checked: 'sql' | 'protocol' | 'none'; violations: string[] };
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function numberField(record: Record<string, unknown>, key: string): number {
  const value = record[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`stress JSON: "${key}" is not a number`);
  return value;
}

/** Checks the stress client's JSON against the shape this script relies on. */
function parseStressJson(stdout: string): StressResult {
  // One JSON object is promised; take the outermost braces in case anything else slipped onto stdout.
  const text = stdout.slice(stdout.indexOf('{'), stdout.lastIndexOf('}') + 1);
  const parsed: unknown = JSON.parse(text);
  if (!isRecord(parsed)) throw new Error('stress JSON is not an object');
  const latency = parsed['latencyMs'];
  const invariants = parsed['invariants'];
  const errors = parsed['errors'];
  if (!isRecord(latency) || !isRecord(invariants)) throw new Error('stress JSON lacks latencyMs or invariants');
  const checked = invariants['checked'];
  const violations = invariants['violations'];
  if (checked !== 'sql' && checked !== 'protocol' && checked !== 'none') throw new Error(`stress JSON: invariants.checked is ${String(checked)}`);
  if (!Array.isArray(violations)) throw new Error('stress JSON: invariants.violations is not an array');
  return {
    requests: numberField(parsed, 'requests'),
    requestsPerSecond: numberField(parsed, 'requestsPerSecond'),
    orders: numberField(parsed, 'orders'),
    ordersPerSecond: numberField(parsed, 'ordersPerSecond'),
    latencyMs: {
      p50: numberField(latency, 'p50'),
      p90: numberField(latency, 'p90'),
      p99: numberField(latency, 'p99'),
      p999: numberField(latency, 'p999'),
      max: numberField(latency, 'max'),
      mean: numberField(latency, 'mean'),
    },
    errors: isRecord(errors) ? Object.fromEntries(Object.entries(errors).filter((entry): entry is [string, number] => typeof entry[1] === 'number')) : {},
    failedRequests: numberField(parsed, 'failedRequests'),
    invariants: { checked, violations: violations.map(String) },
  };
}

/** Weights of orders : queries : cancels, and the share of orders priced to cross the book. */
const WORKLOAD_MIX = '70:20:10';
const WORKLOAD_CROSS = 0.5;

type StressOutcome = { result: StressResult | null; exitCode: number | null; stderrTail: string; cpu: CpuUse | null };

async function runStress(server: RunningServer, databaseUrlForRun: string, seed: number, options: Options): Promise<StressOutcome> {
  const args = [
    options.stressClient,
    '--port', String(server.port),
    '--framing', 'length',
    '--connections', String(options.connections),
    '--seconds', String(options.seconds),
    '--warmup', String(options.warmup),
    '--accounts', String(options.accounts),
    '--symbols', String(options.symbols),
    '--seed', String(seed),
    // Passed explicitly (they are the client's defaults) so the report can state them.
    '--mix', WORKLOAD_MIX,
    '--cross', String(WORKLOAD_CROSS),
    '--json',
    // With the database URL the client checks the SPEC invariants in SQL after the run.
    '--database-url', databaseUrlForRun,
  ];
  const child = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const finished = new Promise<number | null>((resolve) => {
    child.once('error', (error) => {
      stderr += String(error);
      resolve(null);
    });
    child.once('close', (code) => resolve(code));
  });
  let done = false;
  void finished.then(() => (done = true));

  // Sample CPU over (about) the measured window: it starts after the warm-up. The client's own
  // set-up (accounts, shares) shifts it slightly; good enough to see who uses the cores.
  const cpu = (async (): Promise<CpuUse | null> => {
    await sleep(options.warmup * 1000 + 300);
    if (done || child.pid === undefined) return null;
    const before = cpuSnapshot();
    await sleep(Math.max(500, options.seconds * 1000 - 600));
    if (done) return null;
    return cpuUse(before, cpuSnapshot(), server.pid, child.pid);
  })();

  const exitCode = await finished;
  const stderrTail = stderr.slice(-3000);
  let result: StressResult | null = null;
  try {
    result = parseStressJson(stdout);
  } catch (error) {
    progress(`could not read the stress client's JSON (${error instanceof Error ? error.message : String(error)}); stdout was: ${stdout.slice(0, 500)}`);
  }
  return { result, exitCode, stderrTail, cpu: await cpu };
}

// ---------------------------------------------------------------------------
// One run: fresh database, pinned server, stress, stop

type RunRecord = {
  timestamp: string;
  cores: number;
  workers: number;
  repeat: number;
  connections: number;
  seconds: number;
  warmup: number;
  stress: StressResult | null;
  cpu: CpuUse | null;
  serializationRetries: number;
  retriesExhausted: number;
  /** PostgreSQL's counters for the run's database over the whole run, or null if unavailable. */
  database: DatabaseCounters | null;
  /** Why the run counts as failed, or null. */
  failure: string | null;
};

async function runOnce(coreCount: number, repeat: number, options: Options): Promise<RunRecord> {
  const cores = allowedCpus().slice(0, coreCount);
  // A fresh database per run: every run starts from an empty book, so repeats are independent
  // and a later run does not inherit the orders (and index growth) of the earlier ones.
  const name = `scaling_${process.pid}_c${coreCount}_r${repeat}`;
  const url = await createDatabase(name);
  const timestamp = new Date().toISOString();
  try {
    const server = await startServer(cores, url);
    progress(`cores ${coreCount} (cpu ${cores.join(',')}), repeat ${repeat}: server up on port ${server.port}; stressing ${options.warmup} + ${options.seconds} s`);
    let outcome: StressOutcome;
    try {
      // The seed depends on the repeat only, so every core count sees the same workloads.
      outcome = await runStress(server, url, repeat, options);
    } catch (error) {
      await server.stop();
      throw error;
    }
    const shutdown = await server.stop();
    const database = await databaseCounters(name);
    const failure = describeFailure(outcome, shutdown);
    if (failure) {
      progress(`cores ${coreCount}, repeat ${repeat}: FAILED: ${failure}`);
      process.stderr.write(`stress client stderr:\n${outcome.stderrTail}\nserver warnings/errors:\n${shutdown.problems.slice(0, 20).join('\n')}\n`);
    }
    else progress(`cores ${coreCount}, repeat ${repeat}: ${outcome.result?.ordersPerSecond.toFixed(0)} orders/s, p99 ${outcome.result?.latencyMs.p99.toFixed(1)} ms`);
    return {
      timestamp,
      cores: coreCount,
      workers: coreCount,
      repeat,
      connections: options.connections,
      seconds: options.seconds,
      warmup: options.warmup,
      stress: outcome.result,
      cpu: outcome.cpu,
      serializationRetries: shutdown.serializationRetries,
      retriesExhausted: shutdown.retriesExhausted,
      database,
      failure,
    };
  } finally {
    await dropDatabase(name);
  }
}

type DatabaseCounters = { sessions: number; rollbacks: number; commits: number };

/**
 * Sessions opened to the run's database, and its commits and rollbacks. Many sessions mean the
 * server replaced pooled connections during the run, each a backend fork on the same cores.
 * Read after the server stopped: a backend reports its counters when it ends.
 */
async function databaseCounters(name: string): Promise<DatabaseCounters | null> {
  try {
    return await withAdmin(async (client) => {
      const result = await client.query<{ sessions: string; rollbacks: string; commits: string }>(
        'SELECT sessions::text, xact_rollback::text AS rollbacks, xact_commit::text AS commits FROM pg_stat_database WHERE datname = $1',
        [name],
      );
      const row = result.rows[0];
      return row ? { sessions: Number(row.sessions), rollbacks: Number(row.rollbacks), commits: Number(row.commits) } : null;
    });
  } catch {
    return null; // pg_stat_database.sessions is PostgreSQL 14+
  }
}

function describeFailure(outcome: StressOutcome, shutdown: ServerShutdown): string | null {
  const problems: string[] = [];
  if (outcome.exitCode !== 0) problems.push(`stress client exited with ${outcome.exitCode}`);
  // The error kinds say why (connection refused, timeouts, server errors), so put the commonest in the reason.
  const errorKinds = Object.entries(outcome.result?.errors ?? {}).sort((a, b) => b[1] - a[1]).slice(0, 3);
  if ((outcome.result?.failedRequests ?? 0) > 0) problems.push(`${outcome.result?.failedRequests} failed requests (${errorKinds.map(([kind, count]) => `${kind}: ${count}`).join('; ')})`);
  if (!outcome.result) problems.push('no stress JSON');
  const violations = outcome.result?.invariants.violations ?? [];
  if (violations.length > 0) problems.push(`invariant violations: ${violations.slice(0, 5).join('; ')}`);
  if (shutdown.exitedEarly) problems.push(shutdown.exitedEarly);
  else if (shutdown.exitCode !== 0) problems.push(`server exited with ${shutdown.exitCode}`);
  // An error line (a worker that died and was replaced, say) fails the run even if the client coped.
  const errorLines = shutdown.problems.filter((line) => line.includes('"level":"error"'));
  if (errorLines.length > 0) problems.push(`server logged ${errorLines.length} error(s), first: ${errorLines[0]}`);
  else if (problems.length > 0 && shutdown.problems.length > 0) {
    problems.push(`server logged ${shutdown.problems.length} warning(s)/error(s), first: ${shutdown.problems[0]}`);
  }
  return problems.length > 0 ? problems.join('; ') : null;
}

// ---------------------------------------------------------------------------
// Statistics

function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** Sample standard deviation; 0 for a single run (no spread measured). */
function stddev(values: number[]): number {
  if (values.length < 2) return 0;
  const average = mean(values);
  return Math.sqrt(values.reduce((sum, value) => sum + (value - average) ** 2, 0) / (values.length - 1));
}

type Spread = { mean: number; sd: number; min: number; max: number };

function spread(values: number[]): Spread {
  if (values.length === 0) return { mean: Number.NaN, sd: Number.NaN, min: Number.NaN, max: Number.NaN };
  return { mean: mean(values), sd: stddev(values), min: Math.min(...values), max: Math.max(...values) };
}

type CoreSummary = {
  cores: number;
  runs: number;
  failedRuns: number;
  /** Over the runs that passed; NaN when none did. */
  orders: Spread;
  requests: Spread;
  p50: Spread;
  p99: Spread;
  ratio: number;
  retriesPer100Orders: number;
  sessionsPer100Orders: number;
  /** PostgreSQL commits per 100 requests: below 100 means the server groups requests into shared transactions. */
  commitsPer100Requests: number;
  /** CPU milliseconds per request answered, in the server and in PostgreSQL. */
  serverCpuMsPerRequest: number;
  postgresCpuMsPerRequest: number;
  cpu: CpuUse | null;
};

type PassedRun = RunRecord & { stress: StressResult };

/**
 * A count taken over the whole run (set-up, warm-up, measured window, verification) per 100
 * orders, with the orders of warm-up plus window estimated from the measured rate.
 */
function per100Orders(runs: PassedRun[], count: (run: PassedRun) => number | null, unit: 'orders' | 'requests' = 'orders'): number {
  const counted = runs.filter((run) => count(run) !== null);
  const rate = (run: PassedRun): number => (unit === 'orders' ? run.stress.ordersPerSecond : run.stress.requestsPerSecond);
  const denominator = counted.reduce((sum, run) => sum + rate(run) * (run.warmup + run.seconds), 0);
  return denominator > 0 ? (100 * counted.reduce((sum, run) => sum + (count(run) ?? 0), 0)) / denominator : Number.NaN;
}

/** Mean CPU milliseconds per request over the runs with a CPU sample. */
function cpuMsPerRequest(runs: PassedRun[], cores: (cpu: CpuUse) => number): number {
  return mean(runs.flatMap((run) => (run.cpu && run.stress.requestsPerSecond > 0 ? [(1000 * cores(run.cpu)) / run.stress.requestsPerSecond] : [])));
}

function summarize(records: RunRecord[], pgbench: PgbenchResult): CoreSummary[] {
  const coreCounts = [...new Set(records.map((record) => record.cores))].sort((a, b) => a - b);
  return coreCounts.map((cores) => {
    const all = records.filter((record) => record.cores === cores);
    // A failed run's numbers (a crashed server, refused connections) would only distort the means.
    const passed = all.filter((record): record is PassedRun => record.stress !== null && record.failure === null);
    const pick = (get: (stress: StressResult) => number): Spread => spread(passed.map((record) => get(record.stress)));
    const orders = pick((stress) => stress.ordersPerSecond);
    const sampled = passed.map((record) => record.cpu).filter((cpu): cpu is CpuUse => cpu !== null);
    const cpu: CpuUse | null = sampled.length === 0 ? null : {
      server: mean(sampled.map((use) => use.server)),
      postgres: mean(sampled.map((use) => use.postgres)),
      client: mean(sampled.map((use) => use.client)),
      other: mean(sampled.map((use) => use.other)),
      machineBusyPercent: mean(sampled.map((use) => use.machineBusyPercent)),
    };
    return {
      cores,
      runs: all.length,
      failedRuns: all.length - passed.length,
      orders,
      requests: pick((stress) => stress.requestsPerSecond),
      p50: pick((stress) => stress.latencyMs.p50),
      p99: pick((stress) => stress.latencyMs.p99),
      ratio: orders.mean / pgbench.mean,
      retriesPer100Orders: per100Orders(passed, (run) => run.serializationRetries),
      sessionsPer100Orders: per100Orders(passed, (run) => run.database?.sessions ?? null),
      commitsPer100Requests: per100Orders(passed, (run) => run.database?.commits ?? null, 'requests'),
      serverCpuMsPerRequest: cpuMsPerRequest(passed, (cpu) => cpu.server),
      postgresCpuMsPerRequest: cpuMsPerRequest(passed, (cpu) => cpu.postgres),
      cpu,
    };
  });
}

// ---------------------------------------------------------------------------
// Outputs: CSV, charts, report, summary

const fixed = (value: number | undefined, digits: number): string => (value === undefined || Number.isNaN(value) ? '' : value.toFixed(digits));

function csvField(value: string | number): string {
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function writeCsv(file: string, records: RunRecord[], pgbench: PgbenchResult): void {
  const header = [
    'timestamp', 'cores', 'workers', 'repeat', 'connections', 'seconds', 'requests_per_s', 'orders_per_s',
    'p50_ms', 'p90_ms', 'p99_ms', 'p999_ms', 'max_ms', 'failed', 'pgbench_tps', 'ratio_to_pgbench',
    // Beyond the core columns: what explains the numbers, and whether the run passed.
    'serialization_retries', 'pg_sessions', 'pg_commits', 'pg_rollbacks', 'cpu_server_cores', 'cpu_postgres_cores', 'cpu_client_cores', 'cpu_other_cores', 'machine_busy_pct',
    'invariants_checked', 'run_failure',
  ];
  const rows = records.map((record) => {
    const stress = record.stress;
    return [
      record.timestamp, record.cores, record.workers, record.repeat, record.connections, record.seconds,
      fixed(stress?.requestsPerSecond, 1), fixed(stress?.ordersPerSecond, 1),
      fixed(stress?.latencyMs.p50, 3), fixed(stress?.latencyMs.p90, 3), fixed(stress?.latencyMs.p99, 3),
      fixed(stress?.latencyMs.p999, 3), fixed(stress?.latencyMs.max, 3), stress?.failedRequests ?? '',
      fixed(pgbench.mean, 1), stress ? fixed(stress.ordersPerSecond / pgbench.mean, 4) : '',
      record.serializationRetries, record.database?.sessions ?? '', record.database?.commits ?? '', record.database?.rollbacks ?? '', fixed(record.cpu?.server, 2), fixed(record.cpu?.postgres, 2), fixed(record.cpu?.client, 2),
      fixed(record.cpu?.other, 2), fixed(record.cpu?.machineBusyPercent, 1), stress?.invariants.checked ?? '', record.failure ?? '',
    ].map(csvField).join(',');
  });
  writeFileSync(file, `${[header.join(','), ...rows].join('\n')}\n`);
}

async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // renderer 'none': no canvas or DOM needed; text widths are estimated, which is fine for SVG.
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const coresAxis = {
  field: 'cores',
  type: 'ordinal' as const,
  title: 'cores for the server (taskset, WORKERS = cores)',
  axis: { labelAngle: 0 },
};

/** One layer of a layered chart, taken from vega-lite's own spec type. */
type LayerSpec = Extract<TopLevelSpec, { layer: unknown }>['layer'][number];
type Labelled = { cores: number; mean: number; label: string };
type ColorEncoding = { field: string; type: 'nominal'; title: string | null; scale: { domain: string[]; range: string[] } };

/**
 * Text layers printing each mean beside its point: left of the first core count and right of
 * the others, where the line between the points does not run through the text.
 */
function valueLabels<T extends Labelled>(labelled: T[], color: ColorEncoding): LayerSpec[] {
  const firstCores = Math.min(...labelled.map((item) => item.cores));
  const layer = (values: T[], align: 'left' | 'right'): LayerSpec => ({
    data: { values },
    mark: { type: 'text', align, dx: align === 'left' ? 13 : -13, dy: -9 },
    encoding: { x: coresAxis, y: { field: 'mean', type: 'quantitative' }, text: { field: 'label' }, color },
  });
  return [layer(labelled.filter((item) => item.cores === firstCores), 'right'), layer(labelled.filter((item) => item.cores !== firstCores), 'left')];
}

/** The mean of each series as a line with points, and its min–max range as error bars. */
function meanWithRange(bars: Array<{ cores: number; min: number; max: number; mean: number }>, yTitle: string, color: ColorEncoding): LayerSpec[] {
  return [
    {
      data: { values: bars },
      mark: { type: 'errorbar', ticks: { size: 14 }, thickness: 1.5 },
      encoding: { x: coresAxis, y: { field: 'min', type: 'quantitative', title: yTitle, scale: { zero: true } }, y2: { field: 'max' }, color },
    },
    {
      data: { values: bars },
      mark: { type: 'line', point: { size: 70, filled: true } },
      encoding: { x: coresAxis, y: { field: 'mean', type: 'quantitative', title: yTitle }, color },
    },
  ];
}

function throughputSpec(records: RunRecord[], summary: CoreSummary[], pgbench: PgbenchResult, options: Options, machine: Machine): TopLevelSpec {
  const ordersSeries = 'exchange server: orders/s';
  const requestsSeries = 'exchange server: requests/s (all kinds)';
  const pgbenchSeries = 'PostgreSQL alone: pgbench -N tps (band = min–max)';
  // requests/s is only worth a line when the workload sends more than orders.
  const showRequests = summary.some((row) => Math.abs(row.requests.mean - row.orders.mean) > 0.01 * row.orders.mean);
  const series = showRequests ? [ordersSeries, requestsSeries, pgbenchSeries] : [ordersSeries, pgbenchSeries];
  const bars = summary.filter((row) => !Number.isNaN(row.orders.mean)).flatMap((row) => [
    { cores: row.cores, series: ordersSeries, ...row.orders },
    ...(showRequests ? [{ cores: row.cores, series: requestsSeries, ...row.requests }] : []),
  ]);
  const runs = records.flatMap((record) => record.stress && record.failure === null ? [
    { cores: record.cores, series: ordersSeries, value: record.stress.ordersPerSecond },
    ...(showRequests ? [{ cores: record.cores, series: requestsSeries, value: record.stress.requestsPerSecond }] : []),
  ] : []);
  const color = {
    field: 'series',
    type: 'nominal' as const,
    title: null,
    scale: { domain: series, range: showRequests ? ['#1f77b4', '#2ca02c', '#d62728'] : ['#1f77b4', '#d62728'] },
    // symbolOpacity: the faint pgbench band would otherwise make every legend symbol faint.
    legend: { orient: 'bottom' as const, direction: 'vertical' as const, labelLimit: 600, symbolOpacity: 1 },
  };
  // Axis titles stay short: with no canvas vega over-estimates text length and would pad the chart.
  const yTitle = 'per second (orders, requests, tps)';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Throughput versus CPU cores given to the server',
      anchor: 'start',
      offset: 14,
      subtitle: [
        `mean of ${options.repeats} run(s), bars = min–max, dots = single runs`,
        `${options.connections} connections (pgbench: ${options.connections} clients), ${options.seconds} s measured per run`,
        `${machine.cores} cores shared with PostgreSQL and the load generator`,
      ],
    },
    width: 460,
    height: 300,
    layer: [
      {
        // The spread of the pgbench runs, as a band behind its mean.
        data: { values: [{ series: pgbenchSeries, low: Math.min(...pgbench.tps), high: Math.max(...pgbench.tps) }] },
        mark: { type: 'rect', opacity: 0.12 },
        encoding: { y: { field: 'low', type: 'quantitative', title: yTitle }, y2: { field: 'high' }, color },
      },
      {
        data: { values: [{ series: pgbenchSeries, tps: pgbench.mean }] },
        mark: { type: 'rule', strokeDash: [6, 4], strokeWidth: 2 },
        encoding: { y: { field: 'tps', type: 'quantitative', title: yTitle }, color },
      },
      {
        data: { values: [{ series: pgbenchSeries, tps: pgbench.mean, label: `pgbench ${pgbench.mean.toFixed(0)} tps` }] },
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 4, dy: 6, x: 0 },
        encoding: { y: { field: 'tps', type: 'quantitative' }, text: { field: 'label' }, color },
      },
      ...meanWithRange(bars, yTitle, color),
      ...valueLabels(bars.map((bar) => ({ ...bar, label: bar.mean.toFixed(0) })), color),
      {
        data: { values: runs },
        mark: { type: 'point', size: 25, opacity: 0.6 },
        encoding: { x: coresAxis, y: { field: 'value', type: 'quantitative', title: yTitle }, color },
      },
    ],
  };
}

function latencySpec(records: RunRecord[], summary: CoreSummary[], options: Options): TopLevelSpec {
  const bars = summary.filter((row) => !Number.isNaN(row.p50.mean)).flatMap((row) => [
    { cores: row.cores, percentile: 'p50 (median)', ...row.p50 },
    { cores: row.cores, percentile: 'p99', ...row.p99 },
  ]);
  const runs = records.flatMap((record) => record.stress && record.failure === null ? [
    { cores: record.cores, percentile: 'p50 (median)', value: record.stress.latencyMs.p50 },
    { cores: record.cores, percentile: 'p99', value: record.stress.latencyMs.p99 },
  ] : []);
  const color = {
    field: 'percentile',
    type: 'nominal' as const,
    title: 'request latency',
    scale: { domain: ['p50 (median)', 'p99'], range: ['#1f77b4', '#ff7f0e'] },
    legend: { orient: 'bottom' as const },
  };
  const yTitle = 'latency per request (ms)';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Request latency versus CPU cores given to the server',
      anchor: 'start',
      offset: 14,
      subtitle: [
        `mean of ${options.repeats} run(s), bars = min–max, dots = single runs`,
        `closed loop, ${options.connections} connections, as seen by the client`,
      ],
    },
    width: 460,
    height: 300,
    layer: [
      ...meanWithRange(bars, yTitle, color),
      ...valueLabels(bars.map((bar) => ({ ...bar, label: `${bar.mean.toFixed(1)} ms` })), color),
      {
        data: { values: runs },
        mark: { type: 'point', size: 25, opacity: 0.6 },
        encoding: { x: coresAxis, y: { field: 'value', type: 'quantitative', title: yTitle }, color },
      },
    ],
  };
}

type Machine = { cpuModel: string; cores: number; memoryGiB: number; postgres: string; node: string; kernel: string; pgSettings: string };

async function describeMachine(): Promise<Machine> {
  const cpuModel = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
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

const plusMinus = (value: Spread, digits: number): string =>
  Number.isNaN(value.mean) ? 'n/a' : `${value.mean.toFixed(digits)} ± ${value.sd.toFixed(digits)}`;

/** The "what limits it" findings, worded from the measured numbers rather than written in advance. */
function limitsText(summary: CoreSummary[], pgbench: PgbenchResult, options: Options, machine: Machine): string {
  const rows = summary.filter((row) => !Number.isNaN(row.orders.mean));
  const first = rows[0];
  const last = rows.at(-1);
  if (!first || !last) return 'No run passed, so there is nothing to explain.';
  const findings: string[] = [];

  // First the caveat that colours everything else: how much of the machine other work took.
  const others = rows.flatMap((row) => (row.cpu ? [row.cpu.other] : []));
  if (others.length > 0 && Math.max(...others) >= 0.3) {
    findings.push(
      `**The machine was not quiet.** Processes outside the experiment took ${Math.min(...others).toFixed(2)}–${Math.max(...others).toFixed(2)} of the ${machine.cores} cores ` +
        'during the measured windows (the "other" column), so every figure here is lower and noisier than on an idle machine, pgbench included; ' +
        'the runs were interleaved so that this falls on all core counts alike. Rerun on a quiet machine for numbers to quote.',
    );
  }

  if (last.cores > first.cores) {
    const gain = last.orders.mean / first.orders.mean;
    const verdict = gain < 0.9
      ? 'so throughput fell when the server got more cores: each extra worker process (its event loop, its own pool of database connections) ' +
        'adds work on the cores PostgreSQL also needs, and whatever one process coordinates in memory is split across processes that can only coordinate through PostgreSQL'
      : gain < 1.1
      ? 'so more cores for the server buy almost nothing: the server process is not where the time goes'
      : gain > 0.85 * (last.cores / first.cores)
        ? 'close to linear, so at one core the server process itself was the limit'
        : 'less than linear: part of the limit is the server process, part is elsewhere';
    findings.push(`**Scaling.** Going from ${first.cores} to ${last.cores} core(s) took orders/s from ${first.orders.mean.toFixed(0)} to ${last.orders.mean.toFixed(0)} (×${gain.toFixed(2)}), ${verdict}.`);
  }

  for (const row of [first, last].filter((row, index, both) => row.cpu && both.indexOf(row) === index)) {
    if (!row.cpu) continue;
    const { server, postgres, client, other, machineBusyPercent } = row.cpu;
    let text = `**CPU at ${row.cores} core(s).** The machine was ${machineBusyPercent.toFixed(0)}% busy during the measured window: PostgreSQL used ${postgres.toFixed(2)} cores, ` +
      `the server ${server.toFixed(2)} (of ${row.cores} allowed), the stress client ${client.toFixed(2)}, everything else ${other.toFixed(2)}.`;
    if (server >= 0.85 * row.cores) text += ' The server uses all the CPU it is allowed, so at this setting it is CPU-bound on its own side (XML, matching calls, pg protocol).';
    if (machineBusyPercent >= 85) {
      text += ` All ${machine.cores} cores are busy and PostgreSQL is not restricted, so the server, PostgreSQL and the load generator compete for the same cores: ` +
        'a core given to the server is taken from PostgreSQL, and the numbers measure the machine as much as the server.';
    } else if (server < 0.85 * row.cores) {
      text += ' Neither the server\'s allowance nor the machine is saturated, so the time goes to waiting: on commits (the WAL flush), on round trips, ' +
        'and on whatever the server or PostgreSQL makes requests do one at a time.';
    }
    findings.push(text);
  }

  if (last.cores > first.cores && !Number.isNaN(first.serverCpuMsPerRequest) && !Number.isNaN(last.serverCpuMsPerRequest)) {
    const growth = (last.serverCpuMsPerRequest + last.postgresCpuMsPerRequest) / (first.serverCpuMsPerRequest + first.postgresCpuMsPerRequest);
    findings.push(
      `**Work per request.** The server spent ${first.serverCpuMsPerRequest.toFixed(2)} ms of CPU per request at ${first.cores} core(s) and ${last.serverCpuMsPerRequest.toFixed(2)} ms at ${last.cores}; ` +
        `PostgreSQL ${first.postgresCpuMsPerRequest.toFixed(2)} and ${last.postgresCpuMsPerRequest.toFixed(2)} ms. ` +
        (growth > 1.15
          ? `Each request costs ${(100 * (growth - 1)).toFixed(0)}% more CPU in total with more server processes, so they do not just share the work, they add to it.`
          : 'The cost per request hardly changes, so differences in throughput come from how much CPU and waiting each configuration gets, not from extra work.'),
    );
  }
  const commits = rows.map((row) => row.commitsPer100Requests);
  if (commits.every((value) => !Number.isNaN(value))) {
    const listed = rows.map((row) => `${row.commitsPer100Requests.toFixed(0)} at ${row.cores} core(s)`).join(', ');
    findings.push(
      Math.min(...commits) < 90
        ? `**Commits.** PostgreSQL committed fewer transactions than the server answered requests (per 100 requests: ${listed}): ` +
            'the server groups requests into shared transactions, so one WAL flush serves several of them.' +
            (last.cores > first.cores && last.commitsPer100Requests > 1.15 * first.commitsPer100Requests
              ? ` With ${last.cores} processes each commit carries fewer requests (${(100 / last.commitsPer100Requests).toFixed(1)} against ${(100 / first.commitsPer100Requests).toFixed(1)} at ${first.cores}): ` +
                'each process can only group its own requests, so more processes mean more, smaller transactions for the same load.'
              : '')
        : Math.min(...commits) <= 110
          ? `**Commits.** About one PostgreSQL commit per request (per 100 requests: ${listed}), so every write pays its own WAL flush.`
          : `**Commits.** More than one PostgreSQL commit per request (per 100 requests: ${listed}; set-up and the final invariant check are included, which matters more in short runs): ` +
            'some requests run several transactions (every statement outside an explicit transaction commits on its own), each a separate round trip and, for writes, a separate WAL flush.',
    );
  }

  const best = rows.reduce((top, row) => (row.ratio > top.ratio ? row : top));
  findings.push(
    `**Against PostgreSQL alone.** pgbench -N commits ${pgbench.mean.toFixed(0)} transactions/s with the same ${options.connections} clients (read committed, synchronous_commit=on); ` +
      `the server reaches ${(100 * best.ratio).toFixed(1)}% of that (at ${best.cores} core(s)). ` +
      'Both pay a WAL flush per committing write, but an order does more than a pgbench transaction (three updates and an insert): it checks and reserves ' +
      'funds or shares, matches against the book, updates both sides\' balances and positions and records executions, under SERIALIZABLE isolation; ' +
      'and the server adds XML parsing, rendering and a TCP round trip, on the same cores.',
  );

  const retries = last.retriesPer100Orders;
  const sessions = last.sessionsPer100Orders;
  if (!Number.isNaN(retries)) {
    findings.push(
      retries >= 5
        ? `**Serialization conflicts.** ${retries.toFixed(1)} retries per 100 orders at ${last.cores} core(s) (${first.retriesPer100Orders.toFixed(1)} at ${first.cores}): each retry redoes a whole transaction; ` +
            `with ${options.symbols} symbols and ${100 * WORKLOAD_CROSS}% crossing orders, concurrent orders often touch the same book and account rows.`
        : `**Serialization conflicts** are rare (${retries.toFixed(2)} retries per 100 orders at ${last.cores} core(s)), so contention on the book is not what limits throughput here.`,
    );
  }
  if (!Number.isNaN(sessions) && sessions >= 1) {
    const likeRetries = !Number.isNaN(retries) && retries > 0 && Math.abs(sessions - retries) / retries < 0.5;
    findings.push(
      `**Connection churn.** PostgreSQL saw ${sessions.toFixed(1)} new sessions per 100 orders at ${last.cores} core(s) (pg_stat_database.sessions), although the pool holds at most ${10 * last.cores}: ` +
        'pooled connections are being replaced during the run, each a backend fork plus session start-up on the same cores. ' +
        (likeRetries
          ? 'That is about one per serialization retry, which is what node-postgres\'s pool.query does: it discards the connection after any failed query, a 40001 included.'
          : 'node-postgres\'s pool.query discards the connection after any failed query, so failed statements are the first suspect.'),
    );
  }

  // Closed loop: C requests always in flight, so mean latency ≈ C / throughput (Little's law).
  const predicted = (1000 * options.connections) / last.requests.mean;
  findings.push(
    `**Latency** follows from throughput: the client keeps ${options.connections} requests in flight, so the mean is about ${options.connections} / ${last.requests.mean.toFixed(0)} requests/s ≈ ${predicted.toFixed(1)} ms ` +
      `(p50 measured: ${last.p50.mean.toFixed(1)} ms); at this load lower latency needs more throughput, not a faster single request.` +
      (retries > 0 ? ` The p99 tail (${last.p99.mean.toFixed(0)} ms) includes orders that were retried.` : ''),
  );
  return findings.map((finding) => `- ${finding}`).join('\n');
}

function writeReport(file: string, records: RunRecord[], summary: CoreSummary[], pgbench: PgbenchResult, options: Options, machine: Machine, startedAt: Date): void {
  const failed = records.filter((record) => record.failure !== null);
  const table = summary.map((row) => {
    const cpu = row.cpu
      ? `${row.cpu.server.toFixed(2)} / ${row.cpu.postgres.toFixed(2)} / ${row.cpu.client.toFixed(2)} / ${row.cpu.other.toFixed(2)} (${row.cpu.machineBusyPercent.toFixed(0)}%)`
      : 'n/a';
    return `| ${row.cores} | ${row.runs}${row.failedRuns ? ` (${row.failedRuns} failed)` : ''} | ${plusMinus(row.orders, 0)} | ${plusMinus(row.requests, 0)} | ${plusMinus(row.p50, 2)} | ${plusMinus(row.p99, 2)} | ${Number.isNaN(row.ratio) ? 'n/a' : `${(100 * row.ratio).toFixed(1)}%`} | ${fixed(row.retriesPer100Orders, 2)} | ${fixed(row.sessionsPer100Orders, 2)} | ${fixed(row.commitsPer100Requests, 0)} | ${cpu} |`;
  });
  const lines = [
    '# Scalability experiment',
    '',
    `Generated by \`npm run bench:scaling${options.quick ? ' -- --quick' : ''}\` on ${startedAt.toISOString()}` +
      (options.quick ? ' (**quick smoke settings: one short repeat; not a measurement to quote**).' : '.'),
    '',
    '## Machine',
    '',
    `- CPU: ${machine.cpuModel}, ${machine.cores} cores available`,
    `- Memory: ${machine.memoryGiB.toFixed(1)} GiB`,
    `- PostgreSQL: ${machine.postgres}`,
    `- PostgreSQL settings: ${machine.pgSettings}`,
    `- Node: ${machine.node}; ${machine.kernel}`,
    '',
    '## Method',
    '',
    `- For each core count k = 1..${options.maxCores}, ${options.repeats} run(s), interleaved (round r runs k = 1..${options.maxCores} once each, ` +
      'so disturbances of the machine fall on all core counts alike): the server is started as ' +
      '`taskset -c <first k allowed CPUs> node dist/server/main.js` with `WORKERS=k` (node:cluster workers inherit the CPU mask), ' +
      '`REPLY_FRAMING=length`, no Redis, on a **fresh database per run** (created before, dropped after), so every run starts from an empty book.',
    `- Load: \`node dist/client/stress.js --framing length --connections ${options.connections} --seconds ${options.seconds} --warmup ${options.warmup} ` +
      `--accounts ${options.accounts} --symbols ${options.symbols} --seed <repeat> --mix ${WORKLOAD_MIX} --cross ${WORKLOAD_CROSS} --json --database-url <run database>\`: ` +
      `orders, queries and cancels in the weights ${WORKLOAD_MIX}, ${100 * WORKLOAD_CROSS}% of orders priced to cross the book around a moving mid price; a closed loop ` +
      `(each connection sends its next request when the previous reply arrives), ${options.warmup} s warm-up then ${options.seconds} s measured; ` +
      'the seed depends only on the repeat, so each core count sees the same workloads. After each run the client checks the SPEC invariants in SQL; ' +
      'a run fails if the client exits non-zero or reports a violation. orders/s counts order requests answered in the window, business rejections ' +
      '(insufficient funds or shares) included; requests/s counts all three kinds.',
    `- Ceiling: PostgreSQL alone, \`pgbench -i -s 10\` into a scratch database, then ${options.repeats} × \`pgbench -N -c ${options.connections} -j ${Math.min(2, options.connections)} ` +
      `-T ${options.seconds} -M prepared\` (with \`synchronous_commit=on\` like the server): ${pgbench.tps.map((tps) => tps.toFixed(0)).join(', ')} tps, ` +
      `mean **${pgbench.mean.toFixed(0)} tps**. pgbench -N runs read committed; the server runs SERIALIZABLE.`,
    `- **Only the server is restricted.** PostgreSQL, the stress client and pgbench run unrestricted on the same ${machine.cores} cores, ` +
      'so they compete with the server for CPU; the core count is the server\'s allowance, not the machine\'s size.',
    '- CPU use per party is read from /proc over (about) the measured window, in cores busy on average (1.00 = one core for the whole window): ' +
      'the server\'s process tree, every PostgreSQL process (it serves all databases on this server, not only the run\'s), the stress client, ' +
      'and "other" = the machine\'s busy time minus those three (kernel and unrelated jobs). The machine is not reserved for the experiment, so "other" shows how much it was disturbed.',
    '',
    '## Results',
    '',
    'Mean ± sample standard deviation over the runs (± 0 with a single run). Ratio = mean orders/s ÷ mean pgbench tps. ' +
      'Retries = serialization retries (SQLSTATE 40001/40P01) per 100 orders, from the server\'s shutdown log; sessions = PostgreSQL sessions opened to the run\'s database ' +
      '(pg_stat_database) per 100 orders; commits = transactions PostgreSQL committed in that database per 100 requests; ' +
      'all three are counted over the whole run and divided by the orders (requests) of warm-up plus window. ' +
      'CPU = cores used by server / PostgreSQL / stress client / everything else on the machine (machine busy %).',
    '',
    '| cores | runs | orders/s | requests/s | p50 ms | p99 ms | ratio to pgbench | retries /100 orders | sessions /100 orders | commits /100 requests | CPU server / PG / client / other |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...table,
    '',
    `pgbench -N: **${pgbench.mean.toFixed(0)} tps** (${options.connections} clients). Every run is a row in [runs.csv](runs.csv).`,
    '',
    failed.length === 0
      ? `All ${records.length} run(s) passed, with the invariants checked (${[...new Set(records.map((record) => record.stress?.invariants.checked ?? 'none'))].join(', ')}).`
      : `**${failed.length} run(s) failed:**\n\n${failed.map((record) => `- cores ${record.cores}, repeat ${record.repeat}: ${record.failure}`).join('\n')}`,
    '',
    '![Throughput versus cores](throughput.svg)',
    '',
    '![Latency versus cores](latency.svg)',
    '',
    '## What limits it',
    '',
    'Generated from the numbers above by the script; read it with the CPU and machine notes in mind.',
    '',
    limitsText(summary, pgbench, options, machine),
    '',
  ];
  writeFileSync(file, lines.join('\n'));
}

function printSummary(summary: CoreSummary[], pgbench: PgbenchResult, options: Options): void {
  const header = `${'cores'.padStart(5)} ${'runs'.padStart(4)} ${'orders/s'.padStart(16)} ${'requests/s'.padStart(16)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'vs pgbench'.padStart(10)}`;
  const lines = [
    '',
    `scaling: ${options.repeats} repeat(s) × ${options.seconds} s, ${options.connections} connections; pgbench -N: ${pgbench.mean.toFixed(0)} tps (${pgbench.tps.map((tps) => tps.toFixed(0)).join(', ')})`,
    header,
    ...summary.map((row) =>
      `${String(row.cores).padStart(5)} ${String(row.runs).padStart(4)} ${plusMinus(row.orders, 0).padStart(16)} ${plusMinus(row.requests, 0).padStart(16)} ` +
        `${row.p50.mean.toFixed(2).padStart(8)} ${row.p99.mean.toFixed(2).padStart(8)} ${`${(100 * row.ratio).toFixed(1)}%`.padStart(10)}` +
        (row.failedRuns ? `  (${row.failedRuns} failed)` : ''),
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

// ---------------------------------------------------------------------------
// Main: set-up, the runs, outputs, and cleanup whatever happens

async function abort(signal: NodeJS.Signals): Promise<never> {
  progress(`${signal}: stopping child processes and dropping the databases`);
  for (const child of liveChildren) child.kill('SIGTERM');
  await dropAllDatabases();
  process.exit(130);
}

async function main(): Promise<number> {
  let options: Options | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${HELP}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (!existsSync(options.stressClient)) {
    process.stderr.write(`stress client not found: ${options.stressClient} (build it, or pass --stress-client)\n`);
    return 2;
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void abort(signal));

  const startedAt = new Date();
  const machine = await describeMachine();
  progress(`${machine.cpuModel}, ${machine.cores} cores; ${machine.postgres.split(' on ')[0]}; Node ${machine.node}`);
  const pgbench = await measurePgbench(options);

  const records: RunRecord[] = [];
  // Repeats on the outside: each round runs every core count once, so a slow spell of the machine
  // (other work, a checkpoint) falls on all core counts alike rather than on one of them.
  for (let repeat = 1; repeat <= options.repeats; repeat++) {
    for (let cores = 1; cores <= options.maxCores; cores++) records.push(await runOnce(cores, repeat, options));
  }

  const summary = summarize(records, pgbench);
  mkdirSync(options.outDir, { recursive: true });
  writeCsv(path.join(options.outDir, 'runs.csv'), records, pgbench);
  writeFileSync(path.join(options.outDir, 'throughput.svg'), await renderSvg(throughputSpec(records, summary, pgbench, options, machine)));
  writeFileSync(path.join(options.outDir, 'latency.svg'), await renderSvg(latencySpec(records, summary, options)));
  writeReport(path.join(options.outDir, 'report.md'), records, summary, pgbench, options, machine, startedAt);
  progress(`wrote runs.csv, throughput.svg, latency.svg, report.md to ${path.relative(process.cwd(), options.outDir) || '.'}`);
  printSummary(summary, pgbench, options);

  const failures = records.filter((record) => record.failure !== null);
  if (failures.length > 0) process.stdout.write(`${failures.length} run(s) FAILED; see report.md\n`);
  return failures.length > 0 ? 1 : 0;
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  progress(`failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
} finally {
  for (const child of liveChildren) child.kill('SIGTERM');
  await dropAllDatabases();
}
process.exit(exitCode);
