/**
 * A reference model of SPEC.md's exchange (<create>, <transactions>, Matching, Invariants),
 * written to be checked against SPEC in one sitting: plain maps and arrays, one order at a
 * time, no I/O, exact decimals. It is the oracle the matcher (schema/002_matching.sql) is
 * compared with in tests/integration/model-vs-database.test.ts; speed does not matter here.
 *
 * It speaks in typed requests and replies rather than XML. Order ids are the model's own
 * (1, 2, 3... in arrival order); a test maps them to the server's. Times are whatever the
 * caller passes as `now` (a test passes its step number and checks the server's epoch
 * seconds against that step's bounds). Rejections are named by what went wrong, not by
 * the server's wording, which SPEC leaves open.
 */
import { Decimal } from './exact-decimal.js';

/** Why a child was refused, in SPEC's terms. */
export type Rejection =
  | 'account already exists'
  | 'unknown account'
  | 'insufficient funds'
  | 'insufficient shares'
  /** A sell of a symbol that was never created: the seller holds no position in it. */
  | 'unknown symbol'
  /** Unknown id, or another account's order: indistinguishable by design. */
  | 'unknown order'
  | 'nothing open'
  /** <transactions> of an unknown account with no children: SPEC gives one <error id>. */
  | 'no children';

export type Attributes = Record<string, string>;

export type StatusPart<Time> =
  | { name: 'open'; shares: string }
  | { name: 'canceled'; shares: string; time: Time }
  | { name: 'executed'; shares: string; price: string; time: Time };

export type ModelReply<Time> =
  | { name: 'created' | 'opened'; attributes: Attributes }
  | { name: 'error'; attributes: Attributes; rejection: Rejection }
  /** <status id> for a query, <canceled id> for a cancel. */
  | { name: 'status' | 'canceled'; attributes: Attributes; parts: Array<StatusPart<Time>> };

export type CreateChild =
  | { kind: 'account'; id: string; balance: string }
  | { kind: 'symbol'; sym: string; grants: Array<{ id: string; shares: string }> };

/** Numbers as sent (they are echoed exactly); ids as sent. */
export type TransactionChild =
  | { kind: 'order'; sym: string; amount: string; limit: string }
  | { kind: 'query'; id: string }
  | { kind: 'cancel'; id: string };

type Account = { balance: Decimal; positions: Map<string, Decimal> };

type Fill<Time> = { shares: Decimal; price: Decimal; time: Time };

type Order<Time> = {
  id: string;
  account: string;
  sym: string;
  /** Signed as sent: positive buys, negative sells. */
  amount: Decimal;
  limit: Decimal;
  open: Decimal;
  canceled: { shares: Decimal; time: Time } | null;
  /** Oldest first. */
  fills: Array<Fill<Time>>;
};

export type Execution<Time> = { buyId: string; sellId: string; shares: string; price: string; time: Time };

/** The whole state, in canonical decimal text, for comparison with the database. */
export type ModelState<Time> = {
  balances: Record<string, string>;
  /** Non-zero positions, as "account/sym" -> shares. */
  positions: Record<string, string>;
  symbols: string[];
  orders: Array<{
    id: string;
    account: string;
    sym: string;
    amount: string;
    limit: string;
    open: string;
    canceled: string | null;
    canceledAt: Time | null;
  }>;
  /** In execution order. */
  executions: Array<Execution<Time>>;
};

const isBuy = (order: { amount: Decimal }): boolean => order.amount.isPositive();

export class ReferenceExchange<Time> {
  private readonly accounts = new Map<string, Account>();
  private readonly symbols = new Set<string>();
  /** Every order ever opened, in arrival order (so also in id order). */
  private readonly orders: Array<Order<Time>> = [];
  private readonly ordersById = new Map<string, Order<Time>>();
  private readonly executions: Array<Execution<Time>> = [];
  private lastId = 0;
  /** What <create> gave out, for the SPEC invariants. */
  private cashCreated = Decimal.ZERO;
  private readonly sharesCreated = new Map<string, Decimal>();

  // ---------------------------------------------------------------------------------------
  // <create>: children in document order, each on its own.
  // ---------------------------------------------------------------------------------------

  create(children: readonly CreateChild[]): Array<ModelReply<Time>> {
    const replies: Array<ModelReply<Time>> = [];
    for (const child of children) {
      if (child.kind === 'account') {
        replies.push(this.createAccount(child.id, child.balance));
      } else {
        // The symbol is created whether or not its accounts exist.
        this.symbols.add(child.sym);
        for (const grant of child.grants) replies.push(this.addShares(child.sym, grant.id, grant.shares));
      }
    }
    return replies;
  }

  private createAccount(id: string, balance: string): ModelReply<Time> {
    if (this.accounts.has(id)) return { name: 'error', attributes: { id }, rejection: 'account already exists' };
    this.accounts.set(id, { balance: Decimal.parse(balance), positions: new Map() });
    this.cashCreated = this.cashCreated.plus(Decimal.parse(balance));
    return { name: 'created', attributes: { id } };
  }

  private addShares(sym: string, id: string, shares: string): ModelReply<Time> {
    const account = this.accounts.get(id);
    if (!account) return { name: 'error', attributes: { sym, id }, rejection: 'unknown account' };
    const amount = Decimal.parse(shares);
    account.positions.set(sym, (account.positions.get(sym) ?? Decimal.ZERO).plus(amount));
    this.sharesCreated.set(sym, (this.sharesCreated.get(sym) ?? Decimal.ZERO).plus(amount));
    return { name: 'created', attributes: { sym, id } };
  }

  // ---------------------------------------------------------------------------------------
  // <transactions id>: children in document order.
  // ---------------------------------------------------------------------------------------

  transactions(accountId: string, children: readonly TransactionChild[], now: Time): Array<ModelReply<Time>> {
    if (!this.accounts.has(accountId)) {
      if (children.length === 0) return [{ name: 'error', attributes: { id: accountId }, rejection: 'no children' }];
      return children.map((child) => ({ name: 'error', attributes: echo(child), rejection: 'unknown account' }));
    }
    return children.map((child) => {
      switch (child.kind) {
        case 'order':
          return this.order(accountId, child.sym, child.amount, child.limit, now);
        case 'query':
          return this.query(accountId, child.id);
        case 'cancel':
          return this.cancel(accountId, child.id, now);
      }
    });
  }

  /** <order>: reserve, open, then match, as one step. */
  order(accountId: string, sym: string, amountText: string, limitText: string, now: Time): ModelReply<Time> {
    const attributes = { sym, amount: amountText, limit: limitText };
    const account = this.accounts.get(accountId);
    if (!account) return { name: 'error', attributes, rejection: 'unknown account' };
    const amount = Decimal.parse(amountText);
    const limit = Decimal.parse(limitText);
    const shares = amount.abs();
    if (amount.isPositive()) {
      // Reserve the most the buy can cost.
      const cost = shares.times(limit);
      if (account.balance.compare(cost) < 0) return { name: 'error', attributes, rejection: 'insufficient funds' };
      account.balance = account.balance.minus(cost);
      // A buy of a never-created symbol opens, and the symbol exists from then on.
      this.symbols.add(sym);
    } else {
      if (!this.symbols.has(sym)) return { name: 'error', attributes, rejection: 'unknown symbol' };
      const held = account.positions.get(sym) ?? Decimal.ZERO;
      if (held.compare(shares) < 0) return { name: 'error', attributes, rejection: 'insufficient shares' };
      account.positions.set(sym, held.minus(shares));
    }
    this.lastId += 1;
    const order: Order<Time> = {
      id: String(this.lastId),
      account: accountId,
      sym,
      amount,
      limit,
      open: shares,
      canceled: null,
      fills: [],
    };
    this.orders.push(order);
    this.ordersById.set(order.id, order);
    this.match(order, now);
    return { name: 'opened', attributes: { ...attributes, id: order.id } };
  }

  /**
   * Matching: the incoming order takes the compatible resting orders of the other side,
   * best price first, then earliest; each fill is at the resting order's limit.
   */
  private match(incoming: Order<Time>, now: Time): void {
    const book = this.orders
      .filter(
        (resting) =>
          resting !== incoming &&
          resting.sym === incoming.sym &&
          isBuy(resting) !== isBuy(incoming) &&
          resting.open.isPositive() &&
          (isBuy(incoming) ? resting.limit.compare(incoming.limit) <= 0 : resting.limit.compare(incoming.limit) >= 0),
      )
      .sort(
        (a, b) =>
          (isBuy(incoming) ? a.limit.compare(b.limit) : b.limit.compare(a.limit)) || Number(a.id) - Number(b.id),
      );
    for (const resting of book) {
      if (incoming.open.isZero()) break;
      const shares = incoming.open.min(resting.open);
      const buy = isBuy(incoming) ? incoming : resting;
      const sell = isBuy(incoming) ? resting : incoming;
      this.fill(buy, sell, shares, resting.limit, now);
    }
  }

  /** One fill, settled at once: SPEC Matching rule 5. */
  private fill(buy: Order<Time>, sell: Order<Time>, shares: Decimal, price: Decimal, now: Time): void {
    const buyer = this.account(buy.account);
    const seller = this.account(sell.account);
    buy.open = buy.open.minus(shares);
    sell.open = sell.open.minus(shares);
    seller.balance = seller.balance.plus(shares.times(price));
    buyer.positions.set(buy.sym, (buyer.positions.get(buy.sym) ?? Decimal.ZERO).plus(shares));
    // The buy reserved shares x its limit; it pays shares x price.
    buyer.balance = buyer.balance.plus(shares.times(buy.limit.minus(price)));
    buy.fills.push({ shares, price, time: now });
    sell.fills.push({ shares, price, time: now });
    this.executions.push({
      buyId: buy.id,
      sellId: sell.id,
      shares: shares.toString(),
      price: price.toString(),
      time: now,
    });
  }

  /** <query id>. */
  query(accountId: string, id: string): ModelReply<Time> {
    const order = this.ownOrder(accountId, id);
    if (!order) return { name: 'error', attributes: { id }, rejection: 'unknown order' };
    const parts: Array<StatusPart<Time>> = [];
    if (order.open.isPositive()) parts.push({ name: 'open', shares: order.open.toString() });
    else if (order.canceled)
      parts.push({ name: 'canceled', shares: order.canceled.shares.toString(), time: order.canceled.time });
    parts.push(...this.executed(order));
    return { name: 'status', attributes: { id }, parts };
  }

  /** <cancel id>: the open part is canceled and refunded, once. */
  cancel(accountId: string, id: string, now: Time): ModelReply<Time> {
    const order = this.ownOrder(accountId, id);
    if (!order) return { name: 'error', attributes: { id }, rejection: 'unknown order' };
    if (!order.open.isPositive()) return { name: 'error', attributes: { id }, rejection: 'nothing open' };
    const shares = order.open;
    const account = this.account(accountId);
    if (isBuy(order)) account.balance = account.balance.plus(shares.times(order.limit));
    else account.positions.set(order.sym, (account.positions.get(order.sym) ?? Decimal.ZERO).plus(shares));
    order.open = Decimal.ZERO;
    order.canceled = { shares, time: now };
    return {
      name: 'canceled',
      attributes: { id },
      parts: [{ name: 'canceled', shares: shares.toString(), time: now }, ...this.executed(order)],
    };
  }

  private executed(order: Order<Time>): Array<StatusPart<Time>> {
    return order.fills.map((fill) => ({
      name: 'executed',
      shares: fill.shares.toString(),
      price: fill.price.toString(),
      time: fill.time,
    }));
  }

  /** An account never sees another account's orders. */
  private ownOrder(accountId: string, id: string): Order<Time> | undefined {
    const order = this.ordersById.get(id);
    return order && order.account === accountId ? order : undefined;
  }

  private account(id: string): Account {
    const account = this.accounts.get(id);
    if (!account) throw new Error(`model: account ${id} vanished`);
    return account;
  }

  // ---------------------------------------------------------------------------------------
  // Reading the model.
  // ---------------------------------------------------------------------------------------

  hasAccount(id: string): boolean {
    return this.accounts.has(id);
  }

  /** The account that opened an order (undefined for an unknown id). */
  ownerOf(id: string): string | undefined {
    return this.ordersById.get(id)?.account;
  }

  /** What <create> gave out: SPEC's "cash created" and "shares created" per symbol. */
  created(): { cash: string; shares: Record<string, string> } {
    const shares: Record<string, string> = {};
    for (const [sym, total] of this.sharesCreated) shares[sym] = total.toString();
    return { cash: this.cashCreated.toString(), shares };
  }

  state(): ModelState<Time> {
    const balances: Record<string, string> = {};
    const positions: Record<string, string> = {};
    for (const [id, account] of this.accounts) {
      balances[id] = account.balance.toString();
      for (const [sym, shares] of account.positions) {
        if (!shares.isZero()) positions[`${id}/${sym}`] = shares.toString();
      }
    }
    return {
      balances,
      positions,
      symbols: [...this.symbols].sort(),
      orders: this.orders.map((order) => ({
        id: order.id,
        account: order.account,
        sym: order.sym,
        amount: order.amount.toString(),
        limit: order.limit.toString(),
        open: order.open.toString(),
        canceled: order.canceled ? order.canceled.shares.toString() : null,
        canceledAt: order.canceled ? order.canceled.time : null,
      })),
      executions: [...this.executions],
    };
  }
}

/** The attributes an error reply echoes: an order's as sent, or the id. */
function echo(child: TransactionChild): Attributes {
  return child.kind === 'order' ? { sym: child.sym, amount: child.amount, limit: child.limit } : { id: child.id };
}
