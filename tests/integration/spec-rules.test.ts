/**
 * Every rule and error case of SPEC.md, exercised through real TCP sockets
 * against a real server over its own PostgreSQL database.
 *
 * Tests are independent: each one makes its own accounts (freshId) and
 * symbols (freshSym), so one server and database serve the whole file.
 */
import net from 'node:net';
import { expect } from 'chai';
import { XMLValidator } from 'fast-xml-parser';
import { ReplyDecoder } from '../../server/protocol/framing.js';
import { LengthClient, frameRequest, sendRaw, sendRequest } from '../support/client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults, type ReplyNode } from '../support/xml.js';
import { sleep } from '../support/waiting.js';

// ---------------------------------------------------------------------------
// Reply parsing
// ---------------------------------------------------------------------------

/** The `<results>` children; asserts the reply is one well-formed `<results>` document starting with `<?xml`. */
function parseReply(xml: string): ReplyNode[] {
  expect(xml.startsWith('<?xml'), `reply must start with an XML declaration: ${JSON.stringify(xml)}`).to.equal(true);
  expect(XMLValidator.validate(xml), `reply must be well-formed: ${xml}`).to.equal(true);
  return parseResults(xml);
}

function at<T>(items: readonly T[], index: number): T {
  const item = items[index];
  if (item === undefined) throw new Error(`no item ${index} in ${JSON.stringify(items)}`);
  return item;
}

/** A node reduced for deep comparison: times are checked (whole epoch seconds near now) and dropped. */
type Shape = { name: string; attributes: Record<string, string>; children: Shape[] };

function el(name: string, attributes: Record<string, string> = {}, children: Shape[] = []): Shape {
  return { name, attributes, children };
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function expectRecentTime(time: string | undefined): void {
  expect(time, 'time attribute').to.be.a('string');
  expect(time).to.match(/^[0-9]+$/, 'time is whole seconds');
  expect(Math.abs(Number(time) - nowSeconds())).to.be.at.most(10, `time ${time} is near now`);
}

function shape(node: ReplyNode): Shape {
  const { time, ...rest } = node.attributes;
  const needsTime = node.name === 'executed' || (node.name === 'canceled' && !('id' in node.attributes));
  if (needsTime) expectRecentTime(time);
  else expect(time, `<${node.name}> has no time`).to.equal(undefined);
  return el(node.name, rest, node.children.map(shape));
}

function expectError(node: ReplyNode, attributes: Record<string, string>): string {
  expect(node.name, `expected <error>, got ${JSON.stringify(node)}`).to.equal('error');
  expect(node.attributes).to.deep.equal(attributes);
  expect(node.text.trim(), 'error says why').to.not.equal('');
  expect(node.children).to.deep.equal([]);
  return node.text;
}

/** `<results><error>why</error></results>` */
function expectRequestError(xml: string): void {
  const nodes = parseReply(xml);
  expect(nodes, xml).to.have.length(1);
  expectError(at(nodes, 0), {});
}

// ---------------------------------------------------------------------------
// Canonical decimals (to compare SQL NUMERIC text with expectations)
// ---------------------------------------------------------------------------

function canonical(text: string): string {
  const match = /^(-?)(\d*)(?:\.(\d*))?$/.exec(text.trim());
  if (!match) throw new Error(`not a decimal: ${text}`);
  const integer = (match[2] ?? '').replace(/^0+(?=\d)/, '') || '0';
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  const zero = integer === '0' && fraction === '';
  return `${match[1] && !zero ? '-' : ''}${integer}${fraction ? `.${fraction}` : ''}`;
}

// ---------------------------------------------------------------------------
// Server, ids and request helpers
// ---------------------------------------------------------------------------

let server: TestServer;
let idCounter = 0;
let symCounter = 0;
/** Unique account ids across the file (one database serves every test). */
const freshId = (): string => String(710_000 + ++idCounter);
const freshSym = (): string => `Q${++symCounter}x`;

async function post(xml: string, port = server.port): Promise<ReplyNode[]> {
  return parseReply(await sendRequest(port, xml));
}

async function createAccount(id: string, balance: string): Promise<void> {
  const nodes = await post(`<create><account id="${id}" balance="${balance}"/></create>`);
  expect(nodes.map(shape)).to.deep.equal([el('created', { id })]);
}

async function giveShares(sym: string, id: string, shares: string): Promise<void> {
  const nodes = await post(`<create><symbol sym="${sym}"><account id="${id}">${shares}</account></symbol></create>`);
  expect(nodes.map(shape)).to.deep.equal([el('created', { sym, id })]);
}

/** A new account with a balance and, optionally, shares of some symbols (created if new). */
async function trader(balance: string, holdings: Array<[sym: string, shares: string]> = []): Promise<string> {
  const id = freshId();
  await createAccount(id, balance);
  for (const [sym, shares] of holdings) await giveShares(sym, id, shares);
  return id;
}

/** A new symbol, created by giving a throwaway account one share. */
async function newSymbol(): Promise<string> {
  const sym = freshSym();
  await trader('0', [[sym, '1']]);
  return sym;
}

function transact(accountId: string, children: string): Promise<ReplyNode[]> {
  return post(`<transactions id="${accountId}">${children}</transactions>`);
}

/** Places one order that must be opened; returns its id. */
async function order(accountId: string, sym: string, amount: string, limit: string): Promise<string> {
  const nodes = await transact(accountId, `<order sym="${sym}" amount="${amount}" limit="${limit}"/>`);
  expect(nodes, JSON.stringify(nodes)).to.have.length(1);
  const opened = at(nodes, 0);
  expect(opened.name, JSON.stringify(opened)).to.equal('opened');
  const id = opened.attributes.id as string;
  expect(opened.attributes).to.deep.equal({ sym, amount, limit, id });
  return id;
}

async function query(accountId: string, orderId: string): Promise<ReplyNode> {
  const nodes = await transact(accountId, `<query id="${orderId}"/>`);
  expect(nodes).to.have.length(1);
  return at(nodes, 0);
}

async function cancel(accountId: string, orderId: string): Promise<ReplyNode> {
  const nodes = await transact(accountId, `<cancel id="${orderId}"/>`);
  expect(nodes).to.have.length(1);
  return at(nodes, 0);
}

async function balanceOf(accountId: string): Promise<string | null> {
  const result = await server.pool.query<{ balance: string }>('SELECT balance FROM accounts WHERE id=$1', [accountId]);
  const row = result.rows[0];
  return row ? canonical(String(row.balance)) : null;
}

/** Shares held; an absent position counts as "0". */
async function sharesOf(accountId: string, sym: string): Promise<string> {
  const result = await server.pool.query<{ shares: string }>(
    'SELECT shares FROM positions WHERE account_id=$1 AND sym=$2',
    [accountId, sym],
  );
  const row = result.rows[0];
  return row ? canonical(String(row.shares)) : '0';
}

async function expectBalance(accountId: string, expected: string): Promise<void> {
  expect(await balanceOf(accountId), `balance of ${accountId}`).to.equal(canonical(expected));
}

async function expectShares(accountId: string, sym: string, expected: string): Promise<void> {
  expect(await sharesOf(accountId, sym), `${sym} shares of ${accountId}`).to.equal(canonical(expected));
}

type Counts = { accounts: number; symbols: number; positions: number; orders: number; shares: string; cash: string };

async function stateCounts(): Promise<Counts> {
  const result = await server.pool.query<Record<string, string>>(`SELECT
      (SELECT count(*) FROM accounts)::int AS accounts, (SELECT count(*) FROM symbols)::int AS symbols,
      (SELECT count(*) FROM positions)::int AS positions, (SELECT count(*) FROM orders)::int AS orders,
      (SELECT coalesce(sum(shares), 0) FROM positions)::text AS shares,
      (SELECT coalesce(sum(balance), 0) FROM accounts)::text AS cash`);
  const row = result.rows[0] as Record<string, unknown>;
  return {
    accounts: Number(row.accounts),
    symbols: Number(row.symbols),
    positions: Number(row.positions),
    orders: Number(row.orders),
    shares: canonical(String(row.shares)),
    cash: canonical(String(row.cash)),
  };
}

/**
 * Bare framing, written in pieces with a pause between writes; resolves when the
 * server closes, with the reply and how long after the last write it came.
 */
function sendInPieces(
  port: number,
  pieces: Array<string | Buffer>,
  gapMs: number,
  options: { halfClose?: boolean } = {},
): Promise<{ reply: string; afterLastWriteMs: number }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let lastWrite = Date.now();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within 10 s; got ${JSON.stringify(Buffer.concat(chunks).toString())}`));
    }, 10_000);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks).toString('utf8'), afterLastWriteMs: Date.now() - lastWrite });
    });
    socket.on('connect', async () => {
      for (const [index, piece] of pieces.entries()) {
        if (index > 0) await sleep(gapMs);
        socket.write(piece);
        lastWrite = Date.now();
      }
      if (options.halfClose) socket.end();
    });
  });
}

/**
 * Length framing off a raw socket: replies decoded by the codec as they arrive, and every
 * byte the server wrote kept, so a test can check the bytes themselves (wire()).
 */
class FrameReader {
  private readonly decoder = new ReplyDecoder('length');
  private readonly replies: string[] = [];
  private readonly received: Buffer[] = [];
  private problem: Error | null = null;
  private ended = false;
  private wakers: Array<() => void> = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk);
      for (const event of this.decoder.push(chunk)) {
        if (event.type === 'reply') this.replies.push(event.xml);
        else this.problem ??= event.error;
      }
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<FrameReader> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new FrameReader(socket)));
      socket.once('error', reject);
    });
  }

  private wake(): void {
    for (const waker of this.wakers.splice(0)) waker();
  }

  private waitForData(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, Math.min(50, deadline - Date.now())));
      this.wakers.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The next reply document. */
  async frame(timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = this.replies.shift();
      if (reply !== undefined) return reply;
      if (this.problem) throw this.problem;
      if (this.ended) throw new Error(`closed before a whole frame; have ${JSON.stringify(this.wire().toString())}`);
      if (Date.now() >= deadline)
        throw new Error(`no whole frame within ${timeoutMs} ms; have ${JSON.stringify(this.wire().toString())}`);
      await this.waitForData(deadline);
    }
  }

  /** Every byte received so far. */
  wire(): Buffer {
    return Buffer.concat(this.received);
  }

  /** Resolves true once the server has closed the connection (and nothing else arrived). */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && Date.now() < deadline) await this.waitForData(deadline);
    return this.ended && this.replies.length === 0 && !this.decoder.hasPartialReply() && this.problem === null;
  }

  write(data: Buffer | string): void {
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** What SPEC says a length-framed reply is on the wire: its UTF-8 byte count in decimal, "\n", the document. */
function lengthFramed(...documents: string[]): Buffer {
  return Buffer.concat(
    documents.map((xml) =>
      Buffer.concat([Buffer.from(`${Buffer.byteLength(xml, 'utf8')}\n`, 'ascii'), Buffer.from(xml, 'utf8')]),
    ),
  );
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

describe('SPEC.md rules over TCP', function () {
  this.timeout(30_000);

  before(async () => {
    server = await startTestServer({ framing: 'bare' });
  });

  after(async () => {
    await server?.close();
  });

  describe('<create> accounts', () => {
    it('creates an account with its balance and no positions', async () => {
      const id = freshId();
      const nodes = await post(`<create><account id="${id}" balance="1234.5"/></create>`);
      expect(nodes.map(shape)).to.deep.equal([el('created', { id })]);
      await expectBalance(id, '1234.5');
      const positions = await server.pool.query('SELECT 1 FROM positions WHERE account_id=$1', [id]);
      expect(positions.rowCount).to.equal(0);
    });

    it('accepts a balance of 0 and ids longer than 64 bits, and keeps "007" and "7" apart', async () => {
      const long = `9${String(++idCounter).padStart(29, '0')}`; // 30 digits
      const padded = `00${freshId()}`;
      const unpadded = padded.replace(/^0+/, '');
      const nodes = await post(
        `<create><account id="${long}" balance="0"/><account id="${padded}" balance="5"/>` +
          `<account id="${unpadded}" balance="7"/></create>`,
      );
      expect(nodes.map(shape)).to.deep.equal([
        el('created', { id: long }),
        el('created', { id: padded }),
        el('created', { id: unpadded }),
      ]);
      await expectBalance(long, '0');
      await expectBalance(padded, '5');
      await expectBalance(unpadded, '7');
    });

    it('rejects a duplicate account with <error id> and keeps the original balance', async () => {
      const id = freshId();
      await createAccount(id, '100');
      const nodes = await post(`<create><account id="${id}" balance="999"/></create>`);
      expect(nodes).to.have.length(1);
      expectError(at(nodes, 0), { id });
      await expectBalance(id, '100');
    });

    it('rejects invalid ids and balances, each child independently, replies in input order', async () => {
      const good1 = freshId();
      const good2 = freshId();
      const badBalanceIds = [freshId(), freshId(), freshId(), freshId(), freshId(), freshId()];
      const before = await stateCounts();
      const children: Array<[xml: string, echo: Record<string, string> | 'created']> = [
        [`<account id="${good1}" balance="10"/>`, 'created'],
        ['<account id="" balance="10"/>', { id: '' }],
        ['<account id="12a" balance="10"/>', { id: '12a' }],
        ['<account id="-5" balance="10"/>', { id: '-5' }],
        ['<account id="1 2" balance="10"/>', { id: '1 2' }],
        [`<account id="${badBalanceIds[0]}" balance=""/>`, { id: badBalanceIds[0] as string }],
        [`<account id="${badBalanceIds[1]}" balance="-1"/>`, { id: badBalanceIds[1] as string }],
        [`<account id="${badBalanceIds[2]}" balance="1e5"/>`, { id: badBalanceIds[2] as string }],
        [`<account id="${badBalanceIds[3]}" balance="+5"/>`, { id: badBalanceIds[3] as string }],
        [`<account id="${badBalanceIds[4]}" balance="abc"/>`, { id: badBalanceIds[4] as string }],
        [`<account id="${badBalanceIds[5]}" balance="$5"/>`, { id: badBalanceIds[5] as string }],
        [`<account id="${good2}" balance="20"/>`, 'created'],
      ];
      const nodes = await post(`<create>${children.map(([xml]) => xml).join('')}</create>`);
      expect(nodes, JSON.stringify(nodes)).to.have.length(children.length);
      children.forEach(([xml, expected], index) => {
        const node = at(nodes, index);
        if (expected === 'created') {
          expect(shape(node), xml).to.deep.equal(el('created', { id: node.attributes.id as string }));
        } else {
          expectError(node, expected);
        }
      });
      expect(at(nodes, 0).attributes.id).to.equal(good1);
      expect(at(nodes, children.length - 1).attributes.id).to.equal(good2);
      const after = await stateCounts();
      expect(after.accounts).to.equal(before.accounts + 2);
      for (const id of badBalanceIds) expect(await balanceOf(id), id).to.equal(null);
      await expectBalance(good2, '20');
    });

    it('<create/> with no children replies <results/> exactly', async () => {
      for (const request of ['<create/>', '<create></create>']) {
        const reply = await sendRequest(server.port, request);
        expect(reply, request).to.match(/^<\?xml[^>]*\?>\s*<results\/>\s*$/);
      }
    });
  });

  describe('<create> symbols', () => {
    it('adds shares to each listed account; an unknown account gets an error and the others still get their shares', async () => {
      const sym = freshSym();
      const a = await trader('0');
      const b = await trader('0');
      const unknown = freshId();
      const nodes = await post(
        `<create><symbol sym="${sym}"><account id="${a}">100</account>` +
          `<account id="${unknown}">50</account><account id="${b}">2.5</account></symbol></create>`,
      );
      expect(nodes).to.have.length(3);
      expect(shape(at(nodes, 0))).to.deep.equal(el('created', { sym, id: a }));
      expectError(at(nodes, 1), { sym, id: unknown });
      expect(shape(at(nodes, 2))).to.deep.equal(el('created', { sym, id: b }));
      await expectShares(a, sym, '100');
      await expectShares(b, sym, '2.5');
      expect(await balanceOf(unknown)).to.equal(null);
      expect((await server.pool.query('SELECT 1 FROM positions WHERE account_id=$1', [unknown])).rowCount).to.equal(0);
    });

    it('an existing symbol may be created again; shares add up', async () => {
      const sym = freshSym();
      const a = await trader('0', [[sym, '10']]);
      await giveShares(sym, a, '0.5');
      await expectShares(a, sym, '10.5');
    });

    it('rejects a share count that is not > 0 or not a plain decimal', async () => {
      const sym = freshSym();
      const a = await trader('0');
      const nodes = await post(
        `<create><symbol sym="${sym}"><account id="${a}">0</account><account id="${a}">-3</account>` +
          `<account id="${a}">1e2</account><account id="${a}">4</account></symbol></create>`,
      );
      expect(nodes).to.have.length(4);
      for (const index of [0, 1, 2]) expectError(at(nodes, index), { sym, id: a });
      expect(shape(at(nodes, 3))).to.deep.equal(el('created', { sym, id: a }));
      await expectShares(a, sym, '4');
    });

    it('symbols are 1+ ASCII letters or digits, case-sensitive; an invalid sym gets an error per account', async () => {
      const lower = `abc${++symCounter}`;
      const upper = lower.toUpperCase();
      const a = await trader('0');
      const nodes = await post(
        `<create><symbol sym="${lower}"><account id="${a}">1</account></symbol>` +
          `<symbol sym="${upper}"><account id="${a}">2</account></symbol>` +
          `<symbol sym="A-B"><account id="${a}">3</account><account id="${a}">4</account></symbol>` +
          `<symbol sym=""><account id="${a}">5</account></symbol></create>`,
      );
      expect(nodes).to.have.length(5);
      expect(shape(at(nodes, 0))).to.deep.equal(el('created', { sym: lower, id: a }));
      expect(shape(at(nodes, 1))).to.deep.equal(el('created', { sym: upper, id: a }));
      expectError(at(nodes, 2), { sym: 'A-B', id: a });
      expectError(at(nodes, 3), { sym: 'A-B', id: a });
      expectError(at(nodes, 4), { sym: '', id: a });
      await expectShares(a, lower, '1');
      await expectShares(a, upper, '2');
      const positions = await server.pool.query('SELECT 1 FROM positions WHERE account_id=$1', [a]);
      expect(positions.rowCount).to.equal(2);
    });

    it('replies for accounts and symbol-accounts come in input order', async () => {
      const sym = freshSym();
      const a = freshId();
      const b = freshId();
      const nodes = await post(
        `<create><account id="${a}" balance="1"/><symbol sym="${sym}"><account id="${a}">3</account>` +
          `<account id="${b}">3</account></symbol><account id="${b}" balance="2"/><symbol sym="${sym}">` +
          `<account id="${b}">4</account></symbol></create>`,
      );
      expect(nodes).to.have.length(5);
      expect(shape(at(nodes, 0))).to.deep.equal(el('created', { id: a }));
      expect(shape(at(nodes, 1))).to.deep.equal(el('created', { sym, id: a }));
      expectError(at(nodes, 2), { sym, id: b });
      expect(shape(at(nodes, 3))).to.deep.equal(el('created', { id: b }));
      expect(shape(at(nodes, 4))).to.deep.equal(el('created', { sym, id: b }));
      await expectShares(a, sym, '3');
      await expectShares(b, sym, '4');
    });
  });

  describe('<transactions>', () => {
    it('for an unknown account, every child gets an <error> echoing its attributes; nothing is applied', async () => {
      const sym = await newSymbol();
      const unknown = freshId();
      const before = await stateCounts();
      const nodes = await transact(
        unknown,
        `<order sym="${sym}" amount="10" limit="1.50"/><query id="1"/><cancel id="2"/><order sym="${sym}" amount="-3" limit="7"/>`,
      );
      expect(nodes).to.have.length(4);
      expectError(at(nodes, 0), { sym, amount: '10', limit: '1.50' });
      expectError(at(nodes, 1), { id: '1' });
      expectError(at(nodes, 2), { id: '2' });
      expectError(at(nodes, 3), { sym, amount: '-3', limit: '7' });
      expect(await stateCounts()).to.deep.equal(before);
    });

    it('a malformed account id is an unknown account: every child gets an <error> echoing its attributes', async () => {
      const sym = await newSymbol();
      const before = await stateCounts();
      const nodes = await post(
        `<transactions id="12x"><order sym="${sym}" amount="1" limit="1"/><query id="3"/></transactions>`,
      );
      expect(nodes).to.have.length(2);
      expectError(at(nodes, 0), { sym, amount: '1', limit: '1' });
      expectError(at(nodes, 1), { id: '3' });
      expect(await stateCounts()).to.deep.equal(before);
    });

    it('a <transactions> with no children replies <results/> exactly for an existing account', async () => {
      const id = await trader('10');
      const before = await stateCounts();
      for (const request of [`<transactions id="${id}"/>`, `<transactions id="${id}"></transactions>`]) {
        const reply = await sendRequest(server.port, request);
        expect(reply, request).to.match(/^<\?xml[^>]*\?>\s*<results\/>\s*$/);
      }
      expect(await stateCounts()).to.deep.equal(before);
    });

    it('a <transactions> with no children gets one <error id> when the account does not exist', async () => {
      const id = freshId();
      for (const request of [`<transactions id="${id}"/>`, `<transactions id="${id}"></transactions>`]) {
        const nodes = await post(request);
        expect(nodes, request).to.have.length(1);
        expect(expectError(at(nodes, 0), { id }), request).to.match(/unknown account/);
      }
      for (const request of ['<transactions id="12x"/>', '<transactions/>']) {
        const nodes = await post(request);
        expect(nodes, request).to.have.length(1);
        expect(at(nodes, 0).name, request).to.equal('error');
      }
    });

    it('children run in document order (a later order sees the balance an earlier one reserved)', async () => {
      const sym = await newSymbol();
      const id = await trader('100');
      const nodes = await transact(
        id,
        `<order sym="${sym}" amount="1" limit="100"/><order sym="${sym}" amount="1" limit="1"/>`,
      );
      expect(nodes).to.have.length(2);
      expect(at(nodes, 0).name).to.equal('opened');
      expectError(at(nodes, 1), { sym, amount: '1', limit: '1' });
      await expectBalance(id, '0');
    });
  });

  describe('<order>', () => {
    it('opens buys and sells, echoing sym/amount/limit exactly as sent, with increasing positive ids', async () => {
      const sym = await newSymbol();
      const id = await trader('100000', [[sym, '1000']]);
      const nodes = await transact(
        id,
        `<order sym="${sym}" amount="100" limit="120.00"/>` +
          `<order sym="${sym}" amount="-400" limit="124.50"/><order sym="${sym}" amount="0.25" limit="3"/>`,
      );
      expect(nodes).to.have.length(3);
      const expected = [
        { sym, amount: '100', limit: '120.00' },
        { sym, amount: '-400', limit: '124.50' },
        { sym, amount: '0.25', limit: '3' },
      ];
      const ids = nodes.map((node, index) => {
        expect(node.name).to.equal('opened');
        const orderId = node.attributes.id as string;
        expect(orderId).to.match(/^[1-9][0-9]*$/);
        expect(node.attributes).to.deep.equal({ ...expected[index], id: orderId });
        return BigInt(orderId);
      });
      expect(ids[0]! < ids[1]! && ids[1]! < ids[2]!, `ids increase: ${ids.join(', ')}`).to.equal(true);
      const later = BigInt(await order(id, sym, '1', '1'));
      expect(later > ids[2]!).to.equal(true);
      // Reserved: 100 * 120 + 0.25 * 3 + 1 * 1 cash; 400 shares.
      await expectBalance(id, '87998.25');
      await expectShares(id, sym, '600');
    });

    it('the raw reply echoes amount="-400" limit="124.50" verbatim', async () => {
      const sym = await newSymbol();
      const id = await trader('0', [[sym, '400']]);
      const reply = await sendRequest(
        server.port,
        `<transactions id="${id}"><order sym="${sym}" amount="-400" limit="124.50"/></transactions>`,
      );
      expect(reply).to.contain('amount="-400"');
      expect(reply).to.contain('limit="124.50"');
      expect(reply).to.contain(`sym="${sym}"`);
    });

    it('rejects a buy the balance cannot cover (exact cover is fine), with an echo and no change', async () => {
      const sym = await newSymbol();
      const id = await trader('1000');
      const nodes = await transact(id, `<order sym="${sym}" amount="10" limit="100.01"/>`);
      expect(nodes).to.have.length(1);
      expectError(at(nodes, 0), { sym, amount: '10', limit: '100.01' });
      await expectBalance(id, '1000');
      await order(id, sym, '10', '100');
      await expectBalance(id, '0');
    });

    it('rejects a sell beyond the position, with an echo and no change', async () => {
      const sym = await newSymbol();
      const id = await trader('0', [[sym, '50']]);
      const nodes = await transact(id, `<order sym="${sym}" amount="-50.5" limit="1"/>`);
      expectError(at(nodes, 0), { sym, amount: '-50.5', limit: '1' });
      await expectShares(id, sym, '50');
      await order(id, sym, '-50', '1');
      await expectShares(id, sym, '0');
    });

    it('rejects a sell with no position at all', async () => {
      const sym = await newSymbol();
      const id = await trader('1000');
      const before = await stateCounts();
      const nodes = await transact(id, `<order sym="${sym}" amount="-1" limit="1"/>`);
      expectError(at(nodes, 0), { sym, amount: '-1', limit: '1' });
      expect(await stateCounts()).to.deep.equal(before);
      await expectShares(id, sym, '0');
    });

    it('opens a buy of a symbol that was never created (the symbol exists from then on); a sell of it is rejected', async () => {
      const buyer = await trader('1000');
      const sym = freshSym();
      const before = await stateCounts();
      const nodes = await transact(
        buyer,
        `<order sym="${sym}" amount="-1" limit="1"/><order sym="${sym}" amount="2" limit="3"/>`,
      );
      expect(expectError(at(nodes, 0), { sym, amount: '-1', limit: '1' })).to.match(/unknown symbol/);
      expect(at(nodes, 1).name).to.equal('opened');
      const buyId = at(nodes, 1).attributes.id as string;
      const after = await stateCounts();
      expect(after.symbols).to.equal(before.symbols + 1);
      expect(after.orders).to.equal(before.orders + 1);
      await expectBalance(buyer, '994');
      // No shares of it are held by anyone until they are created; then it trades normally.
      expect(after.shares).to.equal(before.shares);
      const seller = await trader('0', [[sym, '5']]);
      await order(seller, sym, '-2', '2');
      // The resting buy's limit is the price.
      await expectBalance(seller, '6');
      await expectShares(seller, sym, '3');
      await expectShares(buyer, sym, '2');
      await expectBalance(buyer, '994');
      expect(shape(await query(buyer, buyId))).to.deep.equal(
        el('status', { id: buyId }, [el('executed', { shares: '2', price: '3' })]),
      );
    });

    it('a buy of a new symbol that cannot be paid creates nothing', async () => {
      const id = await trader('1');
      const sym = freshSym();
      const before = await stateCounts();
      const nodes = await transact(id, `<order sym="${sym}" amount="2" limit="1"/>`);
      expect(expectError(at(nodes, 0), { sym, amount: '2', limit: '1' })).to.match(/insufficient funds/);
      expect(await stateCounts()).to.deep.equal(before);
    });

    it('rejects amount 0 and limits that are not > 0, echoing the attributes', async () => {
      const sym = await newSymbol();
      const id = await trader('1000', [[sym, '10']]);
      const bad: Array<[string, string]> = [
        ['0', '5'],
        ['5', '0'],
        ['5', '-1'],
        ['-5', '0'],
        ['1e2', '1'],
        ['+5', '1'],
        ['5', 'abc'],
      ];
      const nodes = await transact(
        id,
        bad.map(([amount, limit]) => `<order sym="${sym}" amount="${amount}" limit="${limit}"/>`).join(''),
      );
      expect(nodes).to.have.length(bad.length);
      bad.forEach(([amount, limit], index) => expectError(at(nodes, index), { sym, amount, limit }));
      await expectBalance(id, '1000');
      await expectShares(id, sym, '10');
    });
  });

  describe('matching', () => {
    it('runs the SPEC worked example end to end', async () => {
      const sym = await newSymbol();
      const [a1, a2, a3, a4, a5, a6, a7] = (await Promise.all([
        trader('100000'),
        trader('0', [[sym, '100']]),
        trader('100000'),
        trader('0', [[sym, '500']]),
        trader('0', [[sym, '200']]),
        trader('100000'),
        trader('0', [[sym, '400']]),
      ])) as [string, string, string, string, string, string, string];
      const o1 = await order(a1, sym, '300', '125');
      const o2 = await order(a2, sym, '-100', '130');
      const o3 = await order(a3, sym, '200', '127');
      const o4 = await order(a4, sym, '-500', '128');
      const o5 = await order(a5, sym, '-200', '140');
      const o6 = await order(a6, sym, '400', '125');
      // Nothing matches yet.
      for (const [account, id, open] of [
        [a1, o1, '300'],
        [a2, o2, '100'],
        [a3, o3, '200'],
        [a4, o4, '500'],
        [a5, o5, '200'],
        [a6, o6, '400'],
      ] as const) {
        expect(shape(await query(account, id))).to.deep.equal(el('status', { id }, [el('open', { shares: open })]));
      }
      const o7 = await order(a7, sym, '-400', '124');
      const ids = [o1, o2, o3, o4, o5, o6, o7].map(BigInt);
      ids.slice(1).forEach((id, index) => expect(id > ids[index]!, 'ids increase in arrival order').to.equal(true));

      expect(shape(await query(a1, o1))).to.deep.equal(
        el('status', { id: o1 }, [el('open', { shares: '100' }), el('executed', { shares: '200', price: '125' })]),
      );
      expect(shape(await query(a7, o7))).to.deep.equal(
        el('status', { id: o7 }, [
          el('executed', { shares: '200', price: '127' }),
          el('executed', { shares: '200', price: '125' }),
        ]),
      );
      expect(shape(await query(a6, o6))).to.deep.equal(el('status', { id: o6 }, [el('open', { shares: '400' })]));
      expect(shape(await query(a3, o3))).to.deep.equal(
        el('status', { id: o3 }, [el('executed', { shares: '200', price: '127' })]),
      );
      for (const [account, id, open] of [
        [a2, o2, '100'],
        [a4, o4, '500'],
        [a5, o5, '200'],
      ] as const) {
        expect(shape(await query(account, id))).to.deep.equal(el('status', { id }, [el('open', { shares: open })]));
      }

      await expectBalance(a1, '62500'); // 300 * 125 reserved, filled at its own limit
      await expectShares(a1, sym, '200');
      await expectBalance(a3, '74600'); // 200 * 127
      await expectShares(a3, sym, '200');
      await expectBalance(a6, '50000'); // 400 * 125 still reserved
      await expectShares(a6, sym, '0');
      await expectBalance(a7, '50400'); // 200 * 127 + 200 * 125
      await expectShares(a7, sym, '0');
      for (const seller of [a2, a4, a5]) {
        await expectBalance(seller, '0');
        await expectShares(seller, sym, '0');
      }
    });

    it('a buy takes the lowest-priced sells first', async () => {
      const sym = await newSymbol();
      const s12 = await trader('0', [[sym, '5']]);
      const s10 = await trader('0', [[sym, '5']]);
      const s11 = await trader('0', [[sym, '5']]);
      const o12 = await order(s12, sym, '-5', '12');
      const o10 = await order(s10, sym, '-5', '10');
      const o11 = await order(s11, sym, '-5', '11');
      const buyer = await trader('1000');
      const buy = await order(buyer, sym, '8', '15');
      expect(shape(await query(buyer, buy))).to.deep.equal(
        el('status', { id: buy }, [
          el('executed', { shares: '5', price: '10' }),
          el('executed', { shares: '3', price: '11' }),
        ]),
      );
      expect(shape(await query(s10, o10))).to.deep.equal(
        el('status', { id: o10 }, [el('executed', { shares: '5', price: '10' })]),
      );
      expect(shape(await query(s11, o11))).to.deep.equal(
        el('status', { id: o11 }, [el('open', { shares: '2' }), el('executed', { shares: '3', price: '11' })]),
      );
      expect(shape(await query(s12, o12))).to.deep.equal(el('status', { id: o12 }, [el('open', { shares: '5' })]));
      await expectBalance(buyer, '917'); // 1000 - 50 - 33
      await expectShares(buyer, sym, '8');
    });

    it('a sell takes the highest-priced buys first', async () => {
      const sym = await newSymbol();
      const b10 = await trader('100');
      const b12 = await trader('100');
      const b11 = await trader('100');
      const o10 = await order(b10, sym, '2', '10');
      await order(b12, sym, '2', '12');
      const o11 = await order(b11, sym, '2', '11');
      const seller = await trader('0', [[sym, '3']]);
      const sell = await order(seller, sym, '-3', '5');
      expect(shape(await query(seller, sell))).to.deep.equal(
        el('status', { id: sell }, [
          el('executed', { shares: '2', price: '12' }),
          el('executed', { shares: '1', price: '11' }),
        ]),
      );
      expect(shape(await query(b10, o10))).to.deep.equal(el('status', { id: o10 }, [el('open', { shares: '2' })]));
      expect(shape(await query(b11, o11))).to.deep.equal(
        el('status', { id: o11 }, [el('open', { shares: '1' }), el('executed', { shares: '1', price: '11' })]),
      );
      await expectBalance(seller, '35');
      await expectShares(b12, sym, '2');
      await expectShares(b11, sym, '1');
      await expectBalance(b12, '76');
    });

    it('ties at the same price go to the order that arrived first', async () => {
      const sym = await newSymbol();
      const first = await trader('0', [[sym, '5']]);
      const second = await trader('0', [[sym, '5']]);
      const o1 = await order(first, sym, '-5', '10');
      const o2 = await order(second, sym, '-5', '10');
      const buyer = await trader('100');
      await order(buyer, sym, '5', '10');
      expect(shape(await query(first, o1))).to.deep.equal(
        el('status', { id: o1 }, [el('executed', { shares: '5', price: '10' })]),
      );
      expect(shape(await query(second, o2))).to.deep.equal(el('status', { id: o2 }, [el('open', { shares: '5' })]));
      await expectBalance(first, '50');
      await expectBalance(second, '0');
    });

    it("executes at the resting order's limit (an incoming sell below a resting buy gets the buy's price)", async () => {
      const sym = await newSymbol();
      const buyer = await trader('200');
      const buy = await order(buyer, sym, '10', '20');
      const seller = await trader('0', [[sym, '10']]);
      const sell = await order(seller, sym, '-10', '15');
      expect(shape(await query(seller, sell))).to.deep.equal(
        el('status', { id: sell }, [el('executed', { shares: '10', price: '20' })]),
      );
      expect(shape(await query(buyer, buy))).to.deep.equal(
        el('status', { id: buy }, [el('executed', { shares: '10', price: '20' })]),
      );
      await expectBalance(seller, '200');
      await expectBalance(buyer, '0');
      await expectShares(buyer, sym, '10');
    });

    it('refunds a buyer that reserved at a limit above the execution price', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '3']]);
      await order(seller, sym, '-3', '10.5');
      const buyer = await trader('1000');
      const buy = await order(buyer, sym, '3', '12.75');
      expect(shape(await query(buyer, buy))).to.deep.equal(
        el('status', { id: buy }, [el('executed', { shares: '3', price: '10.5' })]),
      );
      await expectBalance(buyer, '968.5'); // reserved 38.25, refunded 3 * 2.25
      await expectShares(buyer, sym, '3');
      await expectBalance(seller, '31.5');
    });

    it('a partial fill leaves the rest open with its original time priority', async () => {
      const sym = await newSymbol();
      const early = await trader('0', [[sym, '10']]);
      const late = await trader('0', [[sym, '10']]);
      const buyer = await trader('1000');
      const oEarly = await order(early, sym, '-10', '10');
      await order(buyer, sym, '4', '10');
      expect(shape(await query(early, oEarly))).to.deep.equal(
        el('status', { id: oEarly }, [el('open', { shares: '6' }), el('executed', { shares: '4', price: '10' })]),
      );
      const oLate = await order(late, sym, '-10', '10');
      const big = await order(buyer, sym, '8', '10');
      expect(shape(await query(early, oEarly))).to.deep.equal(
        el('status', { id: oEarly }, [
          el('executed', { shares: '4', price: '10' }),
          el('executed', { shares: '6', price: '10' }),
        ]),
      );
      expect(shape(await query(late, oLate))).to.deep.equal(
        el('status', { id: oLate }, [el('open', { shares: '8' }), el('executed', { shares: '2', price: '10' })]),
      );
      expect(shape(await query(buyer, big))).to.deep.equal(
        el('status', { id: big }, [
          el('executed', { shares: '6', price: '10' }),
          el('executed', { shares: '2', price: '10' }),
        ]),
      );
      await expectBalance(early, '100');
      await expectBalance(late, '20');
    });

    it('an incoming order filled in part rests with the remainder (and its reservation)', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '4']]);
      await order(seller, sym, '-4', '9');
      const buyer = await trader('1000');
      const buy = await order(buyer, sym, '10', '10');
      expect(shape(await query(buyer, buy))).to.deep.equal(
        el('status', { id: buy }, [el('open', { shares: '6' }), el('executed', { shares: '4', price: '9' })]),
      );
      await expectBalance(buyer, '904'); // 1000 - 4*9 - 6*10 reserved
      // The rest keeps matching later sells at its own limit.
      const seller2 = await trader('0', [[sym, '6']]);
      await order(seller2, sym, '-6', '8');
      expect(shape(await query(buyer, buy))).to.deep.equal(
        el('status', { id: buy }, [
          el('executed', { shares: '4', price: '9' }),
          el('executed', { shares: '6', price: '10' }),
        ]),
      );
      await expectBalance(seller2, '60');
      await expectShares(buyer, sym, '10');
    });

    it('incompatible limits do not match', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '1']]);
      const buyer = await trader('100');
      const sell = await order(seller, sym, '-1', '10.01');
      const buy = await order(buyer, sym, '1', '10');
      expect(shape(await query(seller, sell))).to.deep.equal(el('status', { id: sell }, [el('open', { shares: '1' })]));
      expect(shape(await query(buyer, buy))).to.deep.equal(el('status', { id: buy }, [el('open', { shares: '1' })]));
    });

    it('a canceled part never matches', async () => {
      const sym = await newSymbol();
      const buyer = await trader('100');
      const buy = await order(buyer, sym, '5', '10');
      expect((await cancel(buyer, buy)).name).to.equal('canceled');
      const seller = await trader('0', [[sym, '5']]);
      const sell = await order(seller, sym, '-5', '1');
      expect(shape(await query(seller, sell))).to.deep.equal(el('status', { id: sell }, [el('open', { shares: '5' })]));
      await expectBalance(buyer, '100');
      await expectShares(buyer, sym, '0');
    });

    it("an account's buy may match its own resting sell; the fill is accounted like any other", async () => {
      const sym = await newSymbol();
      const self = await trader('1000', [[sym, '10']]);
      const sell = await order(self, sym, '-10', '5');
      const buy = await order(self, sym, '10', '6');
      expect(shape(await query(self, sell))).to.deep.equal(
        el('status', { id: sell }, [el('executed', { shares: '10', price: '5' })]),
      );
      expect(shape(await query(self, buy))).to.deep.equal(
        el('status', { id: buy }, [el('executed', { shares: '10', price: '5' })]),
      );
      // -60 reserved, +10 refund, +50 proceeds; -10 shares reserved, +10 bought.
      await expectBalance(self, '1000');
      await expectShares(self, sym, '10');
    });
  });

  describe('<query> and <cancel>', () => {
    it('query of an open order shows <status id><open shares/></status>', async () => {
      const sym = await newSymbol();
      const id = await trader('0', [[sym, '400']]);
      const sell = await order(id, sym, '-400', '124.50');
      expect(shape(await query(id, sell))).to.deep.equal(el('status', { id: sell }, [el('open', { shares: '400' })]));
    });

    it('cancel of a buy refunds open shares x limit; the reply holds <canceled shares time/> and the fills, no <open>', async () => {
      const sym = await newSymbol();
      const buyer = await trader('100');
      const buy = await order(buyer, sym, '10', '7.25');
      const seller = await trader('0', [[sym, '4']]);
      await order(seller, sym, '-4', '7');
      await expectBalance(buyer, '27.5');
      const reply = await cancel(buyer, buy);
      expect(shape(reply)).to.deep.equal(
        el('canceled', { id: buy }, [el('canceled', { shares: '6' }), el('executed', { shares: '4', price: '7.25' })]),
      );
      await expectBalance(buyer, '71'); // 100 - 4 * 7.25
      await expectShares(buyer, sym, '4');
      await expectBalance(seller, '29');
    });

    it('cancel of a sell returns the open shares to the position', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '10']]);
      const sell = await order(seller, sym, '-10', '5');
      await expectShares(seller, sym, '0');
      const reply = await cancel(seller, sell);
      expect(shape(reply)).to.deep.equal(el('canceled', { id: sell }, [el('canceled', { shares: '10' })]));
      await expectShares(seller, sym, '10');
    });

    it('canceling twice is an error and refunds only once', async () => {
      const sym = await newSymbol();
      const buyer = await trader('100');
      const buy = await order(buyer, sym, '10', '3');
      expect((await cancel(buyer, buy)).name).to.equal('canceled');
      await expectBalance(buyer, '100');
      expectError(await cancel(buyer, buy), { id: buy });
      await expectBalance(buyer, '100');
      // Twice in one request too.
      const buy2 = await order(buyer, sym, '10', '3');
      const nodes = await transact(buyer, `<cancel id="${buy2}"/><cancel id="${buy2}"/>`);
      expect(at(nodes, 0).name).to.equal('canceled');
      expectError(at(nodes, 1), { id: buy2 });
      await expectBalance(buyer, '100');
    });

    it('canceling a fully executed order is an error and changes nothing', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '2']]);
      const sell = await order(seller, sym, '-2', '5');
      const buyer = await trader('10');
      const buy = await order(buyer, sym, '2', '5');
      expectError(await cancel(seller, sell), { id: sell });
      expectError(await cancel(buyer, buy), { id: buy });
      await expectBalance(seller, '10');
      await expectShares(seller, sym, '0');
      await expectBalance(buyer, '0');
      await expectShares(buyer, sym, '2');
      expect(shape(await query(buyer, buy))).to.deep.equal(
        el('status', { id: buy }, [el('executed', { shares: '2', price: '5' })]),
      );
    });

    it('query after cancel shows <canceled> and the fills, never <open>', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '10']]);
      const sell = await order(seller, sym, '-10', '5');
      const buyer = await trader('100');
      await order(buyer, sym, '3', '5');
      await cancel(seller, sell);
      expect(shape(await query(seller, sell))).to.deep.equal(
        el('status', { id: sell }, [el('canceled', { shares: '7' }), el('executed', { shares: '3', price: '5' })]),
      );
      await expectShares(seller, sym, '7');
      await expectBalance(seller, '15');
    });

    it("an unknown id and another account's id give the same error text; the other order is untouched", async () => {
      const sym = await newSymbol();
      const owner = await trader('100');
      const stranger = await trader('100');
      const buy = await order(owner, sym, '10', '10');
      const unknownId = '999999999999';
      const nodes = await transact(
        stranger,
        `<query id="${unknownId}"/><query id="${buy}"/><cancel id="${unknownId}"/><cancel id="${buy}"/><query id="abc"/>`,
      );
      expect(nodes).to.have.length(5);
      const queryUnknown = expectError(at(nodes, 0), { id: unknownId });
      const queryOther = expectError(at(nodes, 1), { id: buy });
      const cancelUnknown = expectError(at(nodes, 2), { id: unknownId });
      const cancelOther = expectError(at(nodes, 3), { id: buy });
      const queryMalformed = expectError(at(nodes, 4), { id: 'abc' });
      expect(queryOther).to.equal(queryUnknown);
      expect(cancelOther).to.equal(cancelUnknown);
      expect(queryMalformed).to.equal(queryUnknown);
      await expectBalance(owner, '0');
      await expectBalance(stranger, '100');
      expect(shape(await query(owner, buy))).to.deep.equal(el('status', { id: buy }, [el('open', { shares: '10' })]));
    });
  });

  describe('numbers in replies', () => {
    it('share arithmetic is exact decimal: 0.1 + 0.2 shares is exactly 0.3', async () => {
      const sym = await newSymbol();
      const buyer = await trader('10');
      const b1 = await order(buyer, sym, '0.1', '1');
      const b2 = await order(buyer, sym, '0.2', '1');
      const seller = await trader('0', [[sym, '0.3']]);
      const sell = await order(seller, sym, '-0.3', '1');
      expect(shape(await query(seller, sell))).to.deep.equal(
        el('status', { id: sell }, [
          el('executed', { shares: '0.1', price: '1' }),
          el('executed', { shares: '0.2', price: '1' }),
        ]),
      );
      expect(shape(await query(buyer, b1))).to.deep.equal(
        el('status', { id: b1 }, [el('executed', { shares: '0.1', price: '1' })]),
      );
      expect(shape(await query(buyer, b2))).to.deep.equal(
        el('status', { id: b2 }, [el('executed', { shares: '0.2', price: '1' })]),
      );
      const exact = await server.pool.query<{ exact: boolean }>(
        'SELECT shares = 0.3 AS exact FROM positions WHERE account_id=$1 AND sym=$2',
        [buyer, sym],
      );
      expect(exact.rows[0]?.exact).to.equal(true);
      await expectShares(buyer, sym, '0.3');
      await expectBalance(buyer, '9.7');
      await expectBalance(seller, '0.3');
      await expectShares(seller, sym, '0');
    });

    it('computed numbers are canonical (no trailing zeros, no exponent), shares positive for sells', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '10']]);
      const sell = await order(seller, sym, '-10.000', '125.500');
      expect(shape(await query(seller, sell))).to.deep.equal(
        el('status', { id: sell }, [el('open', { shares: '10' })]),
      );
      const buyer = await trader('1000');
      const buy = await order(buyer, sym, '2.50', '126.0');
      expect(shape(await query(buyer, buy))).to.deep.equal(
        el('status', { id: buy }, [el('executed', { shares: '2.5', price: '125.5' })]),
      );
      expect(shape(await query(seller, sell))).to.deep.equal(
        el('status', { id: sell }, [el('open', { shares: '7.5' }), el('executed', { shares: '2.5', price: '125.5' })]),
      );
      expect(shape(await cancel(seller, sell))).to.deep.equal(
        el('canceled', { id: sell }, [
          el('canceled', { shares: '7.5' }),
          el('executed', { shares: '2.5', price: '125.5' }),
        ]),
      );
      await expectBalance(buyer, '686.25'); // 1000 - 2.5 * 125.5
      await expectBalance(seller, '313.75');
      await expectShares(seller, sym, '7.5');
    });

    it('executed and canceled times are whole epoch seconds near now', async () => {
      const sym = await newSymbol();
      const seller = await trader('0', [[sym, '2']]);
      const sell = await order(seller, sym, '-2', '1');
      const buyer = await trader('1');
      const startedAt = nowSeconds();
      await order(buyer, sym, '1', '1');
      const reply = await cancel(seller, sell);
      const times = reply.children.map((child) => child.attributes.time);
      expect(times).to.have.length(2);
      for (const time of times) {
        expectRecentTime(time);
        expect(Number(time)).to.be.within(startedAt - 1, nowSeconds() + 1);
      }
    });

    it('the exchange invariants hold after a random mix of orders and cancels', async () => {
      const sym = await newSymbol();
      const cashCreated = ['1000', '2500.5', '800', '3000'];
      const sharesCreated = ['50', '20.5', '0', '35'];
      const accounts: string[] = [];
      for (const [index, cash] of cashCreated.entries()) {
        const shares = sharesCreated[index] as string;
        accounts.push(await trader(cash, shares === '0' ? [] : [[sym, shares]]));
      }
      let seed = 12345;
      const random = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      const placed: Array<{ account: string; id: string; amount: string; limit: string }> = [];
      for (let step = 0; step < 60; step++) {
        const account = accounts[random(accounts.length)] as string;
        const mine = placed.filter((o) => o.account === account);
        if (mine.length > 0 && random(5) === 0) {
          await transact(account, `<cancel id="${(mine[random(mine.length)] as { id: string }).id}"/>`);
          continue;
        }
        const amount = `${random(2) === 0 ? '-' : ''}${1 + random(8)}.${random(4) * 25}`;
        const limit = `${8 + random(5)}.${random(2) * 5}`;
        const nodes = await transact(account, `<order sym="${sym}" amount="${amount}" limit="${limit}"/>`);
        const node = at(nodes, 0);
        if (node.name === 'opened') placed.push({ account, id: node.attributes.id as string, amount, limit });
        else expectError(node, { sym, amount, limit });
      }
      expect(placed.length).to.be.greaterThan(10);
      // Read every order's state through <query>.
      let openBuyCash = 0n;
      let openSellShares = 0n;
      const scale = 10_000n;
      const fixed = (text: string): bigint => {
        const [integer, fraction = ''] = canonical(text).split('.');
        return BigInt(integer as string) * scale + BigInt(`${fraction}0000`.slice(0, 4));
      };
      for (const placedOrder of placed) {
        const status = await query(placedOrder.account, placedOrder.id);
        expect(status.name).to.equal('status');
        let open = 0n;
        let canceled = 0n;
        let filled = 0n;
        for (const child of status.children) {
          const shares = fixed(child.attributes.shares as string);
          expect(shares > 0n, 'shares are positive').to.equal(true);
          if (child.name === 'open') open += shares;
          else if (child.name === 'canceled') canceled += shares;
          else filled += shares;
        }
        expect(open === 0n || canceled === 0n, 'never both open and canceled').to.equal(true);
        const amount = fixed(placedOrder.amount.replace('-', ''));
        expect(open + canceled + filled, `order ${placedOrder.id} accounts for its whole amount`).to.equal(amount);
        if (placedOrder.amount.startsWith('-')) openSellShares += open;
        else openBuyCash += (open * fixed(placedOrder.limit)) / scale;
      }
      let cash = 0n;
      let shares = 0n;
      for (const account of accounts) {
        const balance = fixed((await balanceOf(account)) as string);
        const position = fixed(await sharesOf(account, sym));
        expect(balance >= 0n && position >= 0n).to.equal(true);
        cash += balance;
        shares += position;
      }
      expect(cash + openBuyCash, 'cash invariant').to.equal(cashCreated.map(fixed).reduce((a, b) => a + b));
      expect(shares + openSellShares, 'shares invariant').to.equal(sharesCreated.map(fixed).reduce((a, b) => a + b));
    });
  });

  describe('malformed and hostile requests (bare framing)', () => {
    it('malformed XML, a DOCTYPE with an entity, an unknown root and an empty body each get <results><error>; no state changes', async () => {
      const id = freshId();
      const sym = freshSym();
      const bodies = [
        `<create><account id="${id}" balance="5"></create>`,
        `<create><account id="${id}" balance="5"/>`,
        `<!DOCTYPE x [<!ENTITY a "b">]><create><account id="${id}" balance="5"/></create>`,
        `<?xml version="1.0"?><!DOCTYPE create [<!ENTITY a "${id}">]><create><account id="&a;" balance="5"/></create>`,
        `<create><account id="${id}" balance="5"/><symbol sym="${sym}"><account id="${id}">&undefined;</account></symbol></create>`,
        `<foo><account id="${id}" balance="5"/></foo>`,
        `<results><created id="${id}"/></results>`,
        `<create><account id="${id}" balance="5"/></create><create/>`,
        'just text',
        '',
      ];
      const before = await stateCounts();
      for (const body of bodies) {
        const reply = await sendRequest(server.port, body);
        expectRequestError(reply);
      }
      expect(await stateCounts()).to.deep.equal(before);
      expect(await balanceOf(id)).to.equal(null);
    });

    it('a length line that is not digits gets one error reply and the connection is closed', async () => {
      const id = freshId();
      const body = `<create><account id="${id}" balance="5"/></create>`;
      for (const line of ['abc\n', `x${Buffer.byteLength(body)}\n`, `${Buffer.byteLength(body)}x\n`, '-5\n']) {
        const reply = await sendRaw(server.port, [line, body]);
        expectRequestError(reply);
      }
      expect(await balanceOf(id)).to.equal(null);
    });

    it('a length above the maximum (1 MiB) gets one error reply and the connection is closed', async () => {
      const reply = await sendRaw(server.port, `${1024 * 1024 + 1}\n<create>`);
      expectRequestError(reply);
      const huge = await sendRaw(server.port, '99999999999999999999999\n');
      expectRequestError(huge);
    });

    it('tolerates \\r\\n and blank lines or spaces before the number', async () => {
      const id = freshId();
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<create><account id="${id}" balance="5"/></create>`;
      const reply = await sendRaw(server.port, `\r\n\n  ${Buffer.byteLength(body)}\r\n${body}`);
      expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id })]);
      await expectBalance(id, '5');
    });

    it('a length line sent twice (N\\nM\\n<xml>, N counting the inner line) is tolerated', async () => {
      const id = freshId();
      const inner = frameRequest(
        `<?xml version="1.0" encoding="UTF-8"?>\n<create><account id="${id}" balance="5"/></create>`,
      );
      const reply = await sendRaw(server.port, Buffer.concat([Buffer.from(`${inner.length}\n`), inner]));
      expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id })]);
      await expectBalance(id, '5');
    });

    it('an inner line of digits whose value does not match the bytes after it is still malformed', async () => {
      const id = freshId();
      const body = `<create><account id="${id}" balance="5"/></create>`;
      for (const inner of [Buffer.byteLength(body) - 1, Buffer.byteLength(body) + 1, 7]) {
        const reply = await sendRequest(server.port, `${inner}\n${body}`);
        expectRequestError(reply);
        expect(reply, `inner ${inner}`).to.match(/malformed XML/);
      }
      expect(await balanceOf(id)).to.equal(null);
    });

    it('a request split across several TCP writes is reassembled', async () => {
      const id = freshId();
      const body = Buffer.from(`<create><account id="${id}" balance="42"/></create>`);
      const line = `${body.length}\n`;
      const pieces = [line.slice(0, 1), line.slice(1), body.subarray(0, 5), body.subarray(5, 20), body.subarray(20)];
      const { reply } = await sendInPieces(server.port, pieces, 30);
      expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id })]);
      await expectBalance(id, '42');
    });

    it('a multi-byte UTF-8 character split between writes is reassembled', async () => {
      const id = await trader('10');
      const body = Buffer.from(`<transactions id="${id}"><order sym="Ω" amount="1" limit="1"/></transactions>`);
      const omega = body.indexOf(Buffer.from('Ω'));
      const { reply } = await sendInPieces(
        server.port,
        [`${body.length}\n`, body.subarray(0, omega + 1), body.subarray(omega + 1)],
        30,
      );
      const nodes = parseReply(reply);
      expect(nodes).to.have.length(1);
      expectError(at(nodes, 0), { sym: 'Ω', amount: '1', limit: '1' });
    });

    it('an overstated length with a complete document is processed after the ~100 ms grace period', async () => {
      const id = freshId();
      const body = Buffer.from(`<create><account id="${id}" balance="7"/></create>`);
      const { reply, afterLastWriteMs } = await sendInPieces(server.port, [`${body.length + 10}\n`, body], 0);
      expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id })]);
      expect(afterLastWriteMs).to.be.within(60, 3_000);
      await expectBalance(id, '7');
    });

    it('an overstated length followed by a pause inside the document is not processed early', async () => {
      const id = freshId();
      const body = Buffer.from(`<create><account id="${id}" balance="8"/></create>`);
      const { reply } = await sendInPieces(
        server.port,
        [`${body.length + 10}\n`, body.subarray(0, 10), body.subarray(10)],
        300,
      );
      expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id })]);
      await expectBalance(id, '8');
    });

    it('every reply starts with <?xml and holds one <results> root', async () => {
      const id = await trader('1');
      const replies = await Promise.all([
        sendRequest(server.port, '<create/>'),
        sendRequest(server.port, `<transactions id="${id}"><query id="1"/></transactions>`),
        sendRequest(server.port, '<nope/>'),
        sendRaw(server.port, 'zz\n'),
      ]);
      for (const reply of replies) parseReply(reply);
    });
  });

  describe('half-close and stalled clients', () => {
    let patient: TestServer;

    before(async () => {
      // A grace period far longer than the test: only the half-close can trigger processing.
      patient = await startTestServer({
        framing: 'bare',
        database: server.database,
        graceMs: 30_000,
        requestTimeoutMs: 800,
      });
    });

    after(async () => {
      await patient?.close();
    });

    it('a half-close after a complete document with an overstated length gets it processed', async () => {
      const id = freshId();
      const body = Buffer.from(`<create><account id="${id}" balance="9"/></create>`);
      const started = Date.now();
      const reply = await sendRaw(patient.port, [`${body.length + 10}\n`, body], { halfClose: true });
      expect(Date.now() - started).to.be.below(5_000);
      expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id })]);
      await expectBalance(id, '9');
    });

    it('a half-close with the exact length gets the reply on the half-open socket', async () => {
      const id = freshId();
      const reply = await sendRaw(patient.port, frameRequest(`<create><account id="${id}" balance="3"/></create>`), {
        halfClose: true,
      });
      expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id })]);
    });

    it('a client that stalls mid-request is disconnected and does not hold up others', async () => {
      // A deadline of its own, 3 s: "not held up" means served before the stalled client is
      // cut off, a margin that must survive a busy host.
      const deadline = await startTestServer({
        framing: 'bare',
        database: server.database,
        graceMs: 30_000,
        requestTimeoutMs: 3_000,
      });
      try {
        const id = freshId();
        const stalled = sendRaw(deadline.port, `200\n<create><account id="${id}" balance="1"/>`, { timeoutMs: 10_000 });
        const stalledClosedAt = stalled.then(() => Date.now()); // the server closes the connection
        await sleep(50);
        const other = freshId();
        const reply = await sendRequest(deadline.port, `<create><account id="${other}" balance="2"/></create>`);
        const otherFinishedAt = Date.now();
        expect(parseReply(reply).map(shape)).to.deep.equal([el('created', { id: other })]);
        expect(otherFinishedAt, 'served before the stalled client is cut off').to.be.below(await stalledClosedAt);
        const stalledReply = await stalled;
        if (stalledReply.length > 0) expectRequestError(stalledReply);
        expect(await balanceOf(id)).to.equal(null);
      } finally {
        await deadline.close();
      }
    });
  });

  describe('length framing', () => {
    let framed: TestServer;

    before(async () => {
      framed = await startTestServer({ framing: 'length', database: server.database });
    });

    after(async () => {
      await framed?.close();
    });

    it('answers several requests on one connection in order, and keeps it open', async () => {
      const client = await LengthClient.connect(framed.port);
      try {
        const id = freshId();
        const sym = freshSym();
        const created = parseReply(
          await client.send(
            `<create><account id="${id}" balance="100"/>` +
              `<symbol sym="${sym}"><account id="${id}">5</account></symbol></create>`,
          ),
        );
        expect(created.map(shape)).to.deep.equal([el('created', { id }), el('created', { sym, id })]);
        const opened = parseReply(
          await client.send(`<transactions id="${id}"><order sym="${sym}" amount="-5" limit="2"/></transactions>`),
        );
        const orderId = at(opened, 0).attributes.id as string;
        expect(shape(at(opened, 0))).to.deep.equal(el('opened', { sym, amount: '-5', limit: '2', id: orderId }));
        const [first, second] = await Promise.all([
          client.send(`<transactions id="${id}"><query id="${orderId}"/></transactions>`),
          client.send(`<transactions id="${id}"><cancel id="${orderId}"/></transactions>`),
        ]);
        expect(parseReply(first).map(shape)).to.deep.equal([
          el('status', { id: orderId }, [el('open', { shares: '5' })]),
        ]);
        expect(parseReply(second).map(shape)).to.deep.equal([
          el('canceled', { id: orderId }, [el('canceled', { shares: '5' })]),
        ]);
      } finally {
        client.close();
      }
    });

    it('prefixes each reply with its exact byte length, and answers two requests sent in ONE write', async () => {
      const reader = await FrameReader.connect(framed.port);
      try {
        const id = await trader('10');
        const first = `<transactions id="${id}"><order sym="Ωmega" amount="1" limit="1"/></transactions>`;
        const second = `<transactions id="${id}"><query id="999999999999"/></transactions>`;
        reader.write(Buffer.concat([frameRequest(first), frameRequest(second)]));
        const one = await reader.frame();
        const two = await reader.frame();
        const oneNodes = parseReply(one);
        expect(oneNodes).to.have.length(1);
        expectError(at(oneNodes, 0), { sym: 'Ωmega', amount: '1', limit: '1' });
        expect(one.length).to.be.below(Buffer.byteLength(one), 'the multi-byte echo makes bytes exceed characters');
        const twoNodes = parseReply(two);
        expectError(at(twoNodes, 0), { id: '999999999999' });
        // Still open for more.
        reader.write(frameRequest('<create/>'));
        const three = await reader.frame();
        expect(three).to.match(/^<\?xml[^>]*\?>\s*<results\/>\s*$/);
        expect(
          reader.wire().equals(lengthFramed(one, two, three)),
          'each reply is its byte count, a newline, the document',
        ).to.equal(true);
      } finally {
        reader.close();
      }
    });

    it('a bad length line gets one framed error reply, then the connection is closed', async () => {
      const reader = await FrameReader.connect(framed.port);
      try {
        reader.write(frameRequest('<create/>'));
        const first = await reader.frame();
        parseReply(first);
        reader.write('12abc\n<create/>');
        const error = await reader.frame();
        expect(reader.wire().equals(lengthFramed(first, error))).to.equal(true);
        expectRequestError(error);
        expect(await reader.closedWithin(3_000), 'server closes the connection').to.equal(true);
      } finally {
        reader.close();
      }
    });

    it('a length above the maximum gets one framed error reply, then the connection is closed', async () => {
      const reader = await FrameReader.connect(framed.port);
      try {
        reader.write(`${1024 * 1024 + 1}\n`);
        const error = await reader.frame();
        expectRequestError(error);
        expect(await reader.closedWithin(3_000), 'server closes the connection').to.equal(true);
      } finally {
        reader.close();
      }
    });

    it('a length line sent twice is tolerated, and a mismatched inner line is malformed XML (the connection stays usable)', async () => {
      const reader = await FrameReader.connect(framed.port);
      try {
        const id = freshId();
        const body = `<create><account id="${id}" balance="7"/></create>`;
        const twice = (inner: number): Buffer => {
          const framed = Buffer.from(`${inner}\n${body}`);
          return Buffer.concat([Buffer.from(`${framed.length}\n`), framed]);
        };
        // One write holding a doubled request, a mismatched one, then a doubled one again.
        reader.write(
          Buffer.concat([
            twice(Buffer.byteLength(body)),
            twice(Buffer.byteLength(body) + 1),
            twice(Buffer.byteLength(body)),
          ]),
        );
        const first = await reader.frame();
        expect(parseReply(first).map(shape)).to.deep.equal([el('created', { id })]);
        const second = await reader.frame();
        expectRequestError(second);
        expect(second).to.match(/malformed XML/);
        const third = await reader.frame();
        expect(parseReply(third).map(shape)).to.deep.equal([el('error', { id })]);
        expect(reader.wire().equals(lengthFramed(first, second, third))).to.equal(true);
        await expectBalance(id, '7');
      } finally {
        reader.close();
      }
    });

    it('malformed XML in length mode gets an error reply and the connection stays usable', async () => {
      const client = await LengthClient.connect(framed.port);
      try {
        expectRequestError(await client.send('<create><oops></create>'));
        expectRequestError(await client.send('<!DOCTYPE x [<!ENTITY a "b">]><create/>'));
        expect(await client.send('<create/>')).to.match(/^<\?xml[^>]*\?>\s*<results\/>\s*$/);
      } finally {
        client.close();
      }
    });
  });
});
