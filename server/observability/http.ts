/**
 * The operations HTTP port: GET /metrics (Prometheus text) and GET /healthz
 * (200 once the exchange listens and while PostgreSQL answers, 503 otherwise;
 * Redis is reported, but a cache being down does not make the exchange unhealthy).
 * Other paths go to `routes` when given (the dashboard and operator API, server/admin/).
 */
import http from 'node:http';
import { log } from '../log.js';

export type HealthReport = {
  /** 'starting' until the exchange port listens (in a multi-process server: until a worker does). */
  server: 'listening' | 'starting';
  /** A multi-process server: its workers listening now, and how many it runs. */
  workers?: { listening: number; wanted: number };
  postgres: 'ok' | 'unreachable';
  redis: 'ok' | 'unreachable' | 'off';
};

export function isHealthy(health: HealthReport): boolean {
  return health.server === 'listening' && health.postgres === 'ok';
}

export type HttpReply = {
  status: number;
  contentType: string;
  body: string | Buffer;
  headers?: Record<string, string>;
};

/** What the routes see of a request: method, parsed URL (path and query), and its headers. */
export type HttpRequest = { method: string; url: URL; headers: http.IncomingHttpHeaders };

export type OperationsEndpoints = {
  metrics: () => Promise<{ contentType: string; body: string }>;
  health: () => Promise<HealthReport>;
  /** Answers any other path, or null for "not found". */
  routes?: (request: HttpRequest) => Promise<HttpReply | null>;
};

export function startOperationsServer(
  port: number,
  host: string,
  endpoints: OperationsEndpoints,
): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    const reply = (
      status: number,
      contentType: string,
      body: string | Buffer,
      headers: Record<string, string> = {},
    ) => {
      response.writeHead(status, { 'content-type': contentType, ...headers });
      response.end(body);
    };
    const route = async () => {
      if (endpoints.routes && request.url !== '/metrics' && request.url !== '/healthz') {
        const url = new URL(request.url ?? '/', 'http://operations');
        const answer = await endpoints.routes({ method: request.method ?? 'GET', url, headers: request.headers });
        if (answer) return reply(answer.status, answer.contentType, answer.body, answer.headers);
      }
      if (request.method !== 'GET') return reply(405, 'text/plain', 'method not allowed\n');
      if (request.url === '/metrics') {
        const { contentType, body } = await endpoints.metrics();
        return reply(200, contentType, body);
      }
      if (request.url === '/healthz') {
        const health = await endpoints.health();
        return reply(isHealthy(health) ? 200 : 503, 'application/json', `${JSON.stringify(health)}\n`);
      }
      return reply(
        404,
        'text/plain',
        `not found: try /metrics or /healthz${endpoints.routes ? ', / (dashboard) or /api/symbols' : ''}\n`,
      );
    };
    route().catch((error: unknown) => {
      log.warn('operations endpoint failed', { url: request.url, error: String(error) });
      if (!response.headersSent) reply(500, 'text/plain', 'internal error\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** true when the check resolves within the timeout. */
export async function reachable(check: () => Promise<unknown>, timeoutMs = 1_000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([
      check().then(
        () => true as const,
        () => false as const,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
