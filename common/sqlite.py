"""The one way PlexSync opens its own SQLite files and runs a transaction.

Used by the dead-letter queue, the circuit breaker, the match index and ``written.db``
(persist-queue manages the job queue's connections itself). Autocommit mode
(``isolation_level=None``): nothing is in a transaction unless ``transaction``
opens one, and read-modify-write takes the write lock up front (BEGIN
IMMEDIATE), so two processes never both read the old row and both write.
"""

import contextlib
import os
import sqlite3
from typing import Iterator

from common import defaults


def connect(path: "str | os.PathLike[str]", *, wal: bool = True, synchronous: str = "") -> sqlite3.Connection:
    """A connection in autocommit mode; WAL so readers never block the writer."""
    conn = sqlite3.connect(os.fspath(path), timeout=defaults.SQLITE_BUSY_TIMEOUT, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    if synchronous:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def connect_private(path: "str | os.PathLike[str]") -> sqlite3.Connection:
    """``connect`` for PlexSync's own files: parent folder made, owner-only when new,
    WAL with synchronous=NORMAL (a power cut may lose the last commits of these
    caches and records, never corrupt them)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fresh = not os.path.exists(path)
    conn = connect(path, synchronous="NORMAL")
    if fresh and os.name == "posix":
        os.chmod(path, 0o600)  # file paths, what was written: private
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def opened(path: "str | os.PathLike[str]", *, wal: bool = True, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A short-lived connection, closed on exit; in one transaction if ``write``."""
    with contextlib.closing(connect(path, wal=wal)) as conn:
        if write:
            with transaction(conn):
                yield conn
        else:
            yield conn
