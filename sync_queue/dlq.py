"""Dead-letter queue: jobs that failed for good, with the reason, kept for review.

Rows hold the job, the error type and message, a stack trace with secrets
scrubbed, the retry count and when it failed. ``requeue`` puts them back.
"""

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

from common.log import scrub
from common.sqlite import opened

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dlq (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scene_id INTEGER,
    job_key TEXT,
    job_data TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    stack_trace TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dlq_failed_at ON dlq(failed_at);
CREATE INDEX IF NOT EXISTS dlq_scene ON dlq(scene_id);
"""


class DeadLetterQueue:
    def __init__(self, path: "str | os.PathLike[str]", clock: Callable[[], float] = time.time) -> None:
        self.path = os.fspath(path)
        self.clock = clock
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
        if os.name == "posix":
            os.chmod(self.path, 0o600)

    def _connect(self, write: bool = False):
        return opened(self.path, write=write)

    def add(self, job: Dict[str, Any], error: BaseException, stack_trace: str = "") -> int:
        data = dict(job)
        data.pop("pqid", None)
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO dlq (scene_id, job_key, job_data, error_type, error_message,"
                " stack_trace, retry_count, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.get("scene_id"), job.get("job_key"), scrub(json.dumps(data)),
                 type(error).__name__, scrub(str(error))[:2000], scrub(stack_trace)[:20000],
                 int(job.get("attempts", 0)), self.clock()))
            return int(cur.lastrowid)

    def count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM dlq").fetchone()[0]

    def list(self, limit: int = 50, scene_id: Optional[int] = None) -> List[Dict[str, Any]]:
        sql = ("SELECT id, scene_id, job_key, job_data, error_type, error_message, retry_count, failed_at"
               " FROM dlq")
        args: tuple = ()
        if scene_id is not None:
            sql += " WHERE scene_id = ?"
            args = (scene_id,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(sql, args + (limit,)).fetchall()
        keys = ("id", "scene_id", "job_key", "job_data", "error_type", "error_message", "retry_count", "failed_at")
        out = []
        for row in rows:
            entry = dict(zip(keys, row))
            entry["job_data"] = json.loads(entry["job_data"])
            out.append(entry)
        return out

    def top_errors(self, limit: int = 5) -> List[Dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT error_type, COUNT(*) AS n FROM dlq GROUP BY error_type ORDER BY n DESC LIMIT ?",
                (limit,)).fetchall()
        return [{"error_type": t, "count": n} for t, n in rows]

    def requeue(self, queue: Any, scene_id: Optional[int] = None) -> int:
        """Move entries (all, or one scene's) back to ``queue`` with a fresh retry count.

        Jobs are put before their rows are deleted: a crash in between leaves a
        duplicate (harmless, jobs coalesce per scene), never a lost job.
        """
        with self._connect() as conn:
            if scene_id is None:
                rows = conn.execute("SELECT id, job_data FROM dlq ORDER BY id").fetchall()
            else:
                rows = conn.execute("SELECT id, job_data FROM dlq WHERE scene_id = ? ORDER BY id", (scene_id,)).fetchall()
        jobs = []
        for _, data in rows:
            job = json.loads(data)
            job["attempts"] = 0
            job["due_at"] = 0
            # The user may have fixed the scene in Stash: fetch it afresh.
            job.get("data", {}).pop("snapshot", None)
            jobs.append(job)
        queue.put_many(jobs)
        with self._connect() as conn:
            conn.executemany("DELETE FROM dlq WHERE id = ?", [(r[0],) for r in rows])
        return len(rows)

    def clear(self) -> int:
        with self._connect() as conn:
            return conn.execute("DELETE FROM dlq").rowcount

    def purge_older_than(self, days: float) -> int:
        cutoff = self.clock() - days * 86400
        with self._connect() as conn:
            return conn.execute("DELETE FROM dlq WHERE failed_at < ?", (cutoff,)).rowcount
