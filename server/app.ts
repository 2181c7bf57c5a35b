/** Glue: request bytes -> parse -> dispatch -> reply document. No sockets here. */
import { dispatch } from './handlers/index.js';
import { parseRequestInSlices } from './protocol/parse-request.js';
import { renderRequestError, renderResults } from './protocol/render-reply.js';
import type { ReplyElement } from './protocol/replies.js';
import type { ExchangeStore } from './store/exchange-store.js';
import { metrics } from './observability/metrics.js';
import { log } from './log.js';
import { detailedProblem, problem, type Problem } from './errors.js';

export type ProcessorOptions = { slowRequestMs: number };

function count(results: readonly ReplyElement[]): void {
  for (const result of results) {
    metrics.results.inc({ result: result.name });
    if (result.code !== undefined) metrics.errors.inc({ code: result.code });
    if (result.name === 'opened') metrics.ordersOpened.inc();
    else if (result.name === 'canceled') metrics.cancels.inc();
  }
}

export function createRequestProcessor(
  store: ExchangeStore,
  options: ProcessorOptions = { slowRequestMs: 1_000 },
): (body: Buffer) => Promise<string> {
  return async (body) => {
    const started = process.hrtime.bigint();
    const request = await parseRequestInSlices(body);
    const root = request.kind === 'error' ? 'invalid' : request.kind;
    let reply: string;
    const requestError = (why: Problem) => {
      metrics.results.inc({ result: 'error' });
      metrics.errors.inc({ code: why.code });
      return renderRequestError(why);
    };
    if (request.kind === 'error') {
      reply = requestError(detailedProblem('invalid_request', request.message));
    } else {
      try {
        const results = await dispatch(store, request);
        count(results);
        reply = renderResults(results);
      } catch (error) {
        // Handlers turn store failures into per-item errors; this is a last resort.
        log.error('unexpected failure processing a request', {
          error: error instanceof Error ? error.stack : String(error),
        });
        reply = requestError(problem('request_failed'));
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics.requests.inc({ root });
    metrics.requestDuration.observe({ root }, seconds);
    if (seconds * 1000 > options.slowRequestMs) {
      log.warn('slow request', { root, ms: Math.round(seconds * 1000), bytes: body.length });
    }
    return reply;
  };
}
