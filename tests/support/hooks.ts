/**
 * Mocha root hooks (loaded by .mocharc.json "require"): after the whole run, every reply the
 * tests read through parseResults is validated against schema/replies.xsd, and the run fails
 * if any reply is invalid. Needs xmllint (Debian package libxml2-utils).
 */
import type { Context } from 'mocha';
import { INSTALL_HINT, recordedReplyStats, validateRecordedReplies } from './reply-schema.js';

const SHOWN_FAILURES = 10;

export const mochaHooks = {
  async afterAll(this: Context): Promise<void> {
    this.timeout(10 * 60_000);
    const stats = recordedReplyStats();
    if (stats.replies === 0) return;
    const started = Date.now();
    let failures: string[];
    try {
      failures = await validateRecordedReplies();
    } catch (error) {
      const message = (error as Error).message;
      throw new Error(`could not validate ${stats.replies} replies against schema/replies.xsd: ${message}`
        + (message.includes(INSTALL_HINT) ? '' : `\n(if xmllint is missing: ${INSTALL_HINT})`));
    }
    if (failures.length > 0) {
      const shown = failures.slice(0, SHOWN_FAILURES).map((failure, index) => `#${index + 1}\n${failure}`).join('\n\n');
      throw new Error(`${failures.length} of ${stats.replies} distinct replies do not match schema/replies.xsd`
        + ` (first ${Math.min(SHOWN_FAILURES, failures.length)} below):\n\n${shown}`);
    }
    const skipped = stats.notRecorded > 0 ? `; ${stats.notRecorded} more were not kept (recording cap)` : '';
    console.log(`\n  reply schema: ${stats.replies} distinct replies (${(stats.chars / 1024 / 1024).toFixed(1)} MiB) match`
      + ` schema/replies.xsd, checked in ${Date.now() - started} ms${skipped}`);
  },
};
