/**
 * What the benchmark derives from a run's write-lane totals (scripts/bench-support/figures.ts):
 * the share of the loaded seconds the lane was busy, its time per batch, and writes per batch.
 */
import { expect } from 'chai';
import { runFigures } from '../../scripts/bench-support/figures.js';
import type { ServerRecord, Settings } from '../../scripts/bench-support/runner.js';

const settings: Settings = { seconds: 10, warmup: 2, repeats: 1, transport: { host: '127.0.0.1', port: '5432' } };

const record = (writeLane: ServerRecord['writeLane'] | undefined): ServerRecord =>
  ({
    stress: null,
    cpu: null,
    postgres: null,
    database: null,
    serializationRetries: 0,
    writeLane,
  }) as unknown as ServerRecord;

describe('benchmark figures of the write lane', () => {
  it('busy share over warm-up plus window, ms per batch and writes per batch', () => {
    const figures = runFigures(record({ busySeconds: 9, batches: 7_500, writes: 27_000 }), settings);
    expect(figures.writeLaneBusy).to.be.closeTo(0.75, 1e-9);
    expect(figures.writeLaneMsPerBatch).to.be.closeTo(1.2, 1e-9);
    expect(figures.writesPerBatch).to.be.closeTo(3.6, 1e-9);
  });

  it('a run with no batches, or a record from before the lane was timed, has none', () => {
    for (const lane of [{ busySeconds: 0, batches: 0, writes: 0 }, undefined]) {
      const figures = runFigures(record(lane), settings);
      expect(figures.writeLaneBusy).to.be.NaN;
      expect(figures.writeLaneMsPerBatch).to.be.NaN;
      expect(figures.writesPerBatch).to.be.NaN;
    }
  });
});
