-- The ledger learns the client API of each attempt and the prompt cache.
-- Keep equivalent to ../postgres/0005_usage_api_cache.sql.
ALTER TABLE usage_events ADD COLUMN api TEXT NOT NULL DEFAULT 'chat';
ALTER TABLE usage_events ADD COLUMN cache_creation_tokens BIGINT NOT NULL DEFAULT 0
    CHECK (cache_creation_tokens >= 0);
ALTER TABLE usage_events ADD COLUMN cache_read_price_per_mtok TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN cache_write_price_per_mtok TEXT NOT NULL DEFAULT '';
