/**
 * exchange-admin (client/admin.ts) as a user runs it: a process against a real
 * server's HTTP API (book, trades, symbols, account) and against its database (check).
 */
import { expect } from 'chai';
import { sendRequest } from '../support/client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startTestOperationsPort, type TestOperationsPort } from '../support/operator-api.js';
import { runAdmin } from '../support/stress.js';

const TOKEN = 'admin-cli-test-token-0123456789abcdef';

describe('exchange-admin', function () {
  this.timeout(60_000);
  let server: TestServer;
  let api: TestOperationsPort;
  const admin = (args: string[], env: Record<string, string> = {}) =>
    runAdmin([...args, '--url', api.base], { env: { ADMIN_TOKEN: '', ...env }, timeoutMs: 30_000 });

  before(async () => {
    server = await startTestServer();
    api = await startTestOperationsPort(server.database.url, TOKEN);
    await sendRequest(
      server.port,
      '<create><account id="1" balance="1000"/><account id="2" balance="0"/><symbol sym="Q"><account id="2">50</account></symbol></create>',
    );
    await sendRequest(
      server.port,
      '<transactions id="1"><order sym="Q" amount="4" limit="9.5"/><order sym="Q" amount="1.5" limit="9.50"/></transactions>',
    );
    await sendRequest(
      server.port,
      '<transactions id="2"><order sym="Q" amount="-2" limit="9"/><order sym="Q" amount="-7" limit="12.25"/></transactions>',
    );
  });

  after(async () => {
    await api?.close();
    await server?.close();
  });

  it('book SYM prints the levels side by side; --json prints the API answer', async () => {
    const text = await admin(['book', 'Q']);
    expect(text.code, text.stderr).to.equal(0);
    expect(text.stdout).to.equal(
      ['Q', 'orders  shares  bid    ask  shares  orders', '     2     3.5  9.5  12.25       7       1', ''].join('\n'),
    );
    const json = await admin(['book', 'Q', '--json', '--depth', '1']);
    expect(JSON.parse(json.stdout)).to.deep.equal({
      sym: 'Q',
      bids: [{ price: '9.5', shares: '3.5', orders: 2 }],
      asks: [{ price: '12.25', shares: '7', orders: 1 }],
    });
  });

  it('trades, symbols', async () => {
    const trades = await admin(['trades', 'Q', '--json']);
    expect(
      (JSON.parse(trades.stdout) as Array<{ price: string; shares: string }>).map(({ price, shares }) => ({
        price,
        shares,
      })),
    ).to.deep.equal([{ price: '9.5', shares: '2' }]);
    expect((await admin(['trades', 'Q'])).stdout).to.match(
      /^ +time \(UTC\) +price +shares\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +9\.5 +2\n$/,
    );
    const symbols = await admin(['symbols']);
    expect(symbols.stdout).to.equal('sym  bid    ask  last  volume\n  Q  9.5  12.25   9.5       2\n');
  });

  it('account ID needs ADMIN_TOKEN, and with it shows balance, reservations, positions and open orders', async () => {
    const without = await admin(['account', '1']);
    expect(without.code).to.equal(1);
    expect(without.stderr).to.contain('ADMIN_TOKEN');
    const wrong = await admin(['account', '1'], { ADMIN_TOKEN: `${TOKEN}x` });
    expect(wrong.code).to.equal(1);
    expect(wrong.stderr).to.contain('needs the operator token');
    const right = await admin(['account', '1', '--json'], { ADMIN_TOKEN: TOKEN });
    expect(right.code, right.stderr).to.equal(0);
    expect(JSON.parse(right.stdout)).to.deep.include({
      id: '1',
      balance: '947.75',
      reservedCash: '33.25',
      openOrderCount: 2,
    });
    const text = await admin(['account', '2'], { ADMIN_TOKEN: TOKEN });
    expect(text.stdout).to.contain('account 2: balance 19, reserved by open buys 0');
    expect(text.stdout).to.match(/Q +41 +7/);
  });

  it('check exits 0 when the invariants hold and 1 naming the violation; unknown symbols and bad usage fail', async () => {
    const clean = await runAdmin([
      'check',
      '--database-url',
      server.database.url,
      '--cash',
      '1000',
      '--shares',
      'Q=50',
    ]);
    expect(clean.code, clean.stdout + clean.stderr).to.equal(0);
    expect(clean.stdout).to.match(/^invariants hold: .*cash conserved; shares conserved \(Q\)\n$/);
    const wrongTotal = await runAdmin(['check', '--database-url', server.database.url, '--shares', 'Q=51', '--json']);
    expect(wrongTotal.code).to.equal(1);
    expect((JSON.parse(wrongTotal.stdout) as { violations: string[] }).violations).to.deep.equal([
      'shares of Q: positions + open sells = 50, created 51',
    ]);
    await server.pool.query(
      `INSERT INTO orders (account_id, sym, amount, limit_price, open_shares) VALUES ('404', 'Q', 1, 1, 1)`,
    );
    try {
      const orphan = await runAdmin(['check'], { env: { DATABASE_URL: server.database.url } });
      expect(orphan.code).to.equal(1);
      expect(orphan.stdout).to.match(/order \d+ refers to an account, symbol or order that does not exist/);
    } finally {
      await server.pool.query(`DELETE FROM orders WHERE account_id = '404'`);
    }
    const unknown = await admin(['book', 'NOPE']);
    expect([unknown.code, unknown.stderr]).to.deep.equal([1, 'exchange-admin: unknown symbol NOPE\n']);
    expect((await admin(['frobnicate'])).code).to.equal(2);
    expect((await admin(['book'])).code).to.equal(2);
    expect((await runAdmin(['check'])).code).to.equal(2);
    const help = await runAdmin(['--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.contain('Usage: exchange-admin COMMAND');
    const gone = await runAdmin(['symbols', '--url', 'http://127.0.0.1:1']);
    expect(gone.code).to.equal(1);
    expect(gone.stderr).to.contain('cannot reach');
  });
});
