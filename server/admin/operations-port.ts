/**
 * Everything served on METRICS_PORT, put together: /metrics and /healthz
 * (observability/http.ts), the dashboard and the operator API (api.ts) over a
 * small pool of their own, and the metrics history the dashboard plots. Run by
 * the one process of a single-process server, or by the primary of several.
 */
import type http from 'node:http';
import type { HealthReport } from '../observability/http.js';
import { startOperationsServer } from '../observability/http.js';
import { MetricsHistory } from '../observability/history.js';
import { OperatorReads } from '../store/operator-reads.js';
import { createPool } from '../store/pool.js';
import { operatorRoutes } from './api.js';
import { log } from '../log.js';

/**
 * Connections the operator API may hold: however many dashboards poll, they never
 * take the exchange's own pool, and at most this many of their queries run at once.
 */
export const OPERATOR_POOL_SIZE = 2;

export type OperationsPortOptions = {
  port: number;
  host: string;
  databaseUrl: string;
  adminToken: string | null;
  metrics: () => Promise<{ contentType: string; body: string }>;
  health: () => Promise<HealthReport>;
};

export type OperationsPort = { server: http.Server; close: () => Promise<void> };

export async function startOperationsPort(options: OperationsPortOptions): Promise<OperationsPort> {
  const pool = createPool({
    databaseUrl: options.databaseUrl,
    maxConnections: OPERATOR_POOL_SIZE,
    connectionTimeoutMs: 5_000,
    onIdleError: (error) => log.warn('idle operator API database connection lost', { error: error.message }),
  });
  const history = new MetricsHistory(async () => (await options.metrics()).body);
  try {
    const server = await startOperationsServer(options.port, options.host, {
      metrics: options.metrics,
      health: options.health,
      routes: operatorRoutes({
        reads: new OperatorReads(pool),
        adminToken: options.adminToken,
        history: () => history.history(),
      }),
    });
    history.start();
    log.info('metrics, health, dashboard and operator API on HTTP', {
      url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}/`,
      accountApi: options.adminToken === null ? 'off (no ADMIN_TOKEN)' : 'on',
    });
    return {
      server,
      close: async () => {
        history.stop();
        server.close();
        await pool.end().catch(() => undefined);
      },
    };
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}
