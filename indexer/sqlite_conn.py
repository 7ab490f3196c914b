"""How every SQLite file of the embedded default is opened: one place, so the stores agree on it."""
from __future__ import annotations

import sqlite3
from pathlib import Path


def open_sqlite(path: Path, *pragmas: str, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection the threads of a process share (each store guards it with its own lock), in autocommit so that
    transactions are explicit, in WAL so that readers never wait for the writer and several processes (API
    replicas, queue workers) can share the file; `timeout` is how long a writer waits for another's lock."""
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=timeout)
    conn.execute("PRAGMA journal_mode=WAL")
    for pragma in pragmas:
        conn.execute(f"PRAGMA {pragma}")
    return conn
