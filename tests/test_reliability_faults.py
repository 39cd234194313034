"""Plex faults end to end: outages, resets, hangs, 429, a revoked token, deleted items.

Real plexapi against the Plex emulator's injected faults. Time is faked, never
slept: ``_fake_time`` moves the breaker's ``opened_at``/``trial_started`` and
every waiting job's ``due_at`` back (as if that many seconds had passed), and
``env.make_retries_due`` makes every waiting retry due now.
"""

import re
import sqlite3
import time

from common.locking import FileLock
from tests.e2e import PLEX_TOKEN, Env, env  # noqa: F401
from tests.reliability import record, wait_until
from tests.reliability import change_scenes as _change, stale_scenes as _stale
from worker.breaker import CircuitBreaker

IDLE = {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}


def _scenes(env, n, first=1):
    scenes = {}
    for i in range(first, first + n):
        sid, rk = env.scene_with_item(i)
        scenes[sid] = rk
    return scenes


def _breaker(env):
    return CircuitBreaker(env.runner.data_dir / "queue" / "data.db").status()


def _fake_time(env, seconds):
    """As if ``seconds`` had passed: for the breaker's timers and every waiting job."""
    with sqlite3.connect(str(env.runner.data_dir / "queue" / "data.db")) as conn:
        conn.execute("UPDATE plexsync_breaker SET opened_at = opened_at - ?, trial_started = trial_started - ?",
                     (seconds, seconds))
    queue = env.queue()
    try:
        queue.shift_due(seconds)
    finally:
        queue.close()


def _processed(env):
    stats = env.stats()
    return stats["ready"] == 0 and stats["in_progress"] == 0


def _attempts(env):
    from sync_queue.queue import JobQueue

    queue = JobQueue(str(env.runner.data_dir / "queue"))
    try:
        return {job["scene_id"]: job.get("attempts", 0) for job in queue.pending_jobs(10_000)}
    finally:
        queue.close()


def _hold_worker_lock(env):
    """Stop the background worker and keep others from starting: only explicit tasks drain."""
    lock = FileLock(env.runner.data_dir / "worker.lock")

    def take():
        env.runner.kill_workers()
        return lock.acquire()

    wait_until(take, 30, message="the worker lock")
    return lock


def _status(env) -> str:
    result = env.runner.run_task("Queue Status")
    return re.search(r"Circuit breaker: (\w+)", result.output).group(1)


def test_maintenance_outage_opens_breaker_and_nothing_hammers_plex(env):
    scenes = _scenes(env, 120)
    ids = sorted(scenes)
    env.hook(ids[0])
    env.settle()
    env.plex.fault(status=503)  # maintenance starts
    down_at = len(env.plex.requests)
    _change(env, scenes, "during outage")
    env.hook(ids[0])
    # CLOSED -> OPEN: each failed batch is one breaker failure; retries are made due at once.
    while _breaker(env)["state"] != "open":
        wait_until(lambda: _processed(env) or _breaker(env)["state"] == "open", 60,
                   message="the worker to try the due jobs")
        env.make_retries_due()
    assert _breaker(env)["failures"] == 5
    opened_at = len(env.plex.requests)
    before_open = opened_at - down_at

    # OPEN: real time passes and every job is made due once more: nothing may
    # reach Plex, and each job is put back once per time it fell due (the
    # peer's nack loop retried the same jobs 27,658 times).
    time.sleep(1.5)
    env.make_retries_due()
    wait_until(lambda: _processed(env), 60, message="the due jobs to be postponed")
    time.sleep(1.0)
    postponed = env.runner.worker_log().count("Circuit breaker open: Plex paused")  # one line per batch put back
    assert len(env.plex.requests) == opened_at
    assert postponed <= 2 * len(scenes)

    # The state is in the queue database: another process sees it and stays away from Plex too.
    # From here on only the tasks this test runs drain (the test holds worker.lock).
    lock = _hold_worker_lock(env)
    env.make_retries_due()
    result = env.runner.run_task("Process Queue")
    assert result.error is None and "failed" in result.output
    assert _status(env) == "open"
    requests_while_open = len(env.plex.requests) - opened_at
    assert requests_while_open == 0

    # HALF_OPEN after the recovery time: one trial batch, Plex still down: open again.
    _fake_time(env, 61)
    assert _status(env) == "half_open"
    before_trial = len(env.plex.requests)
    env.runner.run_task("Process Queue")
    trial_requests = len(env.plex.requests) - before_trial
    assert 1 <= trial_requests <= 3
    assert _breaker(env)["state"] == "open"

    # Plex is back before any job used up its retries: everything syncs, nothing in the DLQ.
    env.plex.clear_faults()
    attempts = max(_attempts(env).values())
    _fake_time(env, 61)
    lock.release()
    result = env.runner.run_task("Process Queue")
    assert result.error is None
    env.settle()
    record("plex: 503 maintenance outage", jobs=len(scenes), requests_until_open=before_open,
           requests_while_open=requests_while_open, half_open_trial_requests=trial_requests,
           requests_while_down=before_trial - down_at + trial_requests, batches_postponed_while_open=postponed,
           most_attempts_used=attempts, dlq=len(env.dlq()))
    assert _breaker(env)["state"] == "closed"
    assert env.dlq() == []
    assert not _stale(env, scenes)
    assert env.stats() == IDLE


def test_outage_longer_than_the_retry_window_dead_letters_then_requeues(env):
    scenes = _scenes(env, 3)
    env.plex.fault(status=503)
    _change(env, scenes, "long outage")
    env.hook(min(scenes))
    rounds = 0
    while not env.dlq():
        wait_until(lambda: _processed(env) or env.dlq(), 60, message="the worker to try the due jobs")
        rounds += 1
        assert rounds < 30
        _fake_time(env, 100)  # 100 s pass per round, more than any single backoff or the breaker's recovery
        if env.runner.worker_pid() is None:
            env.runner.run_task("Process Queue")
    env.settle()
    entries = env.dlq()
    assert {e["scene_id"] for e in entries} == set(scenes)
    for entry in entries:
        assert entry["error_type"] == "PlexUnavailable" and "503" in entry["error_message"]
        assert entry["retry_count"] == 6  # max_retries (5) + the first attempt
    # After the fix (Plex is back) the user runs "Retry Failed Jobs".
    env.plex.clear_faults()
    _fake_time(env, 61)
    result = env.runner.run_task("Retry Failed Jobs")
    env.settle()
    record("plex: outage longer than the retry window", jobs=len(scenes), dead_lettered=len(entries),
           attempts_each=entries[0]["retry_count"], synced_after_requeue=len(scenes) - len(_stale(env, scenes)))
    assert result.error is None and result.output.startswith(f"Requeued {len(scenes)}")
    assert env.dlq() == [] and not _stale(env, scenes)


def test_resets_and_429_are_retried_never_dead_lettered(env):
    scenes = _scenes(env, 4)
    env.plex.fault(reset=True, times=2)
    env.plex.fault(status=429, times=2)
    _change(env, scenes, "flaky")
    env.hook(min(scenes))
    rounds = 0
    while _stale(env, scenes):
        wait_until(lambda: _processed(env), 60, message="the worker to try the due jobs")
        rounds += 1
        assert rounds < 10
        _fake_time(env, 100)
    env.settle()
    record("plex: connection resets and 429", faults_injected=4, retry_rounds=rounds, dlq=len(env.dlq()))
    assert env.dlq() == [] and _breaker(env)["state"] == "closed"


def test_server_hanging_past_read_timeout_is_retried(tmp_path):
    env = Env(tmp_path, settings={"read_timeout": 5})
    try:
        scenes = _scenes(env, 2)
        env.plex.fault(hang=6.5, times=1, method="PUT")  # Plex applies it late; the client gave up
        _change(env, scenes, "hang")
        env.hook(min(scenes))
        wait_until(lambda: env.stats()["waiting_retry"] or not _stale(env, scenes), 60,
                   message="the timed-out job to wait for a retry")
        assert "timed out" in env.runner.worker_log()
        env.make_retries_due()
        env.settle()
        record("plex: server hangs past read_timeout", hung_requests=1, dlq=len(env.dlq()))
        assert env.dlq() == [] and not _stale(env, scenes)
    finally:
        env.close()


def test_token_revoked_dead_letters_with_reason_then_requeues_after_fix(env):
    scenes = _scenes(env, 30)
    first = min(scenes)
    env.hook(first)
    env.settle()
    env.plex.token = "rotated-token-9876543210"  # the user signed out everywhere
    before = len(env.plex.requests)
    _change(env, scenes, "revoked")
    env.hook(first)
    env.settle()
    entries = env.dlq()
    requests = len(env.plex.requests) - before
    assert len(entries) == len(scenes)
    assert all(e["error_type"] == "PlexAuthError" and "plex_token" in e["error_message"] for e in entries)
    assert PLEX_TOKEN not in str(entries)
    assert requests <= 2  # one refused connection per batch, no retries
    assert _breaker(env)["failures"] == 0  # a bad token is not an outage
    env.settings(plex_token="rotated-token-9876543210")  # the fix
    result = env.runner.run_task("Retry Failed Jobs")
    env.settle()
    record("plex: token revoked (401)", jobs=len(scenes), dead_lettered=len(entries), requests_with_bad_token=requests,
           synced_after_fix=len(scenes) - len(_stale(env, scenes)))
    assert result.error is None
    assert env.dlq() == [] and not _stale(env, scenes)


def _rescan(env, sid):
    """Plex scans the scene's file again: a new item (new rating key), titled from the file name."""
    path = env.stash.scene(sid)["files"][0]
    return env.plex.add_item(env.section, path.rsplit("/", 1)[1].rsplit(".", 1)[0], [path])


def test_item_deleted_in_plex_waits_for_a_scan_and_is_not_an_outage(env):
    scenes = _scenes(env, 8)
    ids = sorted(scenes)
    env.hook(ids[0])
    _change(env, scenes, "first")
    env.settle()
    gone = ids[:6]
    for sid in gone:
        env.plex.delete_item(scenes[sid])
    _change(env, scenes, "second")
    env.hook(ids[0])
    wait_until(lambda: len(env.plex.scans) >= 1 and _processed(env), 60, message="the not-found round")
    assert not _stale(env, {sid: scenes[sid] for sid in ids[6:]})  # Plex is up: the others synced
    # Several rounds of "not in Plex": never a breaker failure, never a pause for the others.
    for n in range(6):
        env.make_retries_due()
        wait_until(lambda: _processed(env), 60, message="a not-found round")
    breaker = _breaker(env)
    assert breaker["state"] == "closed" and breaker["failures"] == 0
    # Plex scans the files again (new rating keys): the jobs find them.
    for sid in gone[:5]:
        scenes[sid] = _rescan(env, sid)
    env.make_retries_due()
    wait_until(lambda: _processed(env), 60, message="the rescanned items to sync")
    # One file never comes back: after the long not-found schedule it goes to the DLQ, with the reason.
    rounds = 0
    while not env.dlq():
        env.make_retries_due()
        wait_until(lambda: _processed(env), 60, message="a not-found round")
        rounds += 1
        assert rounds < 20
    env.settle()
    (entry,) = env.dlq()
    record("plex: item deleted in Plex", not_found_rounds=6 + rounds, breaker_failures=breaker["failures"],
           rescanned_synced=5 - len(_stale(env, {sid: scenes[sid] for sid in gone[:5]})),
           dead_lettered=1, attempts=entry["retry_count"])
    assert entry["scene_id"] == gone[5] and entry["error_type"] == "PlexNotFound"
    assert "not in Plex" in entry["error_message"]
    assert not _stale(env, {sid: scenes[sid] for sid in ids if sid != gone[5]})
    # The user restores the file in Plex, then "Retry Failed Jobs".
    scenes[gone[5]] = _rescan(env, gone[5])
    result = env.runner.run_task("Retry Failed Jobs")
    env.settle()
    assert result.error is None and env.dlq() == [] and not _stale(env, scenes)
