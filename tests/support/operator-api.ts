/** The operations port (dashboard, operator API, metrics) of a test server, on a random port. */
import type { AddressInfo } from 'node:net';
import { startOperationsPort, type OperationsPort } from '../../server/admin/operations-port.js';
import { registry } from '../../server/observability/metrics.js';

export type TestOperationsPort = OperationsPort & { base: string };

export async function startTestOperationsPort(
  databaseUrl: string,
  adminToken: string | null,
): Promise<TestOperationsPort> {
  const port = await startOperationsPort({
    port: 0,
    host: '127.0.0.1',
    databaseUrl,
    adminToken,
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    health: async () => ({ server: 'listening', postgres: 'ok', redis: 'off' }),
  });
  const { port: number } = port.server.address() as AddressInfo;
  return { ...port, base: `http://127.0.0.1:${number}` };
}

export type JsonAnswer = { status: number; body: unknown; headers: Headers };

export async function getJson(url: string, headers: Record<string, string> = {}): Promise<JsonAnswer> {
  const response = await fetch(url, { headers });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as unknown, headers: response.headers };
}
