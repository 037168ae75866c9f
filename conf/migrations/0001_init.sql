-- 0001_init.sql -- the tables the shipped conf/waituntil.conf writes to.
-- Migrations run in file-name order, each once.

CREATE TABLE IF NOT EXISTS logs (
    id        INTEGER PRIMARY KEY,
    method    TEXT NOT NULL,
    path      TEXT NOT NULL,
    timestamp TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id        TEXT PRIMARY KEY,
    name      TEXT,
    last_seen TEXT
);

CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP
);
