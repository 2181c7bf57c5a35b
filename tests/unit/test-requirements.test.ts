/**
 * Tests that need a program npm cannot install: on a machine without it they are pending, their
 * titles saying how to install it, never passing; with REQUIRE_ALL_TESTS=1 (as .ci/run sets it)
 * they fail. Shown by running test files in a child mocha with PATH stripped of the program.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { REQUIRE_ALL_TESTS_VARIABLE } from '../support/requirements.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MOCHA = path.join(path.dirname(createRequire(import.meta.url).resolve('mocha/package.json')), 'bin', 'mocha.js');
const HOOKS = path.join(here, '..', 'support', 'hooks.js');

type Report = {
  stats: { tests: number; passes: number; pending: number; failures: number };
  pending: Array<{ fullTitle: string }>;
  failures: Array<{ fullTitle: string; err: { message?: string } }>;
};

/** PATH without the directories that hold any of `programs`. */
function pathWithout(...programs: string[]): string {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((directory) => directory !== '' && !programs.some((program) => existsSync(path.join(directory, program))))
    .join(path.delimiter);
}

/** Runs one compiled test file in a child mocha (the project's root hooks, JSON report); `extra` overrides the environment. */
async function runMocha(
  file: string,
  extra: Record<string, string | undefined>,
): Promise<{ code: number | null; report: Report; output: string }> {
  const directory = mkdtempSync(path.join(os.tmpdir(), 'mocha-report-'));
  const reportFile = path.join(directory, 'report.json');
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn' };
  delete env[REQUIRE_ALL_TESTS_VARIABLE];
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  try {
    const args = [
      MOCHA,
      '--no-config',
      '--require',
      HOOKS,
      '--timeout',
      '60000',
      '--exit',
      '--reporter',
      'json',
      '--reporter-option',
      `output=${reportFile}`,
      path.join(here, '..', file),
    ];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    if (!existsSync(reportFile)) throw new Error(`mocha wrote no report (exit ${code}):\n${output}`);
    return { code, report: JSON.parse(readFileSync(reportFile, 'utf8')) as Report, output };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

describe('tests that need a program npm cannot install', function () {
  this.timeout(120_000);

  describe('haproxy (the scale-out tests), with PATH stripped of it', () => {
    const withoutHaproxy = { PATH: pathWithout('haproxy'), HAPROXY: undefined };

    it('are pending, each title naming haproxy and its install command, and the run passes', async () => {
      const { code, report, output } = await runMocha('integration/scale-out.test.js', withoutHaproxy);
      expect(report.stats.failures, output).to.equal(0);
      expect(report.stats.passes).to.equal(0);
      expect(report.stats.pending).to.be.greaterThan(0);
      expect(report.stats.pending).to.equal(report.stats.tests);
      for (const { fullTitle } of report.pending)
        expect(fullTitle).to.include('needs haproxy: apt-get install -y haproxy');
      expect(code).to.equal(0);
    });

    it(`fail, saying why, with ${REQUIRE_ALL_TESTS_VARIABLE}=1`, async () => {
      const { code, report, output } = await runMocha('integration/scale-out.test.js', {
        ...withoutHaproxy,
        [REQUIRE_ALL_TESTS_VARIABLE]: '1',
      });
      expect(report.stats.passes, output).to.equal(0);
      expect(report.stats.pending).to.equal(0);
      expect(report.stats.failures).to.be.greaterThan(0);
      const messages = report.failures.map((failure) => failure.err.message ?? '').join('\n');
      expect(messages).to.include(
        `${REQUIRE_ALL_TESTS_VARIABLE}=1 and this test needs haproxy (haproxy is not installed; provide it with: apt-get install -y haproxy)`,
      );
      expect(code).to.not.equal(0);
    });
  });

  describe('xmllint (only the test comparing its verdicts with the in-process ones), with PATH stripped of it', () => {
    const withoutXmllint = { PATH: pathWithout('xmllint') };

    it('is pending, named so; every other schema test passes without it', async () => {
      const { code, report, output } = await runMocha('unit/schemas.test.js', withoutXmllint);
      expect(report.stats.failures, output).to.equal(0);
      expect(report.pending.map((test) => test.fullTitle)).to.have.length(1);
      expect(report.pending[0]?.fullTitle).to.include('needs xmllint: apt-get install -y libxml2-utils');
      expect(report.stats.passes)
        .to.equal(report.stats.tests - 1)
        .and.to.be.greaterThan(10);
      expect(code).to.equal(0);
    });

    it(`fails with ${REQUIRE_ALL_TESTS_VARIABLE}=1`, async () => {
      const { code, report, output } = await runMocha('unit/schemas.test.js', {
        ...withoutXmllint,
        [REQUIRE_ALL_TESTS_VARIABLE]: '1',
      });
      expect(report.stats.pending, output).to.equal(0);
      expect(report.failures.map((failure) => failure.fullTitle)).to.have.length(1);
      expect(report.failures[0]?.err.message).to.include(
        'needs xmllint (xmllint is not installed; provide it with: apt-get install -y libxml2-utils)',
      );
      expect(code).to.not.equal(0);
    });
  });

  it(`with ${REQUIRE_ALL_TESTS_VARIABLE}=1, any other pending test fails the run too (the root hook)`, async () => {
    // A test file of nothing but it.skip: run alone, the run passes without the variable and fails with it.
    const { code, report, output } = await runMocha('unit/test-requirements.test.js', {
      [REQUIRE_ALL_TESTS_VARIABLE]: '1',
      MOCHA_PENDING_PROBE: '1',
    });
    expect(report.stats.pending, output).to.equal(1);
    const messages = report.failures.map((failure) => failure.err.message ?? '').join('\n');
    expect(messages).to.include(`${REQUIRE_ALL_TESTS_VARIABLE}=1, yet 1 test(s) did not run`);
    expect(messages).to.include('a pending probe');
    expect(code).to.not.equal(0);
    const without = await runMocha('unit/test-requirements.test.js', { MOCHA_PENDING_PROBE: '1' });
    expect(without.report.stats.failures, without.output).to.equal(0);
    expect(without.code).to.equal(0);
  });
});

// Only in the child run of the last test above: one pending test and nothing else.
if (process.env.MOCHA_PENDING_PROBE === '1') {
  describe.only('the probe', () => {
    it.skip('a pending probe', () => undefined);
  });
}
