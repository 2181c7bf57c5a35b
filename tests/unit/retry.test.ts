import { expect } from 'chai';
import {
  backoffMs,
  DEADLOCK_DETECTED,
  DEFAULT_RETRY_POLICY,
  isRetryable,
  RetriesExhaustedError,
  SERIALIZATION_FAILURE,
  withRetry,
  type RetryCounters,
  type RetryPolicy,
} from '../../server/store/retry.js';

/** No real waiting: backoff is Math.random() * 0. */
const FAST: RetryPolicy = { maxAttempts: 5, baseDelayMs: 0, maxDelayMs: 0 };

function pgError(code: string): Error & { code: string } {
  return Object.assign(new Error(`pg error ${code}`), { code });
}

/** An attempt function that throws the given errors in turn, then returns `value`. */
function scripted<T>(failures: unknown[], value: T): { attempt: () => Promise<T>; calls: () => number } {
  let calls = 0;
  return {
    attempt: async () => {
      const failure = failures[calls];
      calls++;
      if (calls <= failures.length) throw failure;
      return value;
    },
    calls: () => calls,
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('withRetry', () => {
  it('returns the first result without retrying', async () => {
    const counters: RetryCounters = { retries: 0, exhausted: 0 };
    const script = scripted([], 'ok');
    expect(await withRetry(script.attempt, FAST, counters)).to.equal('ok');
    expect(script.calls()).to.equal(1);
    expect(counters).to.deep.equal({ retries: 0, exhausted: 0 });
  });

  it('retries serialization failures (40001) and succeeds', async () => {
    const counters: RetryCounters = { retries: 0, exhausted: 0 };
    const script = scripted([pgError('40001'), pgError('40001')], 42);
    expect(await withRetry(script.attempt, FAST, counters)).to.equal(42);
    expect(script.calls()).to.equal(3);
    expect(counters).to.deep.equal({ retries: 2, exhausted: 0 });
  });

  it('retries deadlocks (40P01) and succeeds', async () => {
    const counters: RetryCounters = { retries: 0, exhausted: 0 };
    const script = scripted([pgError('40P01'), pgError('40001'), pgError('40P01')], 'done');
    expect(await withRetry(script.attempt, FAST, counters)).to.equal('done');
    expect(script.calls()).to.equal(4);
    expect(counters).to.deep.equal({ retries: 3, exhausted: 0 });
  });

  it('accepts plain objects carrying the code (as pg errors are)', async () => {
    const script = scripted([{ code: '40001' }], 'ok');
    expect(await withRetry(script.attempt, FAST)).to.equal('ok');
    expect(script.calls()).to.equal(2);
  });

  for (const [label, thrown] of [
    ['unique violation 23505', pgError('23505')],
    ['check violation 23514', pgError('23514')],
    ['connection failure 08006', pgError('08006')],
    ['a numeric code 40001', { code: 40001 }],
    ['a lowercase 40p01', { code: '40p01' }],
    ['an Error without code', new Error('boom')],
    ['a string', 'boom'],
    ['null', null],
    ['undefined', undefined],
  ] as Array<[string, unknown]>) {
    it(`never retries ${label}`, async () => {
      const counters: RetryCounters = { retries: 0, exhausted: 0 };
      const script = scripted([thrown], 'never');
      const error = await rejection(withRetry(script.attempt, FAST, counters));
      expect(error).to.equal(thrown);
      expect(script.calls()).to.equal(1);
      expect(counters).to.deep.equal({ retries: 0, exhausted: 0 });
    });
  }

  it('stops at a non-retryable error that follows retryable ones', async () => {
    const counters: RetryCounters = { retries: 0, exhausted: 0 };
    const fatal = pgError('23505');
    const script = scripted([pgError('40001'), pgError('40P01'), fatal], 'never');
    expect(await rejection(withRetry(script.attempt, FAST, counters))).to.equal(fatal);
    expect(script.calls()).to.equal(3);
    expect(counters).to.deep.equal({ retries: 2, exhausted: 0 });
  });

  it('gives up after maxAttempts with RetriesExhaustedError', async () => {
    const counters: RetryCounters = { retries: 0, exhausted: 0 };
    const failures = [
      pgError('40001'),
      pgError('40P01'),
      pgError('40001'),
      pgError('40P01'),
      pgError('40001'),
      pgError('40001'),
    ];
    const script = scripted(failures, 'never');
    const error = await rejection(withRetry(script.attempt, FAST, counters));
    expect(error).to.be.instanceOf(RetriesExhaustedError);
    expect(error).to.be.instanceOf(Error);
    const exhausted = error as RetriesExhaustedError;
    expect(exhausted.name).to.equal('RetriesExhaustedError');
    expect(exhausted.attempts).to.equal(5);
    expect(exhausted.lastError).to.equal(failures[4]);
    expect(script.calls()).to.equal(5);
    expect(counters).to.deep.equal({ retries: 4, exhausted: 1 });
  });

  it('accumulates counters across calls', async () => {
    const counters: RetryCounters = { retries: 0, exhausted: 0 };
    await withRetry(scripted([pgError('40001')], 1).attempt, FAST, counters);
    await rejection(
      withRetry(
        scripted(
          Array.from({ length: 10 }, () => pgError('40001')),
          1,
        ).attempt,
        { ...FAST, maxAttempts: 3 },
        counters,
      ),
    );
    await withRetry(scripted([pgError('40P01'), pgError('40P01')], 1).attempt, FAST, counters);
    expect(counters).to.deep.equal({ retries: 1 + 2 + 2, exhausted: 1 });
  });

  it('with maxAttempts 1 never retries', async () => {
    const counters: RetryCounters = { retries: 0, exhausted: 0 };
    const script = scripted([pgError('40001')], 'never');
    const error = await rejection(withRetry(script.attempt, { ...FAST, maxAttempts: 1 }, counters));
    expect(error).to.be.instanceOf(RetriesExhaustedError);
    expect(script.calls()).to.equal(1);
    expect(counters).to.deep.equal({ retries: 0, exhausted: 1 });
  });

  it('works without counters', async () => {
    expect(await withRetry(scripted([pgError('40001')], 'x').attempt, FAST)).to.equal('x');
    expect(
      await rejection(
        withRetry(
          scripted(
            Array.from({ length: 5 }, () => pgError('40001')),
            'x',
          ).attempt,
          FAST,
        ),
      ),
    ).to.be.instanceOf(RetriesExhaustedError);
  });

  it('waits between attempts', async () => {
    const original = Math.random;
    Math.random = () => 0.999;
    try {
      const script = scripted([pgError('40001'), pgError('40001')], 'ok');
      const started = Date.now();
      expect(await withRetry(script.attempt, { maxAttempts: 5, baseDelayMs: 15, maxDelayMs: 15 })).to.equal('ok');
      expect(Date.now() - started).to.be.at.least(20);
    } finally {
      Math.random = original;
    }
  });
});

describe('isRetryable', () => {
  it('is true only for 40001 and 40P01', () => {
    expect(SERIALIZATION_FAILURE).to.equal('40001');
    expect(DEADLOCK_DETECTED).to.equal('40P01');
    expect(isRetryable(pgError('40001'))).to.equal(true);
    expect(isRetryable({ code: '40P01' })).to.equal(true);
    for (const value of [
      pgError('40000'),
      pgError('23505'),
      { code: 40001 },
      new Error('x'),
      null,
      undefined,
      'x',
      7,
      {},
    ]) {
      expect(isRetryable(value), String(value)).to.equal(false);
    }
  });
});

describe('backoffMs', () => {
  it('stays within [0, min(maxDelay, base * 2^attempt))', () => {
    const policy: RetryPolicy = { maxAttempts: 10, baseDelayMs: 1, maxDelayMs: 50 };
    for (let attempt = 1; attempt <= 40; attempt++) {
      const ceiling = Math.min(50, 2 ** attempt);
      for (let sample = 0; sample < 50; sample++) {
        const delay = backoffMs(attempt, policy);
        expect(delay).to.be.at.least(0);
        expect(delay).to.be.below(ceiling);
        expect(Number.isFinite(delay)).to.equal(true);
      }
    }
  });

  it('stays finite for huge attempt numbers', () => {
    expect(Number.isFinite(backoffMs(10_000, DEFAULT_RETRY_POLICY))).to.equal(true);
    expect(backoffMs(10_000, DEFAULT_RETRY_POLICY)).to.be.below(DEFAULT_RETRY_POLICY.maxDelayMs);
  });

  it('uses full jitter over the ceiling', () => {
    const original = Math.random;
    try {
      Math.random = () => 0.5;
      expect(backoffMs(3, { maxAttempts: 1, baseDelayMs: 2, maxDelayMs: 1000 })).to.equal(8);
      Math.random = () => 0;
      expect(backoffMs(3, { maxAttempts: 1, baseDelayMs: 2, maxDelayMs: 1000 })).to.equal(0);
    } finally {
      Math.random = original;
    }
  });

  it('has a sane default policy', () => {
    expect(DEFAULT_RETRY_POLICY.maxAttempts).to.be.greaterThan(1);
    expect(DEFAULT_RETRY_POLICY.maxDelayMs).to.be.at.least(DEFAULT_RETRY_POLICY.baseDelayMs);
  });
});
