-- Indexes for lookups that scanned a whole table: a customer's tokens
-- (GET /v1/tokens, and the ON DELETE CASCADE of a customer), a customer's
-- logins, a user's sessions (cascade on user deletion) and expired sessions
-- (swept at every login).
CREATE INDEX IF NOT EXISTS tokens_customer ON tokens (customer_id, id);
CREATE INDEX IF NOT EXISTS users_customer ON users (customer_id);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);
