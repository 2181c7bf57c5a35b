/**
 * Mocha root hooks (loaded by .mocharc.json "require"), after the whole run:
 *  - every reply the tests read through parseResults is validated against schema/replies.xsd,
 *    and the run fails if any reply is invalid;
 *  - with REQUIRE_ALL_TESTS=1 (as .ci/run sets it), the run fails if any test was pending,
 *    whatever made it so: CI runs every test.
 */
import type { Context, Suite } from 'mocha';
import { recordedReplyStats, validateRecordedReplies } from './reply-schema.js';
import { REQUIRE_ALL_TESTS_VARIABLE, requireAllTests } from './requirements.js';

const SHOWN_FAILURES = 10;

function pendingTitles(suite: Suite): string[] {
  return [
    ...suite.tests.filter((test) => test.isPending()).map((test) => test.fullTitle()),
    ...suite.suites.flatMap(pendingTitles),
  ];
}

export const mochaHooks = {
  async afterAll(this: Context): Promise<void> {
    this.timeout(10 * 60_000);
    const problems: string[] = [];
    const root = this.test?.parent;
    if (requireAllTests() && root) {
      const pending = pendingTitles(root);
      if (pending.length > 0) {
        problems.push(
          `${REQUIRE_ALL_TESTS_VARIABLE}=1, yet ${pending.length} test(s) did not run:\n  ${pending.join('\n  ')}`,
        );
      }
    }

    const stats = recordedReplyStats();
    if (stats.replies > 0) {
      const started = Date.now();
      const failures = validateRecordedReplies();
      if (failures.length > 0) {
        const shown = failures
          .slice(0, SHOWN_FAILURES)
          .map((failure, index) => `#${index + 1}\n${failure}`)
          .join('\n\n');
        problems.push(
          `${failures.length} of ${stats.replies} distinct replies do not match schema/replies.xsd` +
            ` (first ${Math.min(SHOWN_FAILURES, failures.length)} below):\n\n${shown}`,
        );
      } else {
        const skipped = stats.notRecorded > 0 ? `; ${stats.notRecorded} more were not kept (recording cap)` : '';
        console.log(
          `\n  reply schema: ${stats.replies} distinct replies (${(stats.chars / 1024 / 1024).toFixed(1)} MiB) match` +
            ` schema/replies.xsd, checked in ${Date.now() - started} ms${skipped}`,
        );
      }
    }
    if (problems.length > 0) throw new Error(problems.join('\n\n'));
  },
};
