/**
 * The real server as a child process in a process group of its own, so a test can
 * kill it for real: SIGKILL of the whole group takes the primary and every worker
 * down at once (WORKERS > 1), like a machine crash. A shape of process.ts's spawnServer.
 */
import { killAllServers, spawnServer, type ServerProcess, type SpawnServerOptions } from './process.js';

export { groupMembers, liveGroupMembers } from './process.js';

export type FaultServer = ServerProcess;

export type SpawnOptions = Pick<SpawnServerOptions, 'port' | 'listeners' | 'startTimeoutMs'>;

/**
 * Starts the server and waits until `listeners` processes report listening.
 * A restart on the same port retries briefly if the port is still held.
 */
export function spawnFaultServer(env: Record<string, string>, options: SpawnOptions = {}): Promise<FaultServer> {
  return spawnServer(env, { ...options, processGroup: true });
}

/** after() hooks: no server of ours outlives the test file, whatever failed. */
export const killAllFaultServers = killAllServers;
