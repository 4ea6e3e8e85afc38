-- portwall panel schema, SQLite flavour. Keep in step with migrations/postgres.
-- Booleans are BIGINT 0/1 and times are unix milliseconds, so both backends
-- decode the same Rust types.

CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL,
    bridge_from BIGINT NOT NULL
);
INSERT INTO meta (id, revision, bridge_from) VALUES (1, 0, 0);

CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    login TEXT NOT NULL UNIQUE,
    customer_id BIGINT REFERENCES customers (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    customer_id BIGINT REFERENCES customers (id) ON DELETE CASCADE,
    zone TEXT,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    ipv4 TEXT NOT NULL,
    ipv6 TEXT NOT NULL,
    zone TEXT NOT NULL,
    labels TEXT NOT NULL,
    policy_revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX servers_zone ON servers (zone, policy_revision);
CREATE INDEX servers_customer ON servers (customer_id, id);

CREATE TABLE server_tombstones (
    server_id BIGINT NOT NULL,
    zone TEXT NOT NULL,
    revision BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX server_tombstones_zone ON server_tombstones (zone, revision);

CREATE TABLE server_status (
    server_id BIGINT PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    edge TEXT NOT NULL,
    realized_revision BIGINT,
    error TEXT,
    error_revision BIGINT,
    reported_at BIGINT NOT NULL
);

CREATE TABLE firewalls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    active BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (customer_id, name)
);
CREATE INDEX firewalls_customer ON firewalls (customer_id, id);

CREATE TABLE rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    firewall_id BIGINT NOT NULL REFERENCES firewalls (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    port_start BIGINT,
    port_end BIGINT,
    sources TEXT NOT NULL,
    source_count BIGINT NOT NULL,
    description TEXT NOT NULL,
    enabled BIGINT NOT NULL
);
CREATE INDEX rules_firewall ON rules (firewall_id, position);

CREATE TABLE assignments (
    firewall_id BIGINT NOT NULL REFERENCES firewalls (id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (firewall_id, server_id)
);
CREATE INDEX assignments_server ON assignments (server_id);

CREATE TABLE selectors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    firewall_id BIGINT NOT NULL REFERENCES firewalls (id) ON DELETE CASCADE,
    selector TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (firewall_id, selector)
);

CREATE TABLE counters (
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    rule_id BIGINT NOT NULL,
    packets BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (server_id, rule_id)
);

CREATE TABLE edges (
    zone TEXT NOT NULL,
    name TEXT NOT NULL,
    revision BIGINT NOT NULL,
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (zone, name)
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id BIGINT,
    actor TEXT NOT NULL,
    customer_id BIGINT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    revision BIGINT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_customer ON audit (customer_id, id);
