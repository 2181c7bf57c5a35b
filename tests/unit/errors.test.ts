import { expect } from 'chai';
import { ERROR_MESSAGES, codeOfMessage, detailedProblem, problem, type FixedErrorCode } from '../../server/errors.js';
import { RequestFramer } from '../../server/protocol/framing.js';
import { isCompleteDocument } from '../../server/protocol/parse-request.js';
import { createRequestProcessor } from '../../server/app.js';
import { metrics } from '../../server/observability/metrics.js';
import type { ExchangeStore } from '../../server/store/exchange-store.js';

describe('error codes', () => {
  // Clients and graders read these texts: a code may be renamed, its message may not change.
  it('the wire texts are the ones clients have always read', () => {
    expect(ERROR_MESSAGES).to.deep.include({
      unknown_account: 'unknown account',
      account_exists: 'account already exists',
      unknown_symbol: 'unknown symbol',
      insufficient_funds: 'insufficient funds',
      insufficient_shares: 'insufficient shares',
      unknown_order: 'no such order for this account',
      nothing_open: 'order has nothing open to cancel',
      not_applied: 'not applied: too many concurrent updates, try again',
      outcome_unknown: 'internal error: the outcome is unknown; query before retrying',
      request_failed: 'internal error: the request could not be completed',
      reply_limit: 'not processed: the reply to this request reached its size limit',
      evicted: 'server at its connection limit: connection closed to make room, before a request arrived',
    });
  });

  it('each fixed message names one code, and reads back to it', () => {
    const fixed = Object.entries(ERROR_MESSAGES).filter(([, message]) => message !== null) as Array<
      [FixedErrorCode, string]
    >;
    expect(new Set(fixed.map(([, message]) => message)).size).to.equal(fixed.length);
    for (const [code, message] of fixed) {
      expect(problem(code)).to.deep.equal({ code, message });
      expect(codeOfMessage(message)).to.equal(code);
    }
    expect(codeOfMessage('amount must not be zero'), 'a detailed message has no code of its own').to.equal(undefined);
  });

  it('codes are snake_case words, usable as metric label values', () => {
    for (const code of Object.keys(ERROR_MESSAGES)) expect(code).to.match(/^[a-z]+(_[a-z]+)*$/);
    expect(detailedProblem('invalid_item', 'missing sym')).to.deep.equal({
      code: 'invalid_item',
      message: 'missing sym',
    });
  });

  // The framing error metric's label values predate the codes; the codes keep them.
  it('framing failures carry the codes the framing metric is labeled with', () => {
    const codeOf = (bytes: string, end = false): string | undefined => {
      const framer = new RequestFramer(100);
      const events = [...framer.push(Buffer.from(bytes)), ...(end ? framer.end(isCompleteDocument) : [])];
      const failure = events.find((event) => event.type === 'error');
      return failure?.type === 'error' ? failure.problem.code : undefined;
    };
    expect(codeOf('abc\n')).to.equal('bad_length_line');
    expect(codeOf(`${'1'.repeat(40)}`)).to.equal('bad_length_line');
    expect(codeOf('101\n')).to.equal('too_large');
    expect(codeOf('10\n<a', true)).to.equal('truncated');
    expect(codeOf('1', true)).to.equal('truncated');
  });

  it('error replies are counted by code, not by message', async () => {
    // Requests refused before they reach the store: any store call is a failure of this test.
    const noStore = new Proxy(
      {},
      { get: () => () => Promise.reject(new Error('the store was called')) },
    ) as ExchangeStore;
    const process = createRequestProcessor(noStore);
    const count = async (code: string): Promise<number> =>
      (await metrics.errors.get()).values.find((value) => value.labels.code === code)?.value ?? 0;
    const before = await count('invalid_request');
    const reply = await process(Buffer.from('<nope/>'));
    expect(reply).to.contain(
      "<error>unknown root element 'nope': expected &lt;create&gt; or &lt;transactions&gt;</error>",
    );
    expect(await count('invalid_request')).to.equal(before + 1);
  });
});
