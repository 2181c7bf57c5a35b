/**
 * ExchangeStore with a read-through cache in front of its reads. Only facts
 * that can never change once committed are cached, so no entry can go stale
 * and nothing needs invalidating:
 * the status of an order with nothing open (fully executed or canceled): its
 * fills and cancel are final, and its owner never changes. (Account existence,
 * also final, is remembered in process by the store: cheaper than Redis.)
 * A live order's status is always read from PostgreSQL. Entries are written only
 * after the transaction that produced them committed, and keys carry the
 * database instance id, so a reset database never meets old entries.
 */
import type {
  CancelResult, ExchangeStore, OrderStatus, PlaceOrderResult,
} from '../store/exchange-store.js';
import type { ReadCache } from './read-cache.js';

/** A final order status as cached: who owns it, and what it will always be. */
type FinalOrder = { owner: string; status: OrderStatus };

export class CachedExchangeStore implements ExchangeStore {
  private constructor(
    private readonly store: ExchangeStore,
    private readonly cache: ReadCache,
    private readonly keyPrefix: string,
  ) {}

  /** The key prefix names the database instance: `exchange:<instance id>:`. */
  static async create(store: ExchangeStore, cache: ReadCache): Promise<CachedExchangeStore> {
    return new CachedExchangeStore(store, cache, `exchange:${await store.instanceId()}:`);
  }

  instanceId(): Promise<string> {
    return this.store.instanceId();
  }

  createAccount(accountId: string, balance: string): Promise<boolean> {
    return this.store.createAccount(accountId, balance);
  }

  ensureSymbol(sym: string): Promise<void> {
    return this.store.ensureSymbol(sym);
  }

  addShares(accountId: string, sym: string, shares: string): Promise<string | null> {
    return this.store.addShares(accountId, sym, shares);
  }

  placeOrder(accountId: string, sym: string, amount: string, limit: string): Promise<PlaceOrderResult> {
    return this.store.placeOrder(accountId, sym, amount, limit);
  }

  /** Not cached in Redis: the store remembers existing accounts in process, which is faster still. */
  accountExists(accountId: string): Promise<boolean> {
    return this.store.accountExists(accountId);
  }

  async orderStatus(accountId: string, orderId: string): Promise<OrderStatus | null> {
    const cached = await this.finalOrder(orderId);
    if (cached) return cached.owner === accountId ? cached.status : null;
    const status = await this.store.orderStatus(accountId, orderId);
    if (status !== null && isFinal(status)) await this.remember(orderId, { owner: accountId, status });
    return status;
  }

  async cancelOrder(accountId: string, orderId: string): Promise<CancelResult> {
    // A final order can only ever answer "nothing open" (or "unknown" to other accounts).
    const cached = await this.finalOrder(orderId);
    if (cached) return { outcome: cached.owner === accountId ? 'nothing open' : 'unknown order' };
    const result = await this.store.cancelOrder(accountId, orderId);
    if (result.outcome === 'canceled') {
      // The cancel has committed; the order's status is now final.
      await this.remember(orderId, {
        owner: accountId,
        status: { openShares: '0', canceled: { shares: result.shares, time: result.time }, fills: result.fills },
      });
    }
    return result;
  }

  private orderKey(orderId: string): string {
    // Canonical id, so "007" and "7" share one entry.
    return `${this.keyPrefix}order:${BigInt(orderId).toString()}`;
  }

  private async finalOrder(orderId: string): Promise<FinalOrder | null> {
    const text = await this.cache.get(this.orderKey(orderId));
    if (text === null) return null;
    try {
      return JSON.parse(text) as FinalOrder;
    } catch {
      return null;
    }
  }

  private remember(orderId: string, order: FinalOrder): Promise<void> {
    return this.cache.set(this.orderKey(orderId), JSON.stringify(order));
  }
}

function isFinal(status: OrderStatus): boolean {
  return /^0*(\.0*)?$/.test(status.openShares);
}
