/** Which CPUs this process may use, and who used the CPU over a window (from /proc). */
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';

/** CPU ids this process may run on; in a container they need not start at 0. */
export function allowedCpus(): number[] {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Cpus_allowed_list:'));
  if (!line) return Array.from({ length: os.availableParallelism() }, (_, index) => index);
  const cpus: number[] = [];
  for (const part of line.split(':')[1]?.trim().split(',') ?? []) {
    const [from, to] = part.split('-').map(Number);
    if (from === undefined || Number.isNaN(from)) continue;
    for (let cpu = from; cpu <= (to ?? from); cpu++) cpus.push(cpu);
  }
  return cpus;
}

type ProcessTicks = { comm: string; ppid: number; ticks: number };
export type CpuSnapshot = { atMs: number; busyTicks: number; totalTicks: number; processes: Map<number, ProcessTicks> };
/** CPU use in cores (1.0 = one core busy for the whole window) and the machine's busy share. */
export type CpuUse = { server: number; postgres: number; client: number; other: number; machineBusyPercent: number };

const ticksPerSecond = 100; // USER_HZ; 100 on every Linux this runs on (getconf CLK_TCK)

function readProcessTicks(pid: number): ProcessTicks | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses; the fields after the last ')' are fixed.
    const comm = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const [utime = 0, stime = 0, cutime = 0, cstime = 0] = fields.slice(11, 15).map(Number);
    // For PostgreSQL also cutime + cstime, the CPU of the children it has reaped: backends that end
    // inside the window (a replaced pool connection) would be lost otherwise. Not for other
    // processes: a shell reaping a long job would book that job's whole life into the window.
    const reaped = comm === 'postgres' ? cutime + cstime : 0;
    return { comm, ppid: Number(fields[1]), ticks: utime + stime + reaped };
  } catch {
    return null; // the process ended between listing and reading
  }
}

export function cpuSnapshot(): CpuSnapshot {
  const cpuLine = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = cpuLine
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const busyTicks = user + nice + system + irq + softirq + steal;
  const processes = new Map<number, ProcessTicks>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ticks = readProcessTicks(Number(entry));
    if (ticks) processes.set(Number(entry), ticks);
  }
  return { atMs: Date.now(), busyTicks, totalTicks: busyTicks + idle + iowait, processes };
}

function descendsFrom(pid: number, ancestor: number, processes: Map<number, ProcessTicks>): boolean {
  for (let current: number | undefined = pid, hops = 0; current !== undefined && current > 1 && hops < 64; hops++) {
    if (current === ancestor) return true;
    current = processes.get(current)?.ppid;
  }
  return false;
}

/**
 * CPU between two snapshots: the server's process tree (user + sys), PostgreSQL's processes,
 * the client's process tree, and the rest of the machine.
 */
export function cpuUse(
  before: CpuSnapshot,
  after: CpuSnapshot,
  serverPid: number,
  clientPid: number,
  postmasterPid: number | null = null,
): CpuUse {
  const seconds = (after.atMs - before.atMs) / 1000;
  const use = { server: 0, postgres: 0, client: 0 };
  for (const [pid, now] of after.processes) {
    // A process born inside the window counts from zero.
    const delta = (now.ticks - (before.processes.get(pid)?.ticks ?? 0)) / ticksPerSecond / seconds;
    if (descendsFrom(pid, serverPid, after.processes)) use.server += delta;
    // The benchmark's PostgreSQL server when its postmaster is known (a shared machine runs others),
    // else every PostgreSQL process.
    else if (now.comm === 'postgres' && (postmasterPid === null || descendsFrom(pid, postmasterPid, after.processes)))
      use.postgres += delta;
    else if (descendsFrom(pid, clientPid, after.processes)) use.client += delta;
  }
  const busyShare = (after.busyTicks - before.busyTicks) / Math.max(1, after.totalTicks - before.totalTicks);
  // Everything else is what the machine did beyond the three of them (kernel, unrelated jobs),
  // taken as the remainder so short-lived processes elsewhere are not lost.
  const other = Math.max(0, busyShare * os.cpus().length - use.server - use.postgres - use.client);
  return { ...use, other, machineBusyPercent: 100 * busyShare };
}

/** "server / postgres / client / other (busy%)" in cores, for report tables; 'n/a' without a sample. */
export function formatCpuUse(use: CpuUse | null): string {
  return use
    ? `${use.server.toFixed(2)} / ${use.postgres.toFixed(2)} / ${use.client.toFixed(2)} / ${use.other.toFixed(2)} (${use.machineBusyPercent.toFixed(0)}%)`
    : 'n/a';
}
