/**
 * The bytes a process holds for its clients (requests read but not yet answered, replies
 * not yet sent), shared by all its connections. A connection that would take more than is
 * left stops reading and waits its turn: waiters are woken in arrival order as bytes are
 * released, so a large request is not passed over forever by small ones.
 */
export type BudgetWaiter = {
  /** Re-examines the connection; true when it no longer waits for the budget. */
  retry: () => boolean;
};

export class ByteBudget {
  private used = 0;
  private peak = 0;
  /** Waiters in arrival order (entries no longer in `members` are skipped). */
  private queue: BudgetWaiter[] = [];
  private head = 0;
  private readonly members = new Set<BudgetWaiter>();
  private waking = false;

  constructor(readonly limitBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  /** The most ever held at once. */
  get peakBytes(): number {
    return this.peak;
  }

  get waitingCount(): number {
    return this.members.size;
  }

  /**
   * True when `extra` more bytes fit. Whatever the limit, a connection may always go on
   * when no other holds anything (`own` is what the asker holds itself), so one request of
   * the largest size is always possible.
   */
  fits(extra: number, own: number): boolean {
    return this.used + extra <= this.limitBytes || this.used <= own;
  }

  get exhausted(): boolean {
    return this.used >= this.limitBytes;
  }

  /** Moves the charge by delta (negative: released, which wakes waiters). */
  adjust(delta: number): void {
    this.used += delta;
    if (this.used > this.peak) this.peak = this.used;
    if (delta < 0) this.wake();
  }

  /** Queues a waiter; one already waiting keeps its place. */
  wait(waiter: BudgetWaiter): void {
    if (this.members.has(waiter)) return;
    this.members.add(waiter);
    this.queue.push(waiter);
  }

  cancel(waiter: BudgetWaiter): void {
    this.members.delete(waiter);
  }

  /** Oldest first; stops at the first waiter that still cannot go on (it keeps the head). */
  private wake(): void {
    if (this.waking) return;
    this.waking = true;
    try {
      while (this.head < this.queue.length) {
        const waiter = this.queue[this.head] as BudgetWaiter;
        if (this.members.has(waiter)) {
          if (!waiter.retry()) break;
          this.members.delete(waiter);
        }
        this.head++;
      }
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
    } finally {
      this.waking = false;
    }
  }
}
