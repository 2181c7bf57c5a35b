/** Calling apply_writes (schema/002_matching.sql) directly, as the SQL-level tests do. */

/** One write as apply_writes takes it: an order (account, symbol, amount, limit) or a cancel (account, order id). */
export type Write = ['order', string, string, string, string] | ['cancel', string, string];

/** apply_writes' six parallel arrays, in its parameter order. */
export function writeArrays(writes: Write[]): unknown[] {
  return [
    writes.map((write) => write[0]),
    writes.map((write) => write[1]),
    writes.map((write) => (write[0] === 'order' ? write[2] : null)),
    writes.map((write) => (write[0] === 'order' ? write[3] : null)),
    writes.map((write) => (write[0] === 'order' ? write[4] : null)),
    writes.map((write) => (write[0] === 'cancel' ? write[2] : null)),
  ];
}
