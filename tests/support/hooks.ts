/**
 * Mocha root hooks (loaded by .mocharc.json "require"), after the whole run:
 *  - every reply the tests read through parseResults is validated against schema/replies.xsd,
 *    and the run fails if any reply is invalid.
 */
import type { Context } from 'mocha';
import { recordedReplyStats, validateRecordedReplies } from './reply-schema.js';

const SHOWN_FAILURES = 10;

export const mochaHooks = {
  async afterAll(this: Context): Promise<void> {
    this.timeout(10 * 60_000);
    const problems: string[] = [];
    const stats = recordedReplyStats();
    if (stats.replies > 0) {
      const started = Date.now();
      const failures = validateRecordedReplies();
      if (failures.length > 0) {
        const shown = failures.slice(0, SHOWN_FAILURES).map((failure, index) => `#${index + 1}\n${failure}`).join('\n\n');
        problems.push(`${failures.length} of ${stats.replies} distinct replies do not match schema/replies.xsd`
          + ` (first ${Math.min(SHOWN_FAILURES, failures.length)} below):\n\n${shown}`);
      } else {
        const skipped = stats.notRecorded > 0 ? `; ${stats.notRecorded} more were not kept (recording cap)` : '';
        console.log(`\n  reply schema: ${stats.replies} distinct replies (${(stats.chars / 1024 / 1024).toFixed(1)} MiB) match`
          + ` schema/replies.xsd, checked in ${Date.now() - started} ms${skipped}`);
      }
    }
    if (problems.length > 0) throw new Error(problems.join('\n\n'));
  },
};
