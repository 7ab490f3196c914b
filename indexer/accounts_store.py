"""Users and web sessions: the interface, and its SQLite backend (`accounts.db` beside the data; Elasticsearch:
indexer/es_accounts.py). Tokens are kept only as sha256 hashes: they are 256-bit random strings, so a fast hash is
enough and a stolen file reveals no usable token."""
from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path

from indexer.sqlite_conn import open_sqlite
from models.accounts import Role, User

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role INTEGER NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    disabled INTEGER NOT NULL DEFAULT 0, created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_hash TEXT NOT NULL, expires_us INTEGER NOT NULL
);
"""


def _us(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


class AccountStore(ABC):
    @abstractmethod
    def add_user(self, user: User, token_hash: str) -> None:
        """Store a new user with its token's hash; a name that is taken raises KeyError."""

    @abstractmethod
    def users(self) -> list[User]:
        """By name."""

    @abstractmethod
    def user_by_name(self, name: str) -> User | None: ...

    @abstractmethod
    def user_by_token(self, token_hash: str) -> User | None:
        """Asked on every API request: it must see a token the moment it is set."""

    @abstractmethod
    def set_token(self, user_id: str, token_hash: str) -> None:
        """A new token; the old one stops working and every session opened with it ends."""

    @abstractmethod
    def set_disabled(self, user_id: str, disabled: bool) -> None:
        """Disabling also ends the user's sessions."""

    @abstractmethod
    def add_session(self, id_hash: str, user_id: str, csrf_hash: str, expires: datetime) -> None: ...

    @abstractmethod
    def session(self, id_hash: str) -> tuple[User, str] | None:
        """The session's user and CSRF hash, while it has not expired."""

    @abstractmethod
    def end_session(self, id_hash: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


class SQLiteAccountStore(AccountStore):
    def __init__(self, path: Path):
        self.conn = open_sqlite(path, "foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()

    def add_user(self, user: User, token_hash: str) -> None:
        created = user.created_at or datetime.now(timezone.utc)
        try:
            with self.lock:
                self.conn.execute("INSERT INTO users VALUES (?,?,?,?,?,?)",
                                  (user.id, user.name, int(user.role), token_hash, int(user.disabled), _us(created)))
        except sqlite3.IntegrityError:
            raise KeyError(user.name) from None

    def users(self) -> list[User]:
        with self.lock:
            rows = self.conn.execute("SELECT id, name, role, disabled, created_us FROM users ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    def user_by_name(self, name: str) -> User | None:
        with self.lock:
            row = self.conn.execute("SELECT id, name, role, disabled, created_us FROM users WHERE name=?",
                                    (name,)).fetchone()
        return _user(row) if row else None

    def user_by_token(self, token_hash: str) -> User | None:
        with self.lock:
            row = self.conn.execute("SELECT id, name, role, disabled, created_us FROM users WHERE token_hash=?",
                                    (token_hash,)).fetchone()
        return _user(row) if row else None

    def set_token(self, user_id: str, token_hash: str) -> None:
        with self.lock:
            self.conn.execute("UPDATE users SET token_hash=? WHERE id=?", (token_hash, user_id))
            self.conn.execute("DELETE FROM sessions WHERE user_id=?", (user_id,))

    def set_disabled(self, user_id: str, disabled: bool) -> None:
        with self.lock:
            self.conn.execute("UPDATE users SET disabled=? WHERE id=?", (int(disabled), user_id))
            if disabled:
                self.conn.execute("DELETE FROM sessions WHERE user_id=?", (user_id,))

    def add_session(self, id_hash: str, user_id: str, csrf_hash: str, expires: datetime) -> None:
        with self.lock:
            self.conn.execute("DELETE FROM sessions WHERE expires_us < ?", (_us(datetime.now(timezone.utc)),))
            self.conn.execute("INSERT INTO sessions VALUES (?,?,?,?)", (id_hash, user_id, csrf_hash, _us(expires)))

    def session(self, id_hash: str) -> tuple[User, str] | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT u.id, u.name, u.role, u.disabled, u.created_us, s.csrf_hash FROM sessions s "
                "JOIN users u ON u.id = s.user_id WHERE s.id_hash=? AND s.expires_us >= ?",
                (id_hash, _us(datetime.now(timezone.utc)))).fetchone()
        return (_user(row[:5]), row[5]) if row else None

    def end_session(self, id_hash: str) -> None:
        with self.lock:
            self.conn.execute("DELETE FROM sessions WHERE id_hash=?", (id_hash,))

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _user(row: tuple) -> User:
    return User(row[0], row[1], Role(row[2]), bool(row[3]), datetime.fromtimestamp(row[4] / 1e6, tz=timezone.utc))
