-- The key that signs Redis cache entries (server/cache/cached-store.ts). Redis may be
-- reachable and writable by others; an entry is believed only with a valid HMAC under
-- this key, which only PostgreSQL holds, so nothing written to Redis by anyone else can
-- change an answer. One row, made once: 32 bytes from two gen_random_uuid() values
-- (PostgreSQL's strong random source; 244 random bits).
CREATE TABLE IF NOT EXISTS cache_secret (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  secret    bytea NOT NULL DEFAULT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
    CHECK (octet_length(secret) >= 32)
);
INSERT INTO cache_secret DEFAULT VALUES ON CONFLICT DO NOTHING;
