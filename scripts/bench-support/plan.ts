/**
 * The benchmark's plan: every run it will make, in order, built from the options alone (no
 * processes, no database), so it can be printed before anything runs.
 *
 * A server run is a load (the stress client's workload) × connections × the server's CPUs ×
 * WORKERS × write queue × repeat. Scenarios name the parts of the plan a user selects; two
 * scenarios that need the same run share it, so on two cores `mixed` (all cores, default
 * WORKERS) is also the 2-core, 1-worker run of `workers`, and `cores` adds nothing that
 * `workers` did not.
 */
import { defaultWorkers, type WriteQueue } from '../../server/config.js';

export const SCENARIOS = ['mixed', 'cross20', 'half-rate', 'hot', 'workers', 'cores'] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** The stress client's workload flags. half-rate is the mixed workload paced with --rate. */
const MIXED = ['--accounts', '100', '--symbols', '10', '--mix', '70:20:10', '--cross', '0.5'];
export const LOADS = {
  mixed: MIXED,
  cross20: ['--accounts', '100', '--symbols', '20', '--mix', '1:0:0', '--cross', '1'],
  'half-rate': MIXED,
  hot: ['--accounts', '100', '--symbols', '1', '--mix', '1:0:0', '--cross', '1'],
} as const satisfies Record<string, readonly string[]>;
export type Load = keyof typeof LOADS;

export type ServerStep = {
  kind: 'server';
  load: Load;
  connections: number;
  cpus: number[];
  workers: number;
  /** Set for the run that compares per-worker write queues; absent, the server's default (shared). */
  writeQueue?: 'per-worker';
  repeat: number;
  /** The scenarios that asked for this run. */
  scenarios: Scenario[];
};
/** One pgbench -N run; the first of a connection count initialises its scratch database, the last drops it. */
export type PgbenchStep = { kind: 'pgbench'; connections: number; repeat: number; repeats: number };
export type Step = ServerStep | PgbenchStep;

export type PlanOptions = {
  scenarios: Scenario[];
  connections: number[];
  /** Core counts of the cores sweep. */
  cores: number[];
  repeats: number;
  /** The CPUs this process may use; a run on k cores gets the first k. */
  allowedCpus: number[];
};

type ConfigKey = { load: Load; cpus: number[]; workers: number; writeQueue?: 'per-worker' };

/**
 * "mixed 2c/1w", "mixed 2c/2w per-worker": a run's load, cores, workers and write queue; the same
 * name for each repeat and connection count.
 */
export function configName(step: ConfigKey): string {
  const queue = step.writeQueue ? ` ${step.writeQueue}` : '';
  return `${step.load} ${step.cpus.length}c/${step.workers}w${queue}`;
}

/** The WRITE_QUEUE a run's server gets: said outright, so one in the benchmark's environment cannot leak in. */
export function writeQueueOf(step: { writeQueue?: 'per-worker' }): WriteQueue {
  return step.writeQueue ?? 'shared';
}

type Configuration = { load: Load; cores: number; workers: number; writeQueue?: 'per-worker' };

/** The (load, cores, workers, write queue) configurations a scenario needs, in the order they run. */
function configurations(scenario: Scenario, options: PlanOptions): Configuration[] {
  const all = options.allowedCpus.length;
  const workers = defaultWorkers(all);
  switch (scenario) {
    case 'mixed':
    case 'cross20':
    case 'hot':
      return [{ load: scenario, cores: all, workers }];
    case 'half-rate':
      // Paced at half of what the same round's mixed run reached, so that run comes first.
      return [
        { load: 'mixed', cores: all, workers },
        { load: 'half-rate', cores: all, workers },
      ];
    case 'workers':
      if (all < 2) return [];
      return [
        { load: 'mixed', cores: 1, workers: 1 },
        { load: 'mixed', cores: 2, workers: defaultWorkers(2) },
        { load: 'mixed', cores: 2, workers: 1 },
        { load: 'mixed', cores: 2, workers: 2 },
        // Beside the shared queue's 2c/2w in the same round, so the two queues meet the same machine.
        { load: 'mixed', cores: 2, workers: 2, writeQueue: 'per-worker' },
      ];
    case 'cores':
      return options.cores.map((cores) => ({ load: 'mixed', cores, workers: cores }));
  }
}

/**
 * For each connection count: its pgbench runs, then the rounds. Repeats are the outer loop of the
 * server runs, so a slow spell of the machine falls on every configuration alike.
 */
export function buildPlan(options: PlanOptions): Step[] {
  const steps: Step[] = [];
  for (const connections of options.connections) {
    for (let repeat = 1; repeat <= options.repeats; repeat++) {
      steps.push({ kind: 'pgbench', connections, repeat, repeats: options.repeats });
    }
    for (let repeat = 1; repeat <= options.repeats; repeat++) {
      const round = new Map<string, ServerStep>();
      for (const scenario of SCENARIOS.filter((name) => options.scenarios.includes(name))) {
        for (const { cores, ...config } of configurations(scenario, options)) {
          const key = { ...config, cpus: options.allowedCpus.slice(0, cores) };
          const name = configName(key);
          const existing = round.get(name);
          if (existing) {
            if (!existing.scenarios.includes(scenario)) existing.scenarios.push(scenario);
          } else {
            round.set(name, { kind: 'server', ...key, connections, repeat, scenarios: [scenario] });
          }
        }
      }
      steps.push(...round.values());
    }
  }
  return steps;
}

/** Seconds a step is expected to take: the load, plus about 4 s of database, server start and stop, checks. */
export function estimatedSeconds(step: Step, settings: { seconds: number; warmup: number }): number {
  if (step.kind === 'server') return settings.warmup + settings.seconds + 4;
  // pgbench -i -s 10 before the first run of a connection count.
  return settings.seconds + (step.repeat === 1 ? 8 : 1);
}
