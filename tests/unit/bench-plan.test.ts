/**
 * The benchmark's plan (scripts/bench-support/plan.ts): which runs a scenario asks for, and
 * that runs two scenarios share are made once. Built from options alone, so no process runs.
 */
import { expect } from 'chai';
import { buildPlan, configName, writeQueueOf, type ServerStep } from '../../scripts/bench-support/plan.js';

const serverRuns = (steps: ReturnType<typeof buildPlan>): ServerStep[] =>
  steps.filter((step): step is ServerStep => step.kind === 'server');

describe('benchmark plan', () => {
  it('the workers scenario on two cores compares one worker, two sharing the write queue, and two with their own', () => {
    const steps = buildPlan({
      scenarios: ['workers'],
      connections: [8],
      cores: [1, 2],
      repeats: 1,
      allowedCpus: [0, 1],
    });
    expect(steps[0]).to.include({ kind: 'pgbench', connections: 8 });
    const runs = serverRuns(steps);
    expect(runs.map(configName)).to.deep.equal(['mixed 1c/1w', 'mixed 2c/1w', 'mixed 2c/2w', 'mixed 2c/2w per-worker']);
    expect(runs.map(writeQueueOf)).to.deep.equal(['shared', 'shared', 'shared', 'per-worker']);
  });

  it('a run two scenarios need is made once per round, and repeats are the outer loop', () => {
    const runs = serverRuns(
      buildPlan({
        scenarios: ['mixed', 'workers', 'cores'],
        connections: [8],
        cores: [1, 2],
        repeats: 2,
        allowedCpus: [0, 1],
      }),
    );
    const firstRound = runs.filter((run) => run.repeat === 1).map(configName);
    expect(firstRound).to.deep.equal(['mixed 2c/1w', 'mixed 1c/1w', 'mixed 2c/2w', 'mixed 2c/2w per-worker']);
    expect(runs.filter((run) => run.repeat === 2).map(configName)).to.deep.equal(firstRound);
    const shared = runs.find((run) => configName(run) === 'mixed 2c/2w');
    expect(shared?.scenarios).to.have.members(['workers', 'cores']);
  });

  it('one core allows no workers comparison', () => {
    const runs = serverRuns(
      buildPlan({ scenarios: ['workers'], connections: [8], cores: [1], repeats: 1, allowedCpus: [0] }),
    );
    expect(runs).to.deep.equal([]);
  });
});
