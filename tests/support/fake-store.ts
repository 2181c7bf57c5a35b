/**
 * An in-memory ExchangeStore for unit tests of the handlers: what a handler does with
 * each answer or failure of the store, without a database. It keeps accounts, symbols,
 * positions and orders, but does no matching and checks no funds: matching and its
 * rules are tested against the real PostgreSQL (tests/integration). Tests script the
 * rest: a rejection, a failure (an exception the store would throw), fills of an order.
 */
import type {
  AddSharesRejection,
  CancelResult,
  ExchangeStore,
  Fill,
  OrderRejection,
  OrderStatus,
  PlaceOrderResult,
} from '../../server/store/exchange-store.js';

type Method = Exclude<keyof ExchangeStore, 'instanceId'>;

type FakeOrder = {
  accountId: string;
  sym: string;
  /** As placed; the fake keeps it open until canceled (no matching). */
  openShares: string;
  canceled: { shares: string; time: string } | null;
  fills: Fill[];
};

export class FakeExchangeStore implements ExchangeStore {
  /** Every call, in order, with its arguments: to check what a handler did not call. */
  readonly calls: Array<{ method: Method; args: string[] }> = [];
  readonly accounts = new Map<string, string>();
  readonly symbols = new Set<string>();
  /** `${accountId}/${sym}` -> shares, as the last grant gave them (no sums: not the fake's job). */
  readonly positions = new Map<string, string>();
  readonly orders = new Map<string, FakeOrder>();
  private nextOrderId = 1;
  private clock = 1_700_000_000;
  private readonly failures = new Map<Method, unknown[]>();
  private readonly orderRejections: OrderRejection[] = [];

  /** The next `times` calls of `method` throw `error` (as the real store throws its typed errors). */
  failNext(method: Method, error: unknown, times = 1): this {
    this.failures.set(method, [...(this.failures.get(method) ?? []), ...Array<unknown>(times).fill(error)]);
    return this;
  }

  /** The next placeOrder is refused with this code (the matching functions' answer). */
  rejectNextOrder(rejection: OrderRejection): this {
    this.orderRejections.push(rejection);
    return this;
  }

  /** Records executions of an order; `open` is what stays open afterwards. */
  fill(orderId: string, fills: Fill[], open: string): this {
    const order = this.orders.get(orderId);
    if (!order) throw new Error(`no order ${orderId} in the fake store`);
    order.fills.push(...fills);
    order.openShares = open;
    return this;
  }

  callsOf(method: Method): string[][] {
    return this.calls.filter((call) => call.method === method).map((call) => call.args);
  }

  private enter(method: Method, args: string[]): void {
    this.calls.push({ method, args });
    const queued = this.failures.get(method);
    if (queued && queued.length > 0) throw queued.shift();
  }

  async instanceId(): Promise<string> {
    return 'fake';
  }

  async createAccount(accountId: string, balance: string): Promise<boolean> {
    this.enter('createAccount', [accountId, balance]);
    if (this.accounts.has(accountId)) return false;
    this.accounts.set(accountId, balance);
    return true;
  }

  async ensureSymbol(sym: string): Promise<void> {
    this.enter('ensureSymbol', [sym]);
    this.symbols.add(sym);
  }

  async addShares(accountId: string, sym: string, shares: string): Promise<AddSharesRejection | null> {
    this.enter('addShares', [accountId, sym, shares]);
    if (!this.accounts.has(accountId)) return 'unknown_account';
    if (!this.symbols.has(sym)) return 'unknown_symbol';
    this.positions.set(`${accountId}/${sym}`, shares);
    return null;
  }

  async accountExists(accountId: string): Promise<boolean> {
    this.enter('accountExists', [accountId]);
    return this.accounts.has(accountId);
  }

  async placeOrder(accountId: string, sym: string, amount: string, limit: string): Promise<PlaceOrderResult> {
    this.enter('placeOrder', [accountId, sym, amount, limit]);
    const rejection = this.orderRejections.shift();
    if (rejection !== undefined) return { opened: false, rejection };
    if (!this.accounts.has(accountId)) return { opened: false, rejection: 'unknown_account' };
    const orderId = String(this.nextOrderId++);
    const openShares = amount.startsWith('-') ? amount.slice(1) : amount;
    this.orders.set(orderId, { accountId, sym, openShares, canceled: null, fills: [] });
    return { opened: true, orderId, fills: 0 };
  }

  async orderStatus(accountId: string, orderId: string): Promise<OrderStatus | null> {
    this.enter('orderStatus', [accountId, orderId]);
    const order = this.orders.get(orderId);
    if (!order || order.accountId !== accountId) return null;
    return { openShares: order.openShares, canceled: order.canceled, fills: [...order.fills] };
  }

  async cancelOrder(accountId: string, orderId: string): Promise<CancelResult> {
    this.enter('cancelOrder', [accountId, orderId]);
    const order = this.orders.get(orderId);
    if (!order || order.accountId !== accountId) return { outcome: 'unknown_order' };
    if (order.openShares === '0') return { outcome: 'nothing_open' };
    order.canceled = { shares: order.openShares, time: String(this.clock++) };
    order.openShares = '0';
    return { outcome: 'canceled', shares: order.canceled.shares, time: order.canceled.time, fills: [...order.fills] };
  }
}
