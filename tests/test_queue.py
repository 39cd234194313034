"""The job queue on a real SQLite file: coalescing, delayed retries, resume."""

import multiprocessing

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


class Clock:
    """A wall clock the test sets."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_retry_is_invisible_until_due_and_no_busy_loop(tmp_path):
    clock = Clock()
    q = _queue(tmp_path, clock=clock)
    q.put(make_job(7))
    (job,) = q.take(1)
    job["data"]["attempts"] = 1
    assert q.retry_later(job, 40) is True
    assert q.take(10) == []
    stats = q.stats()
    assert stats["waiting_retry"] == 1 and stats["ready"] == 0
    assert stats["next_retry_at"] == clock.now + 40
    clock.now += 39.9
    assert q.take(10) == []
    clock.now += 0.1
    (again,) = q.take(10)
    assert again["data"]["attempts"] == 1


def test_take_due_by_leaves_out_retries_scheduled_after_it(tmp_path):
    """A foreground drain takes only what was due when it started (the cause of a flaky task test)."""
    clock = Clock()
    q = _queue(tmp_path, clock=clock)
    q.put(make_job(1))
    started = clock.now
    (job,) = q.take(1, due_by=started)
    clock.now += 1
    q.retry_later(job, 0.0)  # full jitter can draw a delay of about 0
    assert q.take(10, due_by=started) == []
    assert [j["data"]["scene_id"] for j in q.take(10)] == [1]


def test_a_retry_due_by_the_end_of_a_task_is_still_reported_and_handed_to_a_worker(tmp_path, monkeypatch):
    """A retry whose jittered delay ran out during the task counts as left waiting (a flaky CLI test showed
    "2 waiting to retry" for 3), and a background worker is started for it."""
    from types import SimpleNamespace

    from worker.tasks import process

    clock = Clock()
    q = _queue(tmp_path, clock=clock)
    q.put_many([make_job(1), make_job(2)])
    one, two = q.take(2)
    q.retry_later(one, 30.0)
    q.retry_later(two, 0.1)
    clock.now += 1  # the task ends: scene 2's retry is due, scene 1's is not
    assert (q.stats()["ready"], q.stats()["waiting_retry"]) == (1, 1)
    started = []
    monkeypatch.setattr(process, "ensure_worker", lambda paths, conn: started.append(paths))
    assert process.waiting_note(SimpleNamespace(queue=q), "paths", None) == " (2 waiting to retry)"
    assert started == ["paths"]


def test_shift_due_and_rows_are_the_public_view_of_the_table(tmp_path):
    clock = Clock()
    q = _queue(tmp_path, clock=clock)
    q.put_many([make_job(1), make_job(2)])
    (job, _) = q.take(2)
    q.retry_later(job, 100)
    assert sorted((r["scene_id"], r["state"]) for r in q.rows()) == [(1, "pending"), (2, "in_progress")]
    q.shift_due(99)
    assert q.take(10) == []
    q.shift_due()
    assert [j["data"]["scene_id"] for j in q.take(10)] == [1]


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


def test_kept_saves_are_queued_into_the_drainers_queue_and_an_unreadable_one_is_dropped(tmp_path):
    import os

    from common import pending
    from common.paths import DataPaths
    from sync_queue.queue import open_queue

    paths = DataPaths(tmp_path / "data")
    hook = {"type": "Scene.Update.Post", "id": 7, "input": {"title": "x"}, "inputFields": ["title"]}
    pending.keep(paths, hook)
    pending.keep(paths, dict(hook, inputFields=["rating100"]))  # the same scene saved again
    with open(os.path.join(paths.pending_dir, "0-broken.json"), "w", encoding="utf-8") as fh:
        fh.write("{not json")
    queue = open_queue(paths)
    try:
        assert pending.replay(paths, queue) == 2
        assert queue.stats()["ready"] == 1  # one pending job per scene
        assert queue.pending_jobs()[0]["data"]["input_fields"] == ["rating100"]  # the newer save
        assert os.listdir(paths.pending_dir) == []
        assert pending.replay(paths, queue) == 0
    finally:
        queue.close()
