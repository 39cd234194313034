"""The portable lock (released on SIGKILL) and the dead-letter queue."""

import os
import signal
import subprocess
import sys
import time

from common.errors import PlexAuthError
from common.locking import FileLock
from common.log import register_secret
from sync_queue.dlq import DeadLetterQueue
from sync_queue.queue import JobQueue, make_job


def test_lock_is_exclusive_and_released_when_holder_is_killed(tmp_path):
    path = tmp_path / "x.lock"
    code = ("import sys,time; sys.path.insert(0, sys.argv[2]); from common.locking import FileLock;"
            "l=FileLock(sys.argv[1]); assert l.acquire(); print('held', flush=True); time.sleep(60)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", code, str(path), root], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"held"
    mine = FileLock(path)
    assert not mine.acquire() and mine.is_locked_elsewhere()
    assert mine.holder_pid() == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while not mine.acquire():
        assert time.time() < deadline
        time.sleep(0.01)
    assert mine.held
    mine.release()


def test_dlq_add_list_requeue_purge(tmp_path):
    register_secret("tok-0123456789-secret")
    dlq = DeadLetterQueue(tmp_path / "dlq.db")
    job = make_job(4, data={"snapshot": {"id": 4}})
    job["attempts"] = 3
    dlq.add(job, PlexAuthError("401 with tok-0123456789-secret"), "trace tok-0123456789-secret")
    (entry,) = dlq.list()
    assert entry["error_type"] == "PlexAuthError" and entry["retry_count"] == 3
    assert "tok-0123456789-secret" not in entry["error_message"]
    for f in tmp_path.glob("dlq.db*"):  # the WAL too
        assert b"tok-0123456789-secret" not in f.read_bytes()
    assert dlq.top_errors() == [{"error_type": "PlexAuthError", "count": 1}]
    q = JobQueue(str(tmp_path / "q"))
    assert dlq.requeue(q) == 1 and dlq.count() == 0
    (back,) = q.take(1)
    assert back["data"]["attempts"] == 0 and "snapshot" not in back["data"]["data"]
    dlq.add(job, PlexAuthError("x"))
    with dlq._connect() as conn:
        conn.execute("UPDATE dlq SET failed_at = failed_at - 40 * 86400")
    assert dlq.purge_older_than(30) == 1 and dlq.count() == 0
