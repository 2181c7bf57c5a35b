/**
 * Runs submitted items one batch at a time: the first item of an idle queue
 * runs at once; items arriving meanwhile wait and then run together, in
 * arrival order. The store uses one queue for writes (one transaction and one
 * commit per batch: group commit; every reply waits for that commit) and one
 * for order-status reads (one statement per batch).
 */
type Pending<In, Out> = { item: In; resolve: (result: Out) => void; reject: (error: unknown) => void };

export class BatchQueue<In, Out> {
  private queue: Array<Pending<In, Out>> = [];
  private running = false;

  constructor(
    /** Runs items in order; one settled result per item. */
    private readonly runBatch: (items: In[]) => Promise<Array<PromiseSettledResult<Out>>>,
    private readonly maxBatch: number,
  ) {}

  submit(item: In): Promise<Out> {
    const result = new Promise<Out>((resolve, reject) => this.queue.push({ item, resolve, reject }));
    if (!this.running) void this.drain();
    return result;
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const results = await this.runBatch(batch.map((pending) => pending.item));
        batch.forEach((pending, index) => {
          const result = results[index];
          if (result?.status === 'fulfilled') pending.resolve(result.value);
          else pending.reject(result?.reason ?? new Error('batch returned no result'));
        });
      } catch (error) {
        for (const pending of batch) pending.reject(error);
      }
    }
    this.running = false;
  }
}
