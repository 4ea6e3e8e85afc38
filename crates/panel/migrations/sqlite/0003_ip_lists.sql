-- Customer-owned IP lists (issue #16): named sets of IPv4/IPv6 addresses and
-- networks. The entries of a list are one value, sorted and without
-- duplicates, in a compact binary form (see src/store/lists.rs): per entry
-- one byte for the family (4 or 6), one for the prefix length, then the
-- network address (4 or 16 bytes). entry_count and range_count (what the
-- entries merge into in the kernel) are kept beside it, so that listing lists
-- and checking a customer's total never decode the entries.
CREATE TABLE lists (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    entries BLOB NOT NULL,
    entry_count BIGINT NOT NULL,
    range_count BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (customer_id, name)
);
CREATE INDEX lists_customer ON lists (customer_id, id);
