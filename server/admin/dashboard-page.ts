/**
 * The live dashboard: one static page, its script and its style, compiled into
 * the server (no front-end build chain, no CDN, nothing to copy beside dist/).
 * The script polls the operator API every second and draws with plain SVG:
 * the depth chart (cumulative shares by price), the book by price level, the
 * trade tape, and requests/s, orders/s and latency from /api/stats. The book
 * is fetched aggregated and depth-limited, so thousands of orders cost the
 * page no more than a few levels. Prices and shares are shown as the exact
 * strings the API sends; only the chart's geometry uses floating point.
 * (The script is plain ES2017 inside a template literal: no template literals or backslashes in it.)
 */

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Exchange dashboard</title>
<link rel="stylesheet" href="/dashboard.css">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
</head>
<body>
<header>
  <h1>Exchange</h1>
  <label>Symbol <select id="symbol" aria-label="symbol"></select></label>
  <span id="quote"></span>
  <span id="status" role="status">connecting…</span>
</header>
<main>
  <section class="panel wide">
    <h2>Depth <small id="depth-note"></small></h2>
    <svg id="depth" viewBox="0 0 800 260" preserveAspectRatio="none" role="img" aria-label="depth chart"></svg>
  </section>
  <section class="panel">
    <h2>Book <small>by price level</small></h2>
    <div class="book">
      <table id="bids"><thead><tr><th>orders</th><th>shares</th><th>bid</th></tr></thead><tbody></tbody></table>
      <table id="asks"><thead><tr><th>ask</th><th>shares</th><th>orders</th></tr></thead><tbody></tbody></table>
    </div>
  </section>
  <section class="panel">
    <h2>Trades <small>newest first</small></h2>
    <table id="tape"><thead><tr><th>time</th><th>price</th><th>shares</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="panel wide">
    <h2>Server <small>per second, up to the last 10 minutes</small></h2>
    <div class="charts">
      <figure><figcaption>requests/s <b id="requests-now"></b></figcaption><svg id="requests" viewBox="0 0 300 90" preserveAspectRatio="none"></svg></figure>
      <figure><figcaption>orders/s <b id="orders-now"></b></figcaption><svg id="orders" viewBox="0 0 300 90" preserveAspectRatio="none"></svg></figure>
      <figure><figcaption>latency ms, p50 / <span class="p99">p99</span> <b id="latency-now"></b></figcaption><svg id="latency" viewBox="0 0 300 90" preserveAspectRatio="none"></svg></figure>
    </div>
  </section>
</main>
<script src="/dashboard.js"></script>
</body>
</html>
`;

const CSS = `
:root { color-scheme: dark; --bid: #3fb950; --ask: #f85149; --fg: #e6edf3; --dim: #8b949e; --bg: #0d1117; --panel: #161b22; --line: #30363d; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1em; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
h1 { font-size: 1.2em; margin: 0; }
h2 { font-size: 1em; margin: 0 0 .5em; }
small { color: var(--dim); font-weight: normal; }
select { font: inherit; background: var(--panel); color: var(--fg); border: 1px solid var(--line); padding: .2em; }
#quote { font-variant-numeric: tabular-nums; }
#quote .bid { color: var(--bid); } #quote .ask { color: var(--ask); }
#status { margin-left: auto; color: var(--dim); }
#status.error { color: var(--ask); }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; padding: 1em; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .8em; min-width: 0; }
.wide { grid-column: 1 / -1; }
svg { width: 100%; display: block; }
#depth { height: 260px; }
.book { display: grid; grid-template-columns: 1fr 1fr; gap: .5em; align-items: start; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th { color: var(--dim); font-weight: normal; text-align: right; }
td { text-align: right; padding: 0 .3em; white-space: nowrap; }
tbody { font-family: ui-monospace, monospace; font-size: 12px; }
#bids td:last-child { color: var(--bid); } #asks td:first-child { color: var(--ask); }
#tape td:nth-child(2) { color: var(--fg); }
.charts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 1em; }
figure { margin: 0; } figcaption { color: var(--dim); } figcaption b { color: var(--fg); font-weight: normal; }
.charts svg { height: 90px; border-bottom: 1px solid var(--line); }
.p99 { color: #d29922; }
svg text { fill: var(--dim); font-size: 11px; }
`;

const SCRIPT = `'use strict';
(function () {
  var NS = 'http://www.w3.org/2000/svg';
  var DEPTH = 50, TRADES = 40, REFRESH_MS = 1000;
  var picker = document.getElementById('symbol');
  var statusLine = document.getElementById('status');
  var current = decodeURIComponent(location.hash.slice(1)) || null;
  var busy = false;
  var volume = null;

  function el(name, attributes, parent) {
    var node = document.createElementNS(NS, name);
    for (var key in attributes) node.setAttribute(key, attributes[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function getJson(path) {
    return fetch(path, { cache: 'no-store' }).then(function (response) {
      if (!response.ok) throw new Error(path + ': HTTP ' + response.status);
      return response.json();
    });
  }
  function cell(row, text) { var td = document.createElement('td'); td.textContent = text; row.appendChild(td); }
  function fillTable(id, rows, columns) {
    var body = document.querySelector('#' + id + ' tbody');
    var fragment = document.createDocumentFragment();
    rows.forEach(function (item) {
      var row = document.createElement('tr');
      columns.forEach(function (column) { cell(row, column(item)); });
      row.dataset.price = item.price;
      fragment.appendChild(row);
    });
    clear(body);
    body.appendChild(fragment);
  }
  function clock(seconds) { return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false }); }

  function showSymbols(symbols) {
    var names = symbols.map(function (s) { return s.sym; });
    if (current === null || names.indexOf(current) < 0) {
      // Default: the most traded symbol.
      var best = symbols.slice().sort(function (a, b) { return Number(b.volume) - Number(a.volume); })[0];
      current = best ? best.sym : null;
    }
    if (picker.options.length !== names.length || names.some(function (n, i) { return picker.options[i].value !== n; })) {
      clear(picker);
      names.forEach(function (name) { var option = document.createElement('option'); option.value = option.textContent = name; picker.appendChild(option); });
    }
    if (current !== null) picker.value = current;
    volume = (symbols.filter(function (s) { return s.sym === current; })[0] || { volume: null }).volume;
  }

  // Bid, ask and last from the book and tape just drawn, so the header never disagrees with them.
  function showQuote(book, trades) {
    var quote = document.getElementById('quote');
    clear(quote);
    var bid = book.bids[0], ask = book.asks[0], last = trades[0];
    [['bid', bid ? bid.price : null, 'bid'], ['ask', ask ? ask.price : null, 'ask'], ['last', last ? last.price : null, ''], ['volume', volume, '']].forEach(function (part) {
      var span = document.createElement('span');
      span.className = part[2];
      span.textContent = part[0] + ' ' + (part[1] === null ? '–' : part[1]) + '  ';
      quote.appendChild(span);
    });
  }

  // Cumulative shares outward from the best price of each side, drawn as steps.
  function drawDepth(book) {
    var svg = document.getElementById('depth');
    clear(svg);
    var W = 800, H = 260, PAD = 22;
    function cumulative(levels) {
      var total = 0;
      return levels.map(function (level) { total += Number(level.shares); return { price: Number(level.price), total: total }; });
    }
    var bids = cumulative(book.bids), asks = cumulative(book.asks);
    svg.dataset.sym = book.sym;
    svg.dataset.bidLevels = String(bids.length);
    svg.dataset.askLevels = String(asks.length);
    var prices = bids.concat(asks).map(function (p) { return p.price; });
    if (prices.length === 0) {
      el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, svg).textContent = 'no open orders in ' + book.sym;
      return;
    }
    var low = Math.min.apply(null, prices), high = Math.max.apply(null, prices);
    if (low === high) { low -= 1; high += 1; }
    var top = Math.max(bids.length ? bids[bids.length - 1].total : 0, asks.length ? asks[asks.length - 1].total : 0);
    function x(price) { return PAD + (price - low) / (high - low) * (W - 2 * PAD); }
    function y(total) { return H - PAD - total / top * (H - 2 * PAD); }
    function area(points, className, color, towardsLow) {
      if (points.length === 0) return;
      var d = 'M' + x(points[0].price) + ',' + y(0);
      var previous = 0;
      points.forEach(function (p) { d += ' L' + x(p.price) + ',' + y(previous) + ' L' + x(p.price) + ',' + y(p.total); previous = p.total; });
      var edge = towardsLow ? low : high;
      d += ' L' + x(edge) + ',' + y(previous) + ' L' + x(edge) + ',' + y(0) + ' Z';
      el('path', { d: d, class: className, fill: color, 'fill-opacity': 0.25, stroke: color, 'stroke-width': 1.5, 'vector-effect': 'non-scaling-stroke' }, svg);
    }
    el('line', { x1: PAD, x2: W - PAD, y1: H - PAD, y2: H - PAD, stroke: '#30363d' }, svg);
    area(bids, 'bids', '#3fb950', true);
    area(asks, 'asks', '#f85149', false);
    el('text', { x: PAD, y: H - 6 }, svg).textContent = String(low);
    el('text', { x: W - PAD, y: H - 6, 'text-anchor': 'end' }, svg).textContent = String(high);
    el('text', { x: PAD, y: 14 }, svg).textContent = String(top) + ' shares';
    document.getElementById('depth-note').textContent = bids.length + ' bid and ' + asks.length + ' ask price levels (up to ' + DEPTH + ' a side)';
  }

  function drawSeries(id, points, series, nowId, unit) {
    var svg = document.getElementById(id);
    clear(svg);
    var W = 300, H = 90;
    var values = [];
    series.forEach(function (s) { points.forEach(function (p) { if (p[s.key] !== null) values.push(p[s.key]); }); });
    var top = Math.max.apply(null, values.concat([1e-9]));
    // At least a minute across, up to the ten minutes kept.
    var span = Math.max(60, points.length);
    series.forEach(function (s) {
      var d = '';
      points.forEach(function (p, i) {
        if (p[s.key] === null) return;
        var px = W - (points.length - 1 - i) / span * W;
        d += (d ? ' L' : 'M') + px.toFixed(1) + ',' + (H - 2 - p[s.key] / top * (H - 12)).toFixed(1);
      });
      el('path', { d: d, fill: 'none', stroke: s.color, 'stroke-width': 1.5, 'vector-effect': 'non-scaling-stroke' }, svg);
    });
    el('text', { x: 2, y: 10 }, svg).textContent = top.toFixed(top < 10 ? 2 : 0) + unit;
    var last = points[points.length - 1];
    document.getElementById(nowId).textContent = last
      ? series.map(function (s) { return last[s.key] === null ? '–' : last[s.key].toFixed(s.digits); }).join(' / ')
      : '';
  }

  function refresh() {
    if (busy) return;
    busy = true;
    getJson('/api/symbols').then(function (symbols) {
      showSymbols(symbols);
      var wanted = [getJson('/api/stats')];
      if (current !== null) {
        var sym = encodeURIComponent(current);
        wanted.push(getJson('/api/book/' + sym + '?depth=' + DEPTH), getJson('/api/trades/' + sym + '?limit=' + TRADES));
      }
      return Promise.all(wanted);
    }).then(function (answers) {
      var stats = answers[0].points;
      drawSeries('requests', stats, [{ key: 'requestsPerSecond', color: '#58a6ff', digits: 0 }], 'requests-now', '/s');
      drawSeries('orders', stats, [{ key: 'ordersPerSecond', color: '#3fb950', digits: 0 }], 'orders-now', '/s');
      drawSeries('latency', stats, [{ key: 'p50Ms', color: '#58a6ff', digits: 1 }, { key: 'p99Ms', color: '#d29922', digits: 1 }], 'latency-now', ' ms');
      if (answers.length > 1) {
        var book = answers[1], trades = answers[2];
        drawDepth(book);
        showQuote(book, trades);
        fillTable('bids', book.bids, [function (l) { return l.orders; }, function (l) { return l.shares; }, function (l) { return l.price; }]);
        fillTable('asks', book.asks, [function (l) { return l.price; }, function (l) { return l.shares; }, function (l) { return l.orders; }]);
        fillTable('tape', trades, [function (t) { return clock(t.time); }, function (t) { return t.price; }, function (t) { return t.shares; }]);
        document.getElementById('tape').dataset.trades = String(trades.length);
        document.getElementById('tape').dataset.sym = book.sym;
      }
      statusLine.textContent = 'updated ' + new Date().toLocaleTimeString([], { hour12: false });
      statusLine.className = '';
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    }).catch(function (error) {
      statusLine.textContent = String(error.message || error);
      statusLine.className = 'error';
    }).then(function () { busy = false; });
  }

  picker.addEventListener('change', function () {
    current = picker.value;
    location.hash = encodeURIComponent(current);
    refresh();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
`;

const ICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M0 16V9h4V5h4v11z" fill="#3fb950"/><path d="M8 16V7h4V3h4v13z" fill="#f85149"/></svg>';

type Asset = { contentType: string; body: string; headers: Record<string, string> };

// The page runs only its own script and style; it is never framed by another site.
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-cache',
};

export const DASHBOARD_ASSETS: ReadonlyMap<string, Asset> = new Map([
  ['/', { contentType: 'text/html; charset=utf-8', body: HTML, headers: PAGE_HEADERS }],
  ['/dashboard.js', { contentType: 'text/javascript; charset=utf-8', body: SCRIPT, headers: PAGE_HEADERS }],
  ['/dashboard.css', { contentType: 'text/css; charset=utf-8', body: CSS, headers: PAGE_HEADERS }],
  ['/favicon.svg', { contentType: 'image/svg+xml', body: ICON, headers: PAGE_HEADERS }],
]);
