-- 0001_init.sql -- the seed's tables (SQLite).
CREATE TABLE logs (
    id        INTEGER PRIMARY KEY,
    method    TEXT NOT NULL,
    path      TEXT NOT NULL,
    timestamp TEXT NOT NULL
);
CREATE TABLE users (
    id        TEXT PRIMARY KEY,
    name      TEXT,
    last_seen TEXT
);
CREATE TABLE sessions (
    id      TEXT PRIMARY KEY,
    user_id TEXT
);
