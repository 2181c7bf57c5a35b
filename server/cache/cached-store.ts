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
 *
 * Redis is not trusted to hold only what we wrote: anyone who can reach it can write.
 * Each entry is "v1.<MAC>.<JSON>", the MAC an HMAC-SHA256 of the key and the JSON under
 * a secret only PostgreSQL holds (schema/003_cache_secret.sql), so an entry is bound to
 * this database and this order and cannot be forged or moved; anything else at a key
 * (another shape, a bad MAC, another order's entry) is a miss and is removed.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import type {
  AddSharesRejection,
  CancelResult,
  ExchangeStore,
  Fill,
  OrderStatus,
  PlaceOrderResult,
} from '../store/exchange-store.js';
import { loadCacheSecret } from './cache-secret.js';
import type { ReadCache } from './read-cache.js';

/** A final order status as cached: who owns it, and what it will always be. */
type FinalOrder = { owner: string; status: OrderStatus };

const ENTRY_PREFIX = 'v1.';
/** An HMAC-SHA256 in base64url. */
const MAC_LENGTH = 43;

export class CachedExchangeStore implements ExchangeStore {
  private constructor(
    private readonly store: ExchangeStore,
    private readonly cache: ReadCache,
    private readonly keyPrefix: string,
    private readonly secret: Buffer,
  ) {}

  /**
   * The key prefix names the database instance: `exchange:<instance id>:`; the signing
   * secret is read from the same database (the pool of the store).
   */
  static async create(
    store: ExchangeStore,
    cache: ReadCache,
    pool: Pick<pg.Pool, 'query'>,
  ): Promise<CachedExchangeStore> {
    return new CachedExchangeStore(store, cache, `exchange:${await store.instanceId()}:`, await loadCacheSecret(pool));
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

  addShares(accountId: string, sym: string, shares: string): Promise<AddSharesRejection | null> {
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
    if (cached) return { outcome: cached.owner === accountId ? 'nothing_open' : 'unknown_order' };
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

  private finalOrder(orderId: string): Promise<FinalOrder | null> {
    const key = this.orderKey(orderId);
    return this.cache.get(key, (text) => this.verified(key, text));
  }

  private remember(orderId: string, order: FinalOrder): Promise<void> {
    const key = this.orderKey(orderId);
    const payload = JSON.stringify(order);
    return this.cache.set(key, `${ENTRY_PREFIX}${this.mac(key, payload)}.${payload}`);
  }

  private mac(key: string, payload: string): string {
    return createHmac('sha256', this.secret).update(key).update('\n').update(payload).digest('base64url');
  }

  /** The entry's order if we wrote exactly this text at exactly this key; otherwise null. */
  private verified(key: string, text: string): FinalOrder | null {
    const macEnd = ENTRY_PREFIX.length + MAC_LENGTH;
    if (!text.startsWith(ENTRY_PREFIX) || text.charAt(macEnd) !== '.') return null;
    const payload = text.slice(macEnd + 1);
    const given = Buffer.from(text.slice(ENTRY_PREFIX.length, macEnd));
    const expected = Buffer.from(this.mac(key, payload));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    try {
      // Signed by us, so this is what remember() wrote; the shape is checked all the same,
      // so that no change to this code can ever make a wrong answer out of an old entry.
      return finalOrderOf(JSON.parse(payload));
    } catch {
      return null;
    }
  }
}

function isFinal(status: OrderStatus): boolean {
  return isFinalShares(status.openShares);
}

function isFinalShares(openShares: string): boolean {
  return /^0*(\.0*)?$/.test(openShares);
}

const ACCOUNT_ID = /^[0-9]{1,64}$/;
const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;
const SECONDS = /^[0-9]+$/;

type Fields = Record<string, unknown>;

function fields(value: unknown, names: readonly string[]): Fields | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const keys = Object.keys(value);
  return keys.length === names.length && names.every((name) => keys.includes(name)) ? (value as Fields) : null;
}

function text(value: unknown, pattern: RegExp): string | null {
  return typeof value === 'string' && pattern.test(value) ? value : null;
}

/** A FinalOrder exactly as remember() writes one, or null. */
function finalOrderOf(value: unknown): FinalOrder | null {
  const order = fields(value, ['owner', 'status']);
  const status = fields(order?.status, ['openShares', 'canceled', 'fills']);
  const owner = text(order?.owner, ACCOUNT_ID);
  if (!order || !status || owner === null) return null;
  const openShares = text(status.openShares, DECIMAL);
  if (openShares === null || !isFinalShares(openShares)) return null;
  let canceled: OrderStatus['canceled'] = null;
  if (status.canceled !== null) {
    const given = fields(status.canceled, ['shares', 'time']);
    const shares = text(given?.shares, DECIMAL);
    const time = text(given?.time, SECONDS);
    if (shares === null || time === null) return null;
    canceled = { shares, time };
  }
  if (!Array.isArray(status.fills)) return null;
  const fills: Fill[] = [];
  for (const item of status.fills as unknown[]) {
    const fill = fields(item, ['shares', 'price', 'time']);
    const shares = text(fill?.shares, DECIMAL);
    const price = text(fill?.price, DECIMAL);
    const time = text(fill?.time, SECONDS);
    if (shares === null || price === null || time === null) return null;
    fills.push({ shares, price, time });
  }
  // A final order is canceled or filled: an entry with neither is not one we write.
  if (canceled === null && fills.length === 0) return null;
  return { owner, status: { openShares, canceled, fills } };
}
