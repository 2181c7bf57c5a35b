-- Outcomes of write batches, so that a batch whose COMMIT lost its connection is not
-- "outcome unknown" (server/store/write-outcome.ts). Each batch's own transaction adds its
-- row, keyed by a token the server made before sending it, in the same statement as the
-- batch (no extra round trip, no extra statement under the write lock): one row with the
-- batch's results in write order, an order id for each order that opened (NULL for a
-- rejected order and for a cancel) and the rejection or the cancel's outcome (NULL for an
-- order that opened). A canceled order's shares, time and fills are final once canceled,
-- so they are read back from the order itself. A <create> item records its outcome the same
-- way, in its own statement: no order ids ('{}', never NULL) and one outcome.
--
-- After losing the batch, the server inserts the same token with no results (a tombstone)
-- and reads the row. If the batch committed, the insert does nothing and the row holds the
-- results. If not, the tombstone commits, and the batch, were it still running somewhere,
-- can never commit: its own insert of the token would violate the primary key. An insert
-- that meets the batch's uncommitted row waits for the batch to end, so the answer is
-- never a guess.
--
-- Tokens are UUIDs whose first 48 bits are the time in milliseconds (UUID version 7), so
-- new rows go to the right edge of the index and old ones are deleted by a range of the
-- primary key (the server does it now and then, outside the write lock); created_at, the
-- database's clock, keeps a server with a clock far behind from having rows deleted early.
CREATE TABLE IF NOT EXISTS write_batches (
  token      uuid PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  order_ids  bigint[],
  outcomes   text[]
);
