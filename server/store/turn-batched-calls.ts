/**
 * Calls from a worker to the primary over one channel (forwarded writes, forwarded
 * durability waits): the calls of one event-loop turn travel as one message under an id,
 * and the answer to that id settles each of them. What a failure means depends on the
 * call, so the caller says it: a call that never reached the primary (the send failed, or
 * the channel closed first), and one the primary held when it went away.
 */
type Pending<Item, Result> = { item: Item; resolve: (result: Result) => void; reject: (error: unknown) => void };

/** One call's answer: its result, or why it failed. */
export type Settlement<Result> = { ok: true; value: Result } | { ok: false; error: unknown };

export type CallFailures = {
  /** A call that never reached the other side; reason says why. */
  notSent: (reason: Error) => Error;
  /** A call the other side held when it went away; reason says why. */
  lost: (reason: Error) => Error;
};

export class TurnBatchedCalls<Item, Result> {
  private nextId = 1;
  private outgoing: Array<Pending<Item, Result>> = [];
  private readonly sent = new Map<number, Array<Pending<Item, Result>>>();
  private gone: Error | null = null;

  constructor(
    /** Sends one message of calls; calls back with an error if it could not be sent. */
    private readonly send: (id: number, items: Item[], sent: (error: Error | null) => void) => void,
    private readonly failures: CallFailures,
  ) {}

  /** Calls waiting for an answer (sent or not yet). */
  get pendingCount(): number {
    let count = this.outgoing.length;
    for (const group of this.sent.values()) count += group.length;
    return count;
  }

  call(item: Item): Promise<Result> {
    if (this.gone) return Promise.reject(this.failures.notSent(this.gone));
    return new Promise<Result>((resolve, reject) => {
      this.outgoing.push({ item, resolve, reject });
      if (this.outgoing.length === 1) setImmediate(() => this.sendOutgoing());
    });
  }

  private sendOutgoing(): void {
    const group = this.outgoing;
    this.outgoing = [];
    if (group.length === 0) return;
    if (this.gone) {
      for (const pending of group) pending.reject(this.failures.notSent(this.gone));
      return;
    }
    const id = this.nextId++;
    this.sent.set(id, group);
    this.send(
      id,
      group.map((pending) => pending.item),
      (error) => {
        if (error === null || !this.sent.delete(id)) return;
        for (const pending of group) pending.reject(this.failures.notSent(error));
      },
    );
  }

  /** Settles the calls sent under id, each as settle says for it and its place; nothing if none wait. */
  answer(id: number, settle: (item: Item, index: number) => Settlement<Result>): void {
    const group = this.sent.get(id);
    if (!group) return;
    this.sent.delete(id);
    group.forEach((pending, index) => {
      const settled = settle(pending.item, index);
      if (settled.ok) pending.resolve(settled.value);
      else pending.reject(settled.error);
    });
  }

  /** The other side went away: the calls it held are lost, and nothing more is sent. */
  close(reason: string): void {
    const gone = new Error(reason);
    this.gone = gone;
    for (const group of this.sent.values()) for (const pending of group) pending.reject(this.failures.lost(gone));
    this.sent.clear();
    const unsent = this.outgoing;
    this.outgoing = [];
    for (const pending of unsent) pending.reject(this.failures.notSent(gone));
  }
}
