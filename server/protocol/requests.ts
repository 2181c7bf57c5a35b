/**
 * Typed, validated requests: what the XML parser hands the dispatcher.
 * Every field is already checked against SPEC.md; `echo` keeps the attributes
 * exactly as the client sent them, for error replies that must repeat them.
 */

/** Attributes in the order a reply echoes them. */
export type Attributes = ReadonlyArray<readonly [name: string, value: string]>;

export type CreateAccount = { kind: 'account'; accountId: string; balance: string };
export type AddShares = { kind: 'shares'; sym: string; accountId: string; shares: string };
/** A `<create>` child that failed validation; it still gets its own reply, in order. */
export type InvalidCreateItem = { kind: 'invalid'; echo: Attributes; reason: string };
export type CreateItem = CreateAccount | AddShares | InvalidCreateItem;

/** One `<symbol>` element: the symbol is created once, then each item applies. */
export type CreateGroup =
  | { kind: 'account'; item: CreateAccount | InvalidCreateItem }
  | { kind: 'symbol'; sym: string | null; items: Array<AddShares | InvalidCreateItem> };

export type CreateRequest = { kind: 'create'; groups: CreateGroup[] };

export type OrderItem = { kind: 'order'; sym: string; amount: string; limit: string; echo: Attributes };
/** orderId is null when the sent id cannot name any order; it is answered like an unknown id. */
export type QueryItem = { kind: 'query'; orderId: string | null; echo: Attributes };
export type CancelItem = { kind: 'cancel'; orderId: string | null; echo: Attributes };
export type InvalidTransactionItem = { kind: 'invalid'; echo: Attributes; reason: string };
export type TransactionItem = OrderItem | QueryItem | CancelItem | InvalidTransactionItem;

export type TransactionsRequest = {
  kind: 'transactions';
  /** null when the id attribute is missing or malformed: no account can match it. */
  accountId: string | null;
  accountEcho: Attributes;
  accountIdProblem: string | null;
  items: TransactionItem[];
};

export type Request = CreateRequest | TransactionsRequest;
