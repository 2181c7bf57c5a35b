/**
 * Parser micro-benchmark: microseconds per request for parseRequest (UTF-8 decoding, the
 * strict well-formedness check and tree building by saxes, and the item checks), single
 * threaded, no I/O. Each shape is parsed repeatedly after a warm-up; the median of the
 * tries is printed with the lowest.
 *
 *   node dist/scripts/bench-parse.js [--tries N]
 */
import { parseArgs } from 'node:util';
import { parseRequest } from '../server/protocol/parse-request.js';

const { values } = parseArgs({ options: { tries: { type: 'string', default: '5' }, help: { type: 'boolean' } } });
if (values.help) {
  console.log('Usage: node dist/scripts/bench-parse.js [--tries N]   (median and lowest µs per request)');
  process.exit(0);
}
const tries = Number(values.tries);
if (!Number.isInteger(tries) || tries < 1) {
  console.error('--tries must be a positive integer');
  process.exit(2);
}

const order = '<order sym="SPY" amount="100" limit="125.5"/>';
function attributes(size: number): string {
  const parts = ['<create><account id="1" balance="5" '];
  let length = parts[0]?.length ?? 0;
  for (let index = 0; length < size - 20; index++) {
    const attribute = `a${index}="x" `;
    parts.push(attribute);
    length += attribute.length;
  }
  parts.push('/></create>');
  return parts.join('');
}

const SHAPES: Array<{ name: string; xml: string; runs: number }> = [
  {
    name: 'one order (stress client shape)',
    xml: `<?xml version="1.0" encoding="UTF-8"?>\n<transactions id="123">${order}</transactions>`,
    runs: 20_000,
  },
  {
    name: 'order, query and cancel',
    xml: `<transactions id="123">${order}<query id="17"/><cancel id="17"/></transactions>`,
    runs: 20_000,
  },
  {
    name: 'create: account and symbol',
    xml: '<create><account id="1" balance="1000"/><symbol sym="SPY"><account id="1">100</account></symbol></create>',
    runs: 20_000,
  },
  { name: '100 orders (4.6 KB)', xml: `<transactions id="123">${order.repeat(100)}</transactions>`, runs: 1_000 },
  { name: '9,000 orders (410 KB)', xml: `<transactions id="123">${order.repeat(9_000)}</transactions>`, runs: 10 },
  { name: '1 MiB: one element of ~100,000 attributes', xml: attributes(1024 * 1024), runs: 3 },
];

function median(numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

for (const shape of SHAPES) {
  const body = Buffer.from(shape.xml, 'utf8');
  const first = parseRequest(body);
  if (first.kind === 'error' && !shape.name.startsWith('1 MiB')) throw new Error(`${shape.name}: ${first.message}`);
  for (let run = 0; run < Math.min(shape.runs, 200); run++) parseRequest(body);
  const perRequest: number[] = [];
  for (let attempt = 0; attempt < tries; attempt++) {
    const started = process.hrtime.bigint();
    for (let run = 0; run < shape.runs; run++) parseRequest(body);
    perRequest.push(Number(process.hrtime.bigint() - started) / 1e3 / shape.runs);
  }
  const format = (us: number): string => (us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(1)} µs`);
  console.log(
    `${shape.name.padEnd(44)} ${String(body.length).padStart(8)} B  ${format(median(perRequest)).padStart(10)}  (lowest ${format(Math.min(...perRequest))})`,
  );
}
