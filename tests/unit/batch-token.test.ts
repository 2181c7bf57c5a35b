/**
 * Batch tokens (write-outcome.ts): UUID version 7, whose random bits come from a pool
 * refilled every 256 tokens. Tokens made in one millisecond differ only in those bits.
 */
import { expect } from 'chai';
import { uuidV7 } from '../../server/store/write-outcome.js';

describe('batch tokens', () => {
  it('made in one millisecond, across several refills of the random pool, are all distinct UUIDs v7', () => {
    const now = Date.now();
    const tokens = Array.from({ length: 1_000 }, () => uuidV7(now));
    expect(new Set(tokens).size).to.equal(tokens.length);
    for (const token of tokens)
      expect(token).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // The time part is the same; the rest is random, so no byte stays constant across them.
    const randomHex = tokens.map((token) => token.replaceAll('-', '').slice(16));
    for (let at = 2; at < 16; at += 2) {
      expect(
        new Set(randomHex.map((hex) => hex.slice(at, at + 2))).size,
        `byte ${at / 2} of the random tail`,
      ).to.be.above(100);
    }
  });
});
