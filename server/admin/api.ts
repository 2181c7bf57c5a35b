/**
 * The operator's HTTP API and dashboard, served on the metrics port: routes,
 * parameter checks, the token check and JSON rendering. The queries live in
 * store/operator-reads.ts; nothing here knows SQL, and nothing here writes.
 *
 *   GET /                       the dashboard (dashboard-page.ts)
 *   GET /api/symbols            every symbol: best bid and ask, last price, volume
 *   GET /api/book/SYM?depth=N   the book by price level, best first (N: 1-1000, default 20)
 *   GET /api/trades/SYM?limit=N the latest executions, newest first (N: 1-1000, default 50)
 *   GET /api/accounts/ID?orders=N  private (ADMIN_TOKEN): balance, reservations, positions,
 *                               open orders (the oldest N: 1-1000, default 100)
 *   GET /api/stats              the last minutes of requests/s, orders/s and latency
 */
import { accountIdProblem, symbolProblem } from '../protocol/fields.js';
import type { HttpReply, HttpRequest } from '../observability/http.js';
import type { HistoryPoint } from '../observability/history.js';
import { READ_LIMITS, type OperatorReads } from '../store/operator-reads.js';
import { DASHBOARD_ASSETS } from './dashboard-page.js';
import { tokenMatches } from './auth.js';
import { log } from '../log.js';

export type OperatorApiOptions = {
  reads: OperatorReads;
  /** null: /api/accounts is off (404). */
  adminToken: string | null;
  history: () => HistoryPoint[];
};

export const DEFAULTS = { depth: 20, trades: 50, openOrders: 100 } as const;

const JSON_HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

function json(status: number, value: unknown, headers: Record<string, string> = {}): HttpReply {
  return {
    status,
    contentType: 'application/json; charset=utf-8',
    body: `${JSON.stringify(value)}\n`,
    headers: { ...JSON_HEADERS, ...headers },
  };
}

function problem(status: number, message: string, headers: Record<string, string> = {}): HttpReply {
  return json(status, { error: message }, headers);
}

class BadRequest extends Error {}

/** A whole number from 1 to max, or the default when the parameter is absent. */
function count(url: URL, name: string, fallback: number, max: number): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  if (!/^\d{1,7}$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new BadRequest(`${name} must be a whole number from 1 to ${max}`);
  }
  return Number(text);
}

function pathPart(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new BadRequest('malformed percent-encoding in the path');
  }
}

function symbolIn(text: string): string {
  const sym = pathPart(text);
  const why = symbolProblem(sym);
  if (why !== null) throw new BadRequest(why);
  return sym;
}

export function operatorRoutes(options: OperatorApiOptions): (request: HttpRequest) => Promise<HttpReply | null> {
  const { reads, adminToken } = options;

  const api = async (request: HttpRequest, parts: string[]): Promise<HttpReply> => {
    const [resource, argument, ...rest] = parts;
    if (rest.length > 0) return problem(404, 'not found');
    if (resource === 'symbols' && argument === undefined) return json(200, await reads.symbols());
    if (resource === 'stats' && argument === undefined)
      return json(200, { intervalSeconds: 1, points: options.history() });
    if (resource === 'book' && argument !== undefined) {
      const sym = symbolIn(argument);
      const book = await reads.book(sym, count(request.url, 'depth', DEFAULTS.depth, READ_LIMITS.depth));
      return book === null ? problem(404, `unknown symbol ${sym}`) : json(200, book);
    }
    if (resource === 'trades' && argument !== undefined) {
      const sym = symbolIn(argument);
      const trades = await reads.trades(sym, count(request.url, 'limit', DEFAULTS.trades, READ_LIMITS.trades));
      return trades === null ? problem(404, `unknown symbol ${sym}`) : json(200, trades);
    }
    if (resource === 'accounts' && argument !== undefined) {
      // Off without a configured token: as if the endpoint did not exist.
      if (adminToken === null)
        return problem(404, 'the account API is off: the server was started without ADMIN_TOKEN');
      // The same answer for a missing and a wrong token.
      if (!tokenMatches(adminToken, request.headers.authorization)) {
        return problem(401, 'this endpoint needs the operator token: Authorization: Bearer <ADMIN_TOKEN>', {
          'www-authenticate': 'Bearer realm="exchange-operator"',
        });
      }
      const id = pathPart(argument);
      const why = accountIdProblem(id);
      if (why !== null) throw new BadRequest(why);
      const account = await reads.account(
        id,
        count(request.url, 'orders', DEFAULTS.openOrders, READ_LIMITS.openOrders),
      );
      return account === null ? problem(404, `unknown account ${id}`) : json(200, account);
    }
    return problem(404, 'not found: /api/symbols, /api/book/SYM, /api/trades/SYM, /api/accounts/ID, /api/stats');
  };

  return async (request) => {
    const path = request.url.pathname;
    const asset = DASHBOARD_ASSETS.get(path);
    if (asset && request.method === 'GET') {
      return { status: 200, contentType: asset.contentType, body: asset.body, headers: asset.headers };
    }
    if (path !== '/api' && !path.startsWith('/api/')) return null;
    if (request.method !== 'GET') return problem(405, 'read-only: only GET is served', { allow: 'GET' });
    try {
      return await api(request, path.split('/').slice(2));
    } catch (error) {
      if (error instanceof BadRequest) return problem(400, error.message);
      log.warn('operator API request failed', { path, error: error instanceof Error ? error.message : String(error) });
      return problem(503, 'the database did not answer in time; try again');
    }
  };
}
