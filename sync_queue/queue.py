"""The job queue: persist-queue's SQLiteAckQueue with two additions.

persist-queue stays the storage (its schema, connections, ``tran_lock``,
serializer, ack statuses and ``resume_unack_tasks``); what it lacks is added
here. Internals relied on, tested with persist-queue 1.1.0 (requirements.txt
allows >=1.1,<2): the class attributes ``_TABLE_NAME`` and ``_SQL_CREATE``
(our two extra columns), ``_init()``, ``_putter`` / ``_getter`` (its write
and read connections), ``tran_lock``, ``_serializer``, ``_unack_cache``,
``_key_column``, ``_table_name``, ``_count()``, ``total`` and the
``AckStatus`` numbers. ``get()`` is not used (it ignores ``due_at``): jobs
are taken with ``take()``.

* ``job_key`` + a partial unique index: at most one *pending* row per scene.
  A new event for a scene that already waits is merged into that row in the
  same INSERT (latest wins), so coalescing is atomic across hook processes.
  A row being processed (unack) is not pending, so an event that arrives
  mid-sync gets a row of its own and is not lost.
* ``due_at``: a retry waits in the table, invisible to ``get`` until due,
  so the worker never spins on jobs that are not ready (the peer's nack loop).

Jobs are JSON: {scene_id, update_type, data, enqueued_at, job_key, attempts}.
Only one process drains (see worker.drainer); hooks and tasks only put.
"""

import time
from typing import Any, Callable, Dict, Iterable, List, Optional

import persistqueue.serializers.json as json_serializer
from persistqueue.sqlackqueue import AckStatus, SQLiteAckQueue

from common import defaults


def make_job(scene_id: int, update_type: str = "update", data: Optional[Dict[str, Any]] = None,
             now: Optional[float] = None) -> Dict[str, Any]:
    return {
        "scene_id": int(scene_id),
        "update_type": update_type,
        "data": data or {},
        "enqueued_at": time.time() if now is None else now,
        "job_key": f"scene:{int(scene_id)}",
        "attempts": 0,
    }


class JobQueue(SQLiteAckQueue):
    """SQLiteAckQueue keyed by scene, with delayed retries."""

    _TABLE_NAME = "plexsync_jobs"
    _SQL_CREATE = (
        "CREATE TABLE IF NOT EXISTS {table_name} ("
        "{key_column} INTEGER PRIMARY KEY AUTOINCREMENT, "
        "data BLOB, timestamp FLOAT, status INTEGER, "
        "job_key TEXT NOT NULL DEFAULT '', due_at FLOAT NOT NULL DEFAULT 0)"
    )

    def __init__(self, path: str, *, resume: bool = False, timeout: float = defaults.SQLITE_BUSY_TIMEOUT,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # wall clock (epoch s): due_at is compared across processes
        # auto_resume would steal rows another live process holds; only the
        # drain-lock holder calls resume_unack_tasks() (see worker.drainer).
        super().__init__(path, auto_resume=False, multithreading=True, timeout=timeout,
                         serializer=json_serializer)
        if resume:
            self.resume_unack_tasks()

    def get(self, *args, **kwargs):
        raise NotImplementedError("JobQueue.get ignores due_at; use take()")

    def _init(self) -> None:
        super()._init()
        t = self._table_name
        with self.tran_lock, self._putter as conn:
            conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS plexsync_jobs_pending ON {t}(job_key) WHERE status < {AckStatus.unack}")
            conn.execute(f"CREATE INDEX IF NOT EXISTS plexsync_jobs_status ON {t}(status, due_at)")
        self.total = self._count()

    # -- producers -----------------------------------------------------------

    _UPSERT = (
        "INSERT INTO {t} (data, timestamp, status, job_key, due_at) VALUES (?, ?, %s, ?, ?) "
        "ON CONFLICT(job_key) WHERE status < %s DO UPDATE SET "
        "data = excluded.data, timestamp = excluded.timestamp, due_at = excluded.due_at"
        % (AckStatus.inited, AckStatus.unack)
    )

    def put(self, item: Dict[str, Any]) -> Optional[int]:
        """Enqueue ``item``; replaces the scene's pending job if there is one."""
        self.put_many([item])
        self.put_event.set()
        return None

    def put_many(self, items: Iterable[Dict[str, Any]]) -> int:
        """Enqueue many jobs in one transaction (Sync All); returns the count."""
        now = self.clock()
        rows = [(self._serializer.dumps(item), now, item["job_key"], float(item.get("due_at", 0)))
                for item in items]
        if not rows:
            return 0
        sql = self._UPSERT.format(t=self._table_name)
        with self.tran_lock, self._putter as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
        return len(rows)

    # -- the drainer ----------------------------------------------------------

    _TAKE = (
        "SELECT {key}, data, timestamp FROM {t} WHERE status < %s "
        "AND due_at <= ? ORDER BY {key} ASC LIMIT ?" % AckStatus.unack
    )

    def take(self, limit: int, due_by: Optional[float] = None) -> List[Dict[str, Any]]:
        """Up to ``limit`` due jobs as raw dicts ``{pqid, data, timestamp}``, oldest first.

        ``due_by`` (epoch s, at most now) leaves out jobs due later, e.g.
        retries scheduled during a foreground drain that started then.
        One transaction for the whole batch (``get`` would commit, and so
        fsync, once per job): the rows are selected and marked in flight
        together, so a crash leaves either all or none of them unacked.
        """
        key, t = self._key_column, self._table_name
        now = self.clock()
        due = now if due_by is None else min(now, due_by)
        with self.tran_lock, self._putter as conn:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(self._TAKE.format(key=key, t=t), (due, int(limit))).fetchall()
            conn.executemany(f"UPDATE {t} SET status = {AckStatus.unack} WHERE {key} = ?",
                             [(row[0],) for row in rows])
        jobs = []
        for pqid, data, timestamp in rows:
            item = self._serializer.loads(data)
            self._unack_cache[pqid] = item
            jobs.append({"pqid": pqid, "data": item, "timestamp": timestamp})
        self.total -= len(jobs)
        return jobs

    def retry_later(self, raw: Dict[str, Any], delay: float) -> bool:
        """Put an in-flight job back, due in ``delay`` seconds.

        If a newer event for the scene is already pending, that job wins and
        this one is dropped (acked). Returns False in that case.
        """
        job = raw["data"]
        t = self._table_name
        with self.tran_lock, self._putter as conn:
            conn.execute("BEGIN IMMEDIATE")
            newer = conn.execute(
                f"SELECT 1 FROM {t} WHERE job_key = ? AND status < {AckStatus.unack}",
                (job["job_key"],)).fetchone()
            if newer:
                conn.execute(f"DELETE FROM {t} WHERE {self._key_column} = ?", (raw["pqid"],))
            else:
                conn.execute(
                    f"UPDATE {t} SET status = {AckStatus.ready}, data = ?, due_at = ? WHERE {self._key_column} = ?",
                    (self._serializer.dumps(job), self.clock() + delay, raw["pqid"]))
        self._unack_cache.pop(raw["pqid"], None)
        return not newer

    def done(self, raw: Dict[str, Any]) -> None:
        """Ack and purge a finished job (acked rows only slow ``get`` down)."""
        self.done_many([raw])

    def done_many(self, raws: Iterable[Dict[str, Any]]) -> None:
        """Ack and purge finished jobs in one transaction (one fsync per batch)."""
        ids = [(raw["pqid"],) for raw in raws]
        if not ids:
            return
        with self.tran_lock, self._putter as conn:
            conn.executemany(f"DELETE FROM {self._table_name} WHERE {self._key_column} = ?", ids)
        for (pqid,) in ids:
            self._unack_cache.pop(pqid, None)

    def resume_unack_tasks(self) -> None:
        """Make jobs orphaned by a dead drainer pending again (lock holder only).

        A job superseded by a newer pending row for the same scene is dropped.
        """
        t = self._table_name
        with self.tran_lock, self._putter as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"UPDATE OR IGNORE {t} SET status = {AckStatus.ready} WHERE status = {AckStatus.unack}")
            conn.execute(f"DELETE FROM {t} WHERE status = {AckStatus.unack}")
            conn.execute(f"DELETE FROM {t} WHERE status IN ({AckStatus.acked}, {AckStatus.ack_failed})")
        self.total = self._count()

    # -- statistics (SQL, truthful across processes) ---------------------------

    def stats(self) -> Dict[str, Any]:
        t = self._table_name
        now = self.clock()
        row = self._getter.execute(
            f"SELECT "
            f"SUM(CASE WHEN status < {AckStatus.unack} AND due_at <= ? THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN status < {AckStatus.unack} AND due_at > ? THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN status = {AckStatus.unack} THEN 1 ELSE 0 END), "
            f"MIN(CASE WHEN status < {AckStatus.unack} AND due_at > ? THEN due_at END) "
            f"FROM {t}", (now, now, now)).fetchone()
        return {
            "ready": row[0] or 0,
            "waiting_retry": row[1] or 0,
            "in_progress": row[2] or 0,
            "next_retry_at": row[3],
        }

    def pending_jobs(self, limit: int = 100) -> List[Dict[str, Any]]:
        """Pending jobs (for status output), oldest first."""
        rows = self._getter.execute(
            f"SELECT data, due_at FROM {self._table_name} WHERE status < {AckStatus.unack} "
            f"ORDER BY {self._key_column} LIMIT ?", (limit,)).fetchall()
        out = []
        for data, due_at in rows:
            job = self._serializer.loads(data)
            job["due_at"] = due_at
            out.append(job)
        return out


    def rows(self) -> List[Dict[str, Any]]:
        """Every live row as {scene_id, state: "pending" | "in_progress"} (crash checks, status)."""
        rows = self._getter.execute(
            f"SELECT job_key, status FROM {self._table_name} WHERE status <= {AckStatus.unack}").fetchall()
        return [{"scene_id": int(key.split(":", 1)[1]), "state": "in_progress" if status == int(AckStatus.unack)
                 else "pending"} for key, status in rows]

    def shift_due(self, seconds: Optional[float] = None) -> int:
        """Bring waiting jobs ``seconds`` closer to due (all of them due now if None).

        For the command line's "retry now" and for tests that stand in for
        the passing of time in other processes. Returns the rows changed.
        """
        t = self._table_name
        with self.tran_lock, self._putter as conn:
            if seconds is None:
                cur = conn.execute(f"UPDATE {t} SET due_at = 0 WHERE status < {AckStatus.unack}")
            else:
                cur = conn.execute(f"UPDATE {t} SET due_at = due_at - ? WHERE status < {AckStatus.unack}", (seconds,))
        return cur.rowcount


def open_queue(paths, *, resume: bool = False, clock: Callable[[], float] = time.time,
               timeout: float = defaults.SQLITE_BUSY_TIMEOUT) -> JobQueue:
    paths.ensure()
    return JobQueue(str(paths.queue_dir), resume=resume, clock=clock, timeout=timeout)
