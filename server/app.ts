/** Glue: request bytes -> parse -> dispatch -> reply document. No sockets here. */
import { dispatch } from './handlers/index.js';
import { parseRequest } from './protocol/parse-request.js';
import { renderRequestError, renderResults } from './protocol/render-reply.js';
import type { ExchangeStore } from './store/exchange-store.js';
import { log } from './log.js';

export function createRequestProcessor(store: ExchangeStore): (body: Buffer) => Promise<string> {
  return async (body) => {
    const request = parseRequest(body);
    if (request.kind === 'error') return renderRequestError(request.message);
    try {
      return renderResults(await dispatch(store, request));
    } catch (error) {
      // Handlers turn store failures into per-item errors; this is a last resort.
      log.error('unexpected failure processing a request', { error: error instanceof Error ? error.stack : String(error) });
      return renderRequestError('internal error: the request could not be completed');
    }
  };
}
