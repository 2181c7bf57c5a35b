/**
 * Runs one order per symbol at a time in this process. Orders of one symbol
 * contend for the same resting orders; started together under SERIALIZABLE,
 * all but one would be aborted and retried. Queued here instead, each takes its
 * snapshot after the previous one committed. Correctness never depends on this
 * (other processes are not covered); it only avoids doomed work.
 */
import pLimit, { type LimitFunction } from 'p-limit';

export class SymbolLanes {
  private readonly lanes = new Map<string, LimitFunction>();

  run<T>(sym: string, work: () => Promise<T>): Promise<T> {
    let lane = this.lanes.get(sym);
    if (!lane) {
      lane = pLimit(1);
      this.lanes.set(sym, lane);
    }
    const current = lane;
    return current(work).finally(() => {
      // Forget idle lanes so the map stays as small as the set of busy symbols.
      if (current.activeCount === 0 && current.pendingCount === 0 && this.lanes.get(sym) === current) this.lanes.delete(sym);
    });
  }
}
