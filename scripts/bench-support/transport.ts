/**
 * How the server under test and pgbench reach PostgreSQL: TCP to the admin URL's host and port,
 * or, with --pg-socket, the Unix-domain socket in a directory. Both sides always use the same
 * one, so the ratio to pgbench -N compares like with like.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ADMIN_URL } from './databases.js';

/** host: an address, or (starting with '/') a socket directory, as libpq and node-postgres read it. */
export type PgTransport = { host: string; port: string };

/** The admin URL's host and port, or its port's socket in socketDirectory. */
export function pgTransport(socketDirectory: string | null): PgTransport {
  const url = new URL(ADMIN_URL);
  return {
    host: socketDirectory ?? (decodeURIComponent(url.hostname) || '127.0.0.1'),
    port: url.port || '5432',
  };
}

const isSocket = (transport: PgTransport): boolean => transport.host.startsWith('/');

/** The socket file PostgreSQL listens on in the directory: named after the port. */
const socketFile = (transport: PgTransport): string => path.join(transport.host, `.s.PGSQL.${transport.port}`);

/** "tcp 127.0.0.1:5432" or "unix /var/run/postgresql/.s.PGSQL.5432", as reports name it. */
export function describeTransport(transport: PgTransport): string {
  return isSocket(transport) ? `unix ${socketFile(transport)}` : `tcp ${transport.host}:${transport.port}`;
}

/**
 * The URL of database `name` over the transport. A socket directory goes in percent-encoded as
 * the host: libpq, node-postgres and WHATWG URL all read that, so the server can still log it.
 */
export function transportUrl(transport: PgTransport, name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  if (isSocket(transport)) url.hostname = encodeURIComponent(transport.host);
  return url.toString();
}

/** Why the transport cannot work, told before any run rather than as a failed pgbench -i; or null. */
export function transportProblem(transport: PgTransport): string | null {
  if (!isSocket(transport) || existsSync(socketFile(transport))) return null;
  return `no PostgreSQL socket ${socketFile(transport)} (--pg-socket takes the directory of the socket; its name ends in the port of ADMIN_DATABASE_URL)`;
}
