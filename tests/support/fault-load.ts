/**
 * A small load generator for fault tests, and the checks it enables. Every
 * order it sends carries a unique limit price, so each row of `orders` maps
 * back to exactly one request, and the client's view of each order (told
 * opened, told failed, or no answer) can be compared with what is in SQL.
 */
import type pg from 'pg';
import { LengthClient } from './client.js';
import { GrantLedger } from './ledger.js';
import { parseResults, type ReplyNode } from './xml.js';
import { pick, seededRandom } from '../../client/random.js';
import { codeOfMessage, type ErrorCode } from '../../server/errors.js';

export type SentOrder = { tag: number; account: string; sym: string; amount: string; limit: string; doomed: boolean };
export type AckedOrder = SentOrder & { id: string };

/** Errors that say the order was certainly not applied. */
const DEFINITIVE_REJECTIONS = new Set<ErrorCode | undefined>([
  'insufficient_funds',
  'insufficient_shares',
  'unknown_symbol',
  'unknown_account',
  'not_applied',
]);

/** What the clients were told about every order they sent, keyed by the order's unique limit. */
export class OrderLedger {
  private nextTag = 1;
  readonly sent = new Map<string, SentOrder>();
  readonly acked = new Map<string, AckedOrder>();
  /** Told `<error>` with a reason that means "not applied". */
  readonly failed = new Map<string, { order: SentOrder; reason: string }>();
  /** No reply (connection lost), or an error whose outcome is unknown ("internal error"). */
  readonly unknown = new Map<string, { order: SentOrder; why: string }>();
  /** Order id -> shares a `<canceled>` reply said were canceled. */
  readonly canceled = new Map<string, string>();
  /** Order id -> the most fills any reply (status or cancel) showed for it. */
  readonly fillsSeen = new Map<string, number>();

  sawFills(orderId: string, fills: number): void {
    if (fills > (this.fillsSeen.get(orderId) ?? 0)) this.fillsSeen.set(orderId, fills);
  }

  /** A new order with a limit no other order has: base + tag/10^6, ending in 1 so it has no trailing zero. */
  newOrder(account: string, sym: string, amount: string, base: number, doomed: boolean): SentOrder {
    const tag = this.nextTag++;
    if (tag >= 1_000_000) throw new Error('too many orders for unique limits');
    const order: SentOrder = { tag, account, sym, amount, limit: `${base}.${String(tag).padStart(6, '0')}1`, doomed };
    this.sent.set(order.limit, order);
    return order;
  }

  ackedOf(account: string): AckedOrder[] {
    return [...this.acked.values()].filter((order) => order.account === account);
  }
}

export type Universe = { accounts: string[]; symbols: string[]; balance: string; shares: string };

/** Creates the accounts with cash and shares of every symbol; returns the grants for the invariant check. */
export async function createUniverse(port: number, universe: Universe): Promise<GrantLedger> {
  const grants = new GrantLedger();
  const client = await LengthClient.connect(port);
  try {
    const xml = `<create>${universe.accounts.map((id) => `<account id="${id}" balance="${universe.balance}"/>`).join('')}${universe.symbols
      .map(
        (sym) =>
          `<symbol sym="${sym}">${universe.accounts.map((id) => `<account id="${id}">${universe.shares}</account>`).join('')}</symbol>`,
      )
      .join('')}</create>`;
    const results = parseResults(await client.send(xml));
    const bad = results.filter((node) => node.name !== 'created');
    if (bad.length > 0) throw new Error(`setup failed: ${JSON.stringify(bad)}`);
    for (const _ of universe.accounts) grants.addCash(universe.balance);
    for (const sym of universe.symbols) for (const _ of universe.accounts) grants.addShares(sym, universe.shares);
  } finally {
    client.close();
  }
  return grants;
}

export type LoadOptions = {
  port: number;
  connections: number;
  seed: number;
  universe: Universe;
  ledger: OrderLedger;
  /** Share of orders built to be rejected (too big, or a sell of an unknown symbol). */
  doomedRate?: number;
  cancelRate?: number;
  queryRate?: number;
  /** Most items per request (1 to this many). */
  maxItems?: number;
};

export type RequestRecord = { sentAt: number; repliedAt: number; ok: boolean; what: string };

export type LoadStats = {
  requests: number;
  replies: number;
  /** Requests whose connection closed or failed before the reply. */
  lostRequests: number;
  connectFailures: number;
  /** Error replies a healthy server must not give (with the request item), e.g. "internal error". */
  unexpectedErrors: string[];
  /** Replies that are wrong on their face: a doomed order opened, an echo differs, a stale status. */
  anomalies: string[];
  opened: number;
  rejected: number;
  canceled: number;
  queried: number;
  /** One entry per request, for "when did it work again" questions. */
  records: RequestRecord[];
};

function openShares(node: ReplyNode): number {
  const open = node.children.find((child) => child.name === 'open');
  return open ? Number(open.attributes.shares) : 0;
}

type Item =
  | { kind: 'order'; order: SentOrder }
  | { kind: 'cancel'; order: AckedOrder }
  | { kind: 'query'; order: AckedOrder };

/**
 * Several persistent connections (length framing), each sending one request at
 * a time, reconnecting when the server goes away, until stop().
 */
export class LoadDriver {
  readonly stats: LoadStats = {
    requests: 0,
    replies: 0,
    lostRequests: 0,
    connectFailures: 0,
    unexpectedErrors: [],
    anomalies: [],
    opened: 0,
    rejected: 0,
    canceled: 0,
    queried: 0,
    records: [],
  };
  private stopping = false;
  private readonly workers: Array<Promise<void>> = [];
  private readonly clients = new Set<LengthClient>();

  constructor(private readonly options: LoadOptions) {}

  start(): this {
    for (let index = 0; index < this.options.connections; index++) {
      this.workers.push(this.worker(this.options.seed * 1_000 + index));
    }
    return this;
  }

  /** Lets each connection finish the request it is waiting for, then closes them. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
  }

  private async worker(seed: number): Promise<void> {
    const random = seededRandom(seed);
    const { universe, ledger } = this.options;
    let client: LengthClient | null = null;
    // What this connection saw of each order: open shares only shrink, fills only grow, final stays final.
    const seen = new Map<string, { open: number; fills: number; final: boolean }>();
    while (!this.stopping) {
      if (!client) {
        try {
          client = await LengthClient.connect(this.options.port);
          this.clients.add(client);
        } catch {
          this.stats.connectFailures++;
          await new Promise((resolve) => setTimeout(resolve, 50));
          continue;
        }
      }
      const account = pick(random, universe.accounts);
      const mine = ledger.ackedOf(account);
      const items: Item[] = [];
      const count = 1 + Math.floor(random() * (this.options.maxItems ?? 3));
      for (let index = 0; index < count; index++) {
        const roll = random();
        if (mine.length > 0 && roll < (this.options.cancelRate ?? 0.1)) {
          items.push({ kind: 'cancel', order: pick(random, mine) });
        } else if (mine.length > 0 && roll < (this.options.cancelRate ?? 0.1) + (this.options.queryRate ?? 0.1)) {
          items.push({ kind: 'query', order: pick(random, mine) });
        } else if (random() < (this.options.doomedRate ?? 0)) {
          const how = Math.floor(random() * 3);
          const order =
            how === 0
              ? ledger.newOrder(account, pick(random, universe.symbols), '1000000000', 100, true)
              : how === 1
                ? ledger.newOrder(account, pick(random, universe.symbols), '-1000000000', 100, true)
                : ledger.newOrder(account, 'NOSUCHSYM', '-1', 100, true);
          items.push({ kind: 'order', order });
        } else {
          const buy = random() < 0.5;
          const amount = `${buy ? '' : '-'}${1 + Math.floor(random() * 5)}`;
          // Buys at 95..104 and sells at 96..105: about half of them cross.
          const base = (buy ? 95 : 96) + Math.floor(random() * 10);
          items.push({
            kind: 'order',
            order: ledger.newOrder(account, pick(random, universe.symbols), amount, base, false),
          });
        }
      }
      const xml = `<transactions id="${account}">${items
        .map((item) =>
          item.kind === 'order'
            ? `<order sym="${item.order.sym}" amount="${item.order.amount}" limit="${item.order.limit}"/>`
            : `<${item.kind} id="${item.order.id}"/>`,
        )
        .join('')}</transactions>`;
      const record: RequestRecord = { sentAt: Date.now(), repliedAt: 0, ok: false, what: xml };
      this.stats.records.push(record);
      this.stats.requests++;
      let reply: string;
      try {
        reply = await client.send(xml);
      } catch (error) {
        record.repliedAt = Date.now();
        this.stats.lostRequests++;
        for (const item of items) {
          if (item.kind === 'order')
            ledger.unknown.set(item.order.limit, { order: item.order, why: `no reply: ${(error as Error).message}` });
        }
        this.clients.delete(client);
        client = null;
        continue;
      }
      record.repliedAt = Date.now();
      this.stats.replies++;
      let results: ReplyNode[];
      try {
        results = parseResults(reply);
      } catch (error) {
        this.stats.anomalies.push(`unparsable reply ${reply}: ${(error as Error).message}`);
        continue;
      }
      if (results.length !== items.length) {
        this.stats.anomalies.push(`${items.length} items, ${results.length} results: ${xml} -> ${reply}`);
        continue;
      }
      record.ok = true;
      items.forEach((item, index) => {
        const node = results[index] as ReplyNode;
        if (!this.record(item, node, seen)) record.ok = false;
      });
    }
    client?.close();
    if (client) this.clients.delete(client);
  }

  /** Files one item's result; false when it was an error a healthy server would not give. */
  private record(
    item: Item,
    node: ReplyNode,
    seen: Map<string, { open: number; fills: number; final: boolean }>,
  ): boolean {
    const { ledger } = this.options;
    if (item.kind === 'order') {
      const { order } = item;
      const echo = `sym=${node.attributes.sym} amount=${node.attributes.amount} limit=${node.attributes.limit}`;
      if (echo !== `sym=${order.sym} amount=${order.amount} limit=${order.limit}`) {
        this.stats.anomalies.push(`order ${order.limit}: reply echoes ${echo}: <${node.name}>`);
      }
      if (node.name === 'opened') {
        this.stats.opened++;
        if (order.doomed)
          this.stats.anomalies.push(`an order that cannot be afforded was opened: ${JSON.stringify(order)}`);
        ledger.acked.set(order.limit, { ...order, id: node.attributes.id as string });
        return true;
      }
      if (node.name === 'error' && DEFINITIVE_REJECTIONS.has(codeOfMessage(node.text))) {
        ledger.failed.set(order.limit, { order, reason: node.text });
        this.stats.rejected++;
        if (order.doomed) return true;
        this.stats.unexpectedErrors.push(`order ${JSON.stringify(order)}: ${node.text}`);
        return false;
      }
      // "internal error: ...": the outcome is unknown, by the server's own account.
      ledger.unknown.set(order.limit, { order, why: `<${node.name}> ${node.text}` });
      this.stats.unexpectedErrors.push(`order ${JSON.stringify(order)}: <${node.name}> ${node.text}`);
      return false;
    }
    const { order } = item;
    if (item.kind === 'cancel') {
      if (node.name === 'canceled') {
        this.stats.canceled++;
        const fills = node.children.filter((child) => child.name === 'executed').length;
        seen.set(order.id, { open: 0, fills, final: true });
        ledger.canceled.set(
          order.id,
          node.children.find((child) => child.name === 'canceled')?.attributes.shares ?? '?',
        );
        ledger.sawFills(order.id, fills);
        return true;
      }
      if (node.name === 'error' && codeOfMessage(node.text) === 'nothing_open') {
        // Final: no later read may show it open again.
        seen.set(order.id, { open: 0, fills: seen.get(order.id)?.fills ?? 0, final: true });
        return true;
      }
      this.stats.unexpectedErrors.push(`cancel of ${order.id} (account ${order.account}): <${node.name}> ${node.text}`);
      return false;
    }
    if (node.name !== 'status') {
      this.stats.unexpectedErrors.push(`query of ${order.id} (account ${order.account}): <${node.name}> ${node.text}`);
      return false;
    }
    this.stats.queried++;
    const open = openShares(node);
    const now = {
      open,
      fills: node.children.filter((child) => child.name === 'executed').length,
      final: open === 0,
    };
    ledger.sawFills(order.id, now.fills);
    const before = seen.get(order.id);
    if (before && (now.open > before.open || now.fills < before.fills || (before.final && !now.final))) {
      this.stats.anomalies.push(
        `stale status of order ${order.id}: saw ${JSON.stringify(now)} after ${JSON.stringify(before)}`,
      );
    }
    seen.set(order.id, now);
    return true;
  }
}

export type OrderCheck = { problems: string[]; rows: number; unknownApplied: number; unknownNotApplied: number };

/**
 * Compares the client's view with the orders table: each acknowledged order is
 * there with its id, account, symbol and amount; no order told "failed" is; no
 * row exists that no request asked for, and none twice.
 */
export async function checkOrdersAgainstSql(pool: pg.Pool, ledger: OrderLedger): Promise<OrderCheck> {
  const result = await pool.query<{ id: string; account_id: string; sym: string; amount: string; lim: string }>(
    'SELECT id::text, account_id, sym, trim_scale(amount)::text AS amount, trim_scale(limit_price)::text AS lim FROM orders ORDER BY id',
  );
  const problems: string[] = [];
  const byLimit = new Map<string, (typeof result.rows)[number]>();
  for (const row of result.rows) {
    if (byLimit.has(row.lim))
      problems.push(`two orders with limit ${row.lim} (ids ${byLimit.get(row.lim)?.id} and ${row.id}): applied twice`);
    byLimit.set(row.lim, row);
    if (!ledger.sent.has(row.lim)) problems.push(`order ${row.id} (limit ${row.lim}) matches no request sent`);
    const failed = ledger.failed.get(row.lim);
    if (failed) problems.push(`order ${row.id} exists, but its client was told it failed: ${JSON.stringify(failed)}`);
  }
  for (const acked of ledger.acked.values()) {
    const row = byLimit.get(acked.limit);
    if (!row) {
      problems.push(`acknowledged order ${acked.id} (${JSON.stringify(acked)}) is not in the database`);
    } else if (
      row.id !== acked.id ||
      row.account_id !== acked.account ||
      row.sym !== acked.sym ||
      row.amount !== acked.amount
    ) {
      problems.push(`acknowledged order ${JSON.stringify(acked)} differs in SQL: ${JSON.stringify(row)}`);
    }
  }
  // Every cancel and fill a reply revealed is still there (a crash may not take back what was said).
  const parts = await pool.query<{ id: string; canceled: string | null; fills: number }>(
    `SELECT o.id::text, trim_scale(o.canceled_shares)::text AS canceled,
            (SELECT count(*)::int FROM executions e WHERE e.buy_order_id = o.id OR e.sell_order_id = o.id) AS fills
       FROM orders o WHERE o.id = ANY ($1::bigint[])`,
    [[...new Set([...ledger.canceled.keys(), ...ledger.fillsSeen.keys()])]],
  );
  const partsById = new Map(parts.rows.map((row) => [row.id, row]));
  for (const [id, shares] of ledger.canceled) {
    const row = partsById.get(id);
    if (row?.canceled !== shares)
      problems.push(
        `order ${id} was acknowledged canceled (${shares} shares); SQL has ${row?.canceled ?? 'no cancel'}`,
      );
  }
  for (const [id, fills] of ledger.fillsSeen) {
    const row = partsById.get(id);
    if ((row?.fills ?? 0) < fills)
      problems.push(`a reply showed ${fills} fill(s) of order ${id}; SQL has ${row?.fills ?? 0}`);
  }
  let unknownApplied = 0;
  for (const limit of ledger.unknown.keys()) {
    if (byLimit.has(limit)) unknownApplied++;
  }
  return {
    problems,
    rows: result.rows.length,
    unknownApplied,
    unknownNotApplied: ledger.unknown.size - unknownApplied,
  };
}
