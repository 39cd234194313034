"""Stash faults end to end: restarts, expired sessions, deleted scenes, bad screenshots.

None of them may lose a change, use up a job's retries, or put something
that is not a cover into Plex.
"""

import time

import pytest

from common.locking import FileLock
from tests.e2e import env  # noqa: F401
from tests.reliability import change_scenes as _change, stale_scenes as _stale
from tests.emulators.stash import LOGIN_PAGE
from tests.reliability import Drainers, record, wait_until

IDLE = {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}


def _scenes(env, n, **fields):
    return env.scenes_with_items(n, **fields)


def _attempts(env):
    from sync_queue.queue import JobQueue

    queue = JobQueue(str(env.runner.data_dir / "queue"))
    try:
        return [job.get("attempts", 0) for job in queue.pending_jobs(10_000)]
    finally:
        queue.close()


@pytest.fixture(autouse=True)
def _scene_lines(monkeypatch):
    """The checks below read each scene's line in worker.log: debug level."""
    monkeypatch.setenv("PLEXSYNC_LOG_LEVEL", "DEBUG")


def _synced(env):
    return sum(1 for line in env.runner.worker_log().splitlines() if "synced in Plex" in line)


def _until_worker_gives_up(env, worker):
    """Postponed jobs wait 15 s: fake that time until the worker has met the outage three times."""
    for _ in range(20):
        wait_until(lambda: worker.poll() is not None or env.stats()["ready"] == env.stats()["in_progress"] == 0,
                   60, 0.05, "the worker to postpone the due jobs")
        time.sleep(0.3)  # a worker that gave up exits now; make nothing due under its feet
        if worker.poll() is not None:
            return
        env.make_retries_due()
    raise AssertionError("the worker never gave up on an unreachable Stash")


def test_stash_restarting_mid_drain_keeps_every_job_and_its_retries(env, tmp_path):
    scenes = _scenes(env, 70)
    first = min(scenes)
    env.hook(first)
    env.settle()
    env.plex.latency = 0.005  # a drain of a few seconds
    _change(env, scenes, "before restart")
    drainers = Drainers(env.runner, tmp_path / "batches.log")
    puts = env.plex.count("PUT")
    worker = drainers.start("worker")
    # Stash restarts in the middle of a batch, between two covers: its port closes.
    wait_until(lambda: env.plex.count("PUT") >= puts + 2, 60, 0.002, "the first edits")
    env.stash.fault(down=True)
    _until_worker_gives_up(env, worker)
    pending = env.stats()
    attempts = _attempts(env)
    assert "Stash unreachable 3 times in a row" in env.runner.worker_log()
    assert pending["in_progress"] == 0 and pending["ready"] + pending["waiting_retry"] == len(attempts) > 0
    assert set(attempts) == {0}, "an unreachable Stash must not use up retries"
    # Stash is back; the user's next save starts a worker that finishes everything.
    env.stash.clear_faults()
    env.make_retries_due()
    result = env.hook(first)
    assert result.error is None
    env.settle()
    record("stash: restart mid-drain", jobs=len(scenes), pending_during_restart=len(attempts),
           retries_used_by_the_outage=sum(attempts), dlq=len(env.dlq()), scenes_lost=len(_stale(env, scenes)))
    assert env.dlq() == [] and not _stale(env, scenes) and env.stats() == IDLE


def _expire_cookie_mid_drain(env, tmp_path):
    """150 changed scenes; a worker starts draining them, then Stash's sessions expire."""
    scenes = _scenes(env, 150)
    _change(env, scenes, "long drain")
    env.plex.latency = 0.005
    worker = Drainers(env.runner, tmp_path / "batches.log").start("worker")
    wait_until(lambda: _synced(env) >= 2, 60, 0.01, "the drain to start")
    env.stash.expire_sessions()
    return scenes, worker


def test_session_cookie_expiring_mid_drain_with_api_key(env, tmp_path):
    """Stash has an API key: the worker carries on with it once the cookie expires."""
    scenes, worker = _expire_cookie_mid_drain(env, tmp_path)
    worker.wait(120)
    record("stash: cookie expires mid-drain (API key set)", jobs=len(scenes),
           synced_without_a_new_hook=len(scenes) - len(_stale(env, scenes)), dlq=len(env.dlq()))
    assert env.dlq() == [] and not _stale(env, scenes) and env.stats() == IDLE


def test_session_cookie_expiring_mid_drain_without_api_key(env, tmp_path):
    """No API key: jobs wait, untouched, for the next save's fresh cookie."""
    env.stash.api_key = None
    scenes, worker = _expire_cookie_mid_drain(env, tmp_path)
    _until_worker_gives_up(env, worker)
    attempts = _attempts(env)
    assert attempts and set(attempts) == {0}
    assert env.dlq() == []
    env.runner.cookie = env.stash.new_session_cookie()  # Stash hands the next hook a fresh session
    env.make_retries_due()
    env.hook(min(scenes))
    env.settle()
    record("stash: cookie expires mid-drain (no API key)", jobs=len(scenes), waiting_after_expiry=len(attempts),
           retries_used=sum(attempts), synced_after_next_save=len(scenes) - len(_stale(env, scenes)),
           dlq=len(env.dlq()))
    assert env.dlq() == [] and not _stale(env, scenes) and env.stats() == IDLE


def test_scene_deleted_before_its_job_runs_is_dropped_and_blocks_nothing(env):
    scenes = _scenes(env, 12)
    ids = sorted(scenes)
    lock = FileLock(env.runner.data_dir / "worker.lock")
    assert lock.acquire()
    try:
        _change(env, scenes, "edited")
        deleted = ids[2:5]
        for sid in deleted:
            env.stash.delete_scene(sid)
    finally:
        lock.release()
    plex_before = {sid: env.plex.item(rk) for sid, rk in scenes.items() if sid in deleted}
    env.hook(ids[0])
    env.settle()
    kept = {sid: rk for sid, rk in scenes.items() if sid not in deleted}
    record("stash: scenes deleted before their jobs ran", jobs=len(scenes), deleted=len(deleted),
           others_synced=len(kept) - len(_stale(env, kept)), dlq=len(env.dlq()))
    assert not _stale(env, kept)
    assert env.dlq() == [] and env.stats() == IDLE
    for sid in deleted:  # nothing written for them
        assert env.plex.item(scenes[sid])["updatedAt"] == plex_before[sid]["updatedAt"]
    assert env.runner.worker_log().count("; dropping its job") == len(deleted)


def test_login_page_or_placeholder_is_never_uploaded_as_a_poster(env):
    placeholder, _ = env.scene_with_item(1, screenshot=None)  # Stash serves its SVG placeholder
    login, _ = env.scene_with_item(2, screenshot=LOGIN_PAGE, screenshot_type="text/html")
    redirect, _ = env.scene_with_item(3)
    real, _ = env.scene_with_item(4)
    scenes = {sid: env.plex.find_by_file(env.stash.scene(sid)["files"][0]) for sid in (placeholder, login, redirect, real)}
    env.stash.fault(status=302, path_prefix=f"/scene/{redirect}/screenshot")  # to the login page
    env.runner.data_dir.mkdir(parents=True, exist_ok=True)
    _change(env, scenes, "cover")
    env.hook(real)
    env.settle()
    uploads = {sid: env.plex.count("POST", f"/library/metadata/{rk}/posters") for sid, rk in scenes.items()}
    followed = [r for r in env.stash.requests if r[1].startswith("/login")]
    record("stash: screenshot is a login page or placeholder", scenes=4, bad_covers_uploaded=sum(
        uploads[s] for s in (placeholder, login, redirect)), real_covers_uploaded=uploads[real])
    assert uploads == {placeholder: 0, login: 0, redirect: 0, real: 1}
    assert not followed
    assert not _stale(env, scenes) and env.dlq() == []
