"""The job queue on a real SQLite file: coalescing, delayed retries, resume."""

import multiprocessing
import time

from sync_queue.queue import JobQueue, make_job


def _queue(tmp_path, **kw):
    return JobQueue(str(tmp_path / "queue"), **kw)


def test_one_pending_job_per_scene_latest_wins(tmp_path):
    q = _queue(tmp_path)
    q.put(make_job(1, data={"v": 1}))
    q.put(make_job(1, data={"v": 2}))
    q.put(make_job(2))
    assert q.stats()["ready"] == 2
    jobs = q.take(10)
    assert [(j["data"]["scene_id"], j["data"]["data"]) for j in jobs] == [(1, {"v": 2}), (2, {})]


def test_event_during_processing_gets_its_own_row(tmp_path):
    q = _queue(tmp_path)
    q.put(make_job(1, data={"v": 1}))
    (job,) = q.take(1)
    q.put(make_job(1, data={"v": 2}))
    assert q.stats() == {"ready": 1, "waiting_retry": 0, "in_progress": 1, "next_retry_at": None}
    # The in-flight job wants a retry, but a newer event is pending: it wins.
    assert q.retry_later(job, 30) is False
    (newer,) = q.take(5)
    assert newer["data"]["data"] == {"v": 2}


def test_retry_is_invisible_until_due_and_no_busy_loop(tmp_path):
    q = _queue(tmp_path)
    q.put(make_job(7))
    (job,) = q.take(1)
    job["data"]["attempts"] = 1
    assert q.retry_later(job, 0.4) is True
    assert q.take(10) == []
    stats = q.stats()
    assert stats["waiting_retry"] == 1 and stats["ready"] == 0
    assert stats["next_retry_at"] > time.time()
    time.sleep(0.5)
    (again,) = q.take(10)
    assert again["data"]["attempts"] == 1


def test_done_purges_rows(tmp_path):
    q = _queue(tmp_path)
    q.put_many([make_job(i) for i in range(1, 6)])
    for job in q.take(10):
        q.done(job)
    count = q._getter.execute(f"SELECT COUNT(*) FROM {q._table_name}").fetchone()[0]
    assert count == 0


def test_resume_only_when_asked_and_superseded_rows_dropped(tmp_path):
    q = _queue(tmp_path)
    q.put_many([make_job(1), make_job(2)])
    q.take(2)  # both in flight, then the "drainer" dies
    q.put(make_job(2, data={"new": True}))
    q.close()
    other = _queue(tmp_path)  # a hook or second process: must not steal in-flight rows
    assert other.stats()["in_progress"] == 2
    other.close()
    holder = _queue(tmp_path, resume=True)
    jobs = holder.take(10)
    assert sorted((j["data"]["scene_id"], j["data"]["data"].get("new", False)) for j in jobs) == [(1, False), (2, True)]


def _producer(path, start, n):
    q = JobQueue(path)
    for i in range(start, start + n):
        q.put(make_job(i))
        q.put(make_job(i))  # duplicate coalesces
    q.close()


def test_concurrent_producers_coalesce_without_lock_errors(tmp_path):
    path = str(tmp_path / "queue")
    JobQueue(path).close()
    procs = [multiprocessing.Process(target=_producer, args=(path, k * 100, 50)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert JobQueue(path).stats()["ready"] == 200
