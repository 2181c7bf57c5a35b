/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core)
 * against a server under stress load: the depth chart and the trade tape show
 * the orders this test placed, the book of a stress symbol and the server's own
 * rates fill in, the page raises no error (its Content-Security-Policy included),
 * and a screenshot is saved: in the system's temporary directory, or, with
 * UPDATE_SCREENSHOT=1, as docs/dashboard.png (the README shows it), so a test
 * run never changes a tracked file unasked.
 */
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { chromium, type Browser } from 'playwright-core';
import { sendOnce } from '../support/client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { getJson, startTestOperationsPort, type TestOperationsPort } from '../support/operator-api.js';
import { PROJECT_ROOT } from '../support/process.js';
import { program, skipUnless, titleNeeding } from '../support/requirements.js';
import { runStress, type ClientRun } from '../support/stress.js';

const CHROMIUM_BINARY = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM = program('chromium', 'apt-get install -y chromium', ['--version'], CHROMIUM_BINARY);
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOT === '1'
    ? path.join(PROJECT_ROOT, 'docs/dashboard.png')
    : path.join(os.tmpdir(), `exchange-dashboard-${process.pid}.png`);

describe(titleNeeding('dashboard in a real browser (chromium) under stress load', CHROMIUM), function () {
  this.timeout(180_000);
  let server: TestServer;
  let api: TestOperationsPort;
  let browser: Browser | null = null;

  before(async function () {
    skipUnless(this, CHROMIUM);
    server = await startTestServer({ framing: 'length' });
    api = await startTestOperationsPort(server.database.url, null);
  });

  after(async () => {
    await browser?.close();
    await api?.close();
    await server?.close();
  });

  it('shows the depth chart and the tape of the orders placed, then a stress symbol live; saves a screenshot', async () => {
    const send = (xml: string) => sendOnce(server.port, xml);
    // Known orders on a symbol of our own: three bid and three ask levels, and one trade at 100.25.
    await sendOnce(
      server.port,
      '<create><account id="901" balance="100000"/><account id="902" balance="0"/><symbol sym="DEMO"><account id="902">1000</account></symbol></create>',
    );
    for (const [account, amount, limit] of [
      ['901', '10', '99.5'],
      ['901', '25', '99'],
      ['901', '40', '98.25'],
      ['902', '-15', '100.5'],
      ['902', '-30', '101'],
      ['902', '-45', '102'],
      ['902', '-3', '100.25'],
      ['901', '3', '100.25'],
    ]) {
      const reply = await send(
        `<transactions id="${account}"><order sym="DEMO" amount="${amount}" limit="${limit}"/></transactions>`,
      );
      expect(reply).to.contain('<opened');
    }

    const stress: Promise<ClientRun> = runStress(
      [
        '--port',
        String(server.port),
        '--seconds',
        '25',
        '--warmup',
        '0',
        '--connections',
        '4',
        '--accounts',
        '20',
        '--symbols',
        '3',
        '--seed',
        '5',
        '--json',
      ],
      { timeoutMs: 120_000 },
    );

    browser = await chromium.launch({
      executablePath: CHROMIUM_BINARY,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });

    await page.goto(`${api.base}/#DEMO`);
    await page.waitForSelector('#depth[data-bid-levels="3"][data-ask-levels="3"]', { timeout: 30_000 });
    expect(await page.locator('#depth path.bids').count()).to.equal(1);
    expect(await page.locator('#depth path.asks').count()).to.equal(1);
    const cells = (table: string) =>
      page
        .locator(`${table} tbody tr`)
        .evaluateAll((rows) =>
          rows.map((row) => Array.from((row as HTMLTableRowElement).cells, (cell) => cell.textContent)),
        );
    // Bids: orders, shares, price; asks: price, shares, orders (the prices meet in the middle).
    expect(await cells('#bids')).to.deep.equal([
      ['1', '10', '99.5'],
      ['1', '25', '99'],
      ['1', '40', '98.25'],
    ]);
    expect(await cells('#asks')).to.deep.equal([
      ['100.5', '15', '1'],
      ['101', '30', '1'],
      ['102', '45', '1'],
    ]);
    await page.waitForSelector('#tape tbody tr[data-price="100.25"]', { timeout: 30_000 });
    expect(await page.locator('#tape tbody tr td:nth-child(3)').allTextContents()).to.deep.equal(['3']);
    expect(await page.locator('#quote').textContent()).to.contain('last 100.25');

    // A symbol of the stress run, once it has traded: its book and tape fill in, live.
    let busiest: string | undefined;
    for (let attempt = 0; attempt < 100 && busiest === undefined; attempt++) {
      const symbols = (await getJson(`${api.base}/api/symbols`)).body as Array<{
        sym: string;
        volume: string;
        bid: string | null;
        ask: string | null;
      }>;
      busiest = symbols.find(
        (symbol) =>
          symbol.sym.startsWith('ST') && Number(symbol.volume) > 0 && symbol.bid !== null && symbol.ask !== null,
      )?.sym;
      if (busiest === undefined) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(busiest, 'a stress symbol with trades and both sides of a book').to.be.a('string');
    await page.selectOption('#symbol', busiest as string);
    await page.waitForFunction(
      (sym) => {
        const depth = document.getElementById('depth');
        const tape = document.getElementById('tape');
        return (
          depth?.dataset.sym === sym &&
          tape?.dataset.sym === sym &&
          location.hash === `#${sym}` &&
          Number(depth?.dataset.bidLevels) > 0 &&
          Number(depth?.dataset.askLevels) > 0 &&
          Number(tape?.dataset.trades) > 0
        );
      },
      busiest,
      { timeout: 30_000 },
    );
    // Each price on the tape is a price the symbol traded at.
    const tapePrices = await page
      .locator('#tape tbody tr')
      .evaluateAll((rows) => rows.map((row) => (row as HTMLElement).dataset.price));
    const traded = new Set(
      ((await getJson(`${api.base}/api/trades/${busiest as string}?limit=1000`)).body as Array<{ price: string }>).map(
        (trade) => trade.price,
      ),
    );
    for (const price of tapePrices) expect(traded.has(String(price)), `tape price ${String(price)}`).to.equal(true);
    // The server's own rates, sampled each second, show the load.
    await page.waitForFunction(
      () =>
        Number(document.getElementById('orders-now')?.textContent) > 0 &&
        document.querySelectorAll('#requests path').length === 1,
      undefined,
      { timeout: 30_000 },
    );
    // A few more seconds of history make a better picture.
    await page.waitForFunction(() => Number(document.body.dataset.updates) >= 8, undefined, { timeout: 60_000 });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(problems).to.deep.equal([]);

    const run = await stress;
    expect(run.code, run.stderr).to.equal(0);
  });
});
