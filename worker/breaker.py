"""Circuit breaker for Plex, persisted in SQLite so every process shares it.

CLOSED counts consecutive Plex failures; at ``threshold`` it OPENs and no
request goes to Plex for ``recovery`` seconds; then one HALF_OPEN trial runs:
success closes, failure re-opens. State is derived from the stored row on
every read (wall clock), so a restart never leaves a stale "outage".
"Not in Plex yet" (PlexNotFound) is not a failure: callers do not record it.
"""

import os
import time
from typing import Any, Callable, Dict

from common import defaults
from common.sqlite import opened

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, db_path: "str | os.PathLike[str]", threshold: int = defaults.BREAKER_THRESHOLD,
                 recovery: float = defaults.BREAKER_RECOVERY,
                 clock: Callable[[], float] = time.time) -> None:
        self.db_path = os.fspath(db_path)
        self.threshold = threshold
        self.recovery = recovery
        self.clock = clock
        with self._tx() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS plexsync_breaker (id INTEGER PRIMARY KEY CHECK (id = 1),"
                " state TEXT NOT NULL, failures INTEGER NOT NULL, opened_at REAL, last_success REAL,"
                " last_failure REAL, trial_started REAL)")
            conn.execute("INSERT OR IGNORE INTO plexsync_breaker (id, state, failures) VALUES (1, 'closed', 0)")

    def _tx(self):
        # The queue's database: persist-queue chose its journal mode, leave it.
        return opened(self.db_path, wal=False, write=True)

    def _row(self, conn) -> Dict[str, Any]:
        cols = ("state", "failures", "opened_at", "last_success", "last_failure", "trial_started")
        row = conn.execute(f"SELECT {', '.join(cols)} FROM plexsync_breaker WHERE id = 1").fetchone()
        return dict(zip(cols, row))

    def status(self) -> Dict[str, Any]:
        with opened(self.db_path, wal=False) as conn:
            row = self._row(conn)
        now = self.clock()
        if row["state"] == OPEN and now >= (row["opened_at"] or 0) + self.recovery:
            row["state_effective"] = HALF_OPEN
        else:
            row["state_effective"] = row["state"]
        row["retry_at"] = (row["opened_at"] or 0) + self.recovery if row["state"] == OPEN else None
        return row

    def is_open(self) -> bool:
        """True while requests are refused (open, recovery not yet over)."""
        return self.status()["state_effective"] == OPEN

    def allow(self) -> bool:
        """May a Plex request go out now? Claims the half-open trial if due."""
        now = self.clock()
        with self._tx() as conn:
            row = self._row(conn)
            if row["state"] == CLOSED:
                return True
            if row["state"] == HALF_OPEN:
                # A trial whose process died must not block forever.
                if now - (row["trial_started"] or 0) < self.recovery:
                    return False
            elif now < (row["opened_at"] or 0) + self.recovery:
                return False
            conn.execute("UPDATE plexsync_breaker SET state = ?, trial_started = ? WHERE id = 1", (HALF_OPEN, now))
            return True

    def seconds_until_retry(self) -> float:
        row = self.status()
        if row["state"] == CLOSED:
            return 0.0
        start = row["trial_started"] if row["state"] == HALF_OPEN else row["opened_at"]
        return max(0.0, (start or 0) + self.recovery - self.clock())

    def record_success(self) -> None:
        now = self.clock()
        with self._tx() as conn:
            conn.execute("UPDATE plexsync_breaker SET state = ?, failures = 0, opened_at = NULL,"
                         " trial_started = NULL, last_success = ? WHERE id = 1", (CLOSED, now))

    def record_failure(self) -> bool:
        """Count a Plex failure; returns True if this opened the circuit."""
        now = self.clock()
        with self._tx() as conn:
            row = self._row(conn)
            failures = row["failures"] + 1
            opens = row["state"] == HALF_OPEN or (row["state"] == CLOSED and failures >= self.threshold)
            if opens:
                conn.execute("UPDATE plexsync_breaker SET state = ?, failures = ?, opened_at = ?,"
                             " trial_started = NULL, last_failure = ? WHERE id = 1", (OPEN, failures, now, now))
            else:
                conn.execute("UPDATE plexsync_breaker SET failures = ?, last_failure = ? WHERE id = 1",
                             (failures, now))
            return opens

    def reset(self) -> None:
        self.record_success()
