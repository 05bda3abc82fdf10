-- The ledger learns the client API of each attempt and the prompt cache:
-- `api` ('chat', 'messages' or 'embeddings'; rows before this migration
-- were chat), `cache_creation_tokens` (prompt tokens written to the
-- provider's cache; `cached_tokens` are the reads), and the cache prices
-- applied ('' = the input price). Keep equivalent to
-- ../sqlite/0005_usage_api_cache.sql. Added to the partitioned parent, so
-- every month's partition, existing or created later, has them.
ALTER TABLE usage_events ADD COLUMN api TEXT NOT NULL DEFAULT 'chat';
ALTER TABLE usage_events ADD COLUMN cache_creation_tokens BIGINT NOT NULL DEFAULT 0
    CHECK (cache_creation_tokens >= 0);
ALTER TABLE usage_events ADD COLUMN cache_read_price_per_mtok TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN cache_write_price_per_mtok TEXT NOT NULL DEFAULT '';
