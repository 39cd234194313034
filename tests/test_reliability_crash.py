"""Crash safety: drainers and hooks SIGKILLed at random moments lose nothing.

The drainers are PlexSync.py's own ``main()`` (background worker, Process
Queue task) run from the installed plugin against both emulators; the only
addition is a record of when each process was inside a batch (see
tests/reliability.py), which is how "never two drainers at once" is checked.
Sizes grow with ``--long``.
"""

import os
import random
import time

import pytest

from common.locking import FileLock
from sync_queue.queue import JobQueue, make_job
from tests.e2e import env  # noqa: F401
from tests.reliability import Drainers, integrity, long_run, queue_rows, record, wait_until
from tests.runner import scene_update

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX-only")


def _enqueue(env, scene_ids):
    """What a hook does for each scene (the tests drive the drainers, not the hook)."""
    queue = JobQueue(str(env.runner.data_dir / "queue"))
    try:
        queue.put_many([make_job(sid, "metadata", {"input_fields": ["title", "details"], "source": "hook"})
                        for sid in scene_ids])
    finally:
        queue.close()


def _in_plex(env, sid, rk) -> bool:
    scene, item = env.stash.scene(sid), env.plex.item(rk)
    return item["title"] == scene["title"] and item["summary"] == scene["details"]


def _lost(env, scenes):
    """Scenes whose latest Stash state is neither in Plex nor owed by a queued job.

    The queue is read first: a row is deleted only after Plex confirmed the
    write, so a scene without a row at that moment must already be in Plex.
    """
    rows = queue_rows(env.runner.data_dir)
    return [sid for sid, rk in scenes.items() if sid not in rows and not _in_plex(env, sid, rk)]


def _change(env, scene_ids, trial, label) -> int:
    """Save new values in Stash and queue the events, as Stash and the hook would."""
    for sid in scene_ids:
        env.stash.update_scene(sid, title=f"{label} {trial} scene {sid}", details=f"{label} {trial}")
    _enqueue(env, scene_ids)
    return len(scene_ids)


def _fresh(env, n):
    return env.scenes_with_items(n)


def _in_flight(env) -> int:
    return sum(st.count("in_progress") for st in queue_rows(env.runner.data_dir).values())


def _kill_inside_a_batch(env, drainers) -> int:
    """One kill that certainly lands inside a batch (the random ones may all miss):
    Plex slowed down so a batch takes seconds, the kill once jobs are in flight."""
    env.plex.latency = 0.2
    drainers.start("worker")
    wait_until(lambda: _in_flight(env), 60, 0.02, "a batch in flight")
    for proc in drainers.alive():
        drainers.kill(proc)
    return _in_flight(env)


def test_sigkill_drainers_at_random_moments_loses_nothing(env, tmp_path, request):
    long = long_run(request)
    n_scenes, trials = (400, 40) if long else (200, 6)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    scenes = _fresh(env, n_scenes)
    ids = sorted(scenes)
    _enqueue(env, ids)
    drainers = Drainers(env.runner, tmp_path / "batches.log")
    events, in_flight_at_kill, version = n_scenes, _kill_inside_a_batch(env, drainers), 0
    env.plex.latency = 0.003  # a drain of a few hundred jobs then takes a few seconds
    for trial in range(trials):
        if trial:
            # A bulk edit in Stash: a drain of hundreds of jobs every trial.
            events += _change(env, rng.sample(ids, rng.randint(n_scenes // 2, n_scenes)), trial, "bulk")
        drainers.start("worker")
        time.sleep(rng.uniform(0.1, 1.0))
        if rng.random() < 0.6:
            drainers.start("process_queue")  # a task arrives, likely while the worker is inside a batch
        if rng.random() < 0.3:
            drainers.start("worker")  # a second worker must step aside
        time.sleep(rng.uniform(0.1, 0.8))
        # Saves while the drain runs: some hit scenes whose job is in flight.
        events += _change(env, rng.sample(ids, rng.randint(5, 40)), trial, "during")
        time.sleep(rng.uniform(0.0, 1.5))
        alive = drainers.alive()
        victims = [p for p in alive if rng.random() < 0.7] or alive[:1]
        for proc in victims:
            drainers.kill(proc)
        in_flight_at_kill += _in_flight(env)
        lost = _lost(env, scenes)
        assert not lost, f"trial {trial} (seed {seed}): scenes {lost[:10]} lost their change"

    # The next start resumes whatever the killed drainers held and finishes.
    drainers.start("worker")
    wait_until(lambda: not drainers.alive(), 120, 0.1, "every drainer to finish and exit")
    if env.stats()["waiting_retry"]:
        env.make_retries_due()
        drainers.start("worker")
        wait_until(lambda: not drainers.alive(), 120, 0.1, "the retries to finish")
    stats = env.stats()
    stale = [sid for sid, rk in scenes.items() if not _in_plex(env, sid, rk)]
    overlaps = drainers.overlaps()
    record("crash: SIGKILL drainers mid-drain", seed=seed, trials=trials, scenes=n_scenes, events=events,
           sigkills=drainers.kills, rows_in_flight_at_kills=in_flight_at_kill,
           batches=len(drainers.batches()), jobs_lost=len(stale), overlapping_drainers=len(overlaps),
           left_unacked=stats["in_progress"])
    assert stats == {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}
    assert not stale, f"seed {seed}: {len(stale)} scenes not in their latest state, e.g. {stale[:10]}"
    assert not overlaps, f"seed {seed}: two drainers at once: {overlaps[:3]}"
    assert env.dlq() == []
    assert in_flight_at_kill > 0, "no kill landed inside a batch"
    assert integrity(env.runner.data_dir / "queue" / "data.db") == "ok"


def test_task_killed_mid_batch_is_resumed_by_the_running_worker(env, tmp_path):
    """Stash cancels a task by killing it; the background worker must take over its jobs."""
    scenes = _fresh(env, 200)
    _enqueue(env, sorted(scenes))
    env.plex.latency = 0.01  # slow batches (~1 s each), so the kill lands inside one
    drainers = Drainers(env.runner, tmp_path / "batches.log")
    worker = drainers.start("worker")
    wait_until(lambda: any(b[0] == worker.pid for b in drainers.batches()), 60, message="the worker's first batch")
    orphans = 0
    for _ in range(5):
        task = drainers.start("process_queue")
        wait_until(lambda: any(b[0] == task.pid and b[2] >= time.time() - 0.01 for b in drainers.batches())
                   or task.poll() is not None, 60, 0.01, "the task to start a batch")
        drainers.kill(task)
        orphans = sum(st.count("in_progress") for st in queue_rows(env.runner.data_dir).values())
        if orphans:
            break
    assert orphans, "could not kill the task inside a batch"
    assert worker.poll() is None, "the background worker should still be running"
    wait_until(lambda: worker.poll() is not None, 90, 0.1, "the worker to finish the orphaned jobs and exit")
    stats = env.stats()
    record("crash: task killed mid-batch, worker running", orphaned_rows=orphans,
           left_unacked=stats["in_progress"], jobs_lost=sum(not _in_plex(env, s, rk) for s, rk in scenes.items()))
    assert stats["in_progress"] == 0 and stats["ready"] == 0
    assert all(_in_plex(env, sid, rk) for sid, rk in scenes.items())
    assert not drainers.overlaps()


def test_hook_killed_mid_enqueue_never_corrupts_or_loses_a_committed_job(env, request):
    """A hook SIGKILLed at a random moment either queued its job or did not; a queued job syncs."""
    n = 60 if long_run(request) else 24
    scenes = _fresh(env, n + 1)
    first = max(scenes)
    env.hook(first)  # caches the config verdict, as after any first save
    env.settle()
    lock = FileLock(env.runner.data_dir / "worker.lock")
    assert lock.acquire()  # no worker during the kills: committed jobs must wait in the queue
    rng = random.Random()
    durations = []
    try:
        for sid in sorted(scenes)[:n]:
            env.stash.update_scene(sid, title=f"saved {sid}")
            started = time.perf_counter()
            proc = env.runner.start(env.runner.hook_args(scene_update(sid, title=f"saved {sid}")))
            delay = rng.uniform(0.0, 0.25)
            try:
                proc.wait(delay)
                durations.append(time.perf_counter() - started)
            except Exception:
                proc.kill()
                proc.wait()
        rows = queue_rows(env.runner.data_dir)
        assert integrity(env.runner.data_dir / "queue" / "data.db") == "ok"
    finally:
        lock.release()
    committed = sorted(rows)
    killed = n - len(durations)
    # A later save spawns a worker, which also drains what the killed hooks queued.
    env.stash.update_scene(first, title="after the kills")
    result = env.hook(first, scene_update(first, title="after the kills"))
    assert result.error is None and result.output == f"queued scene {first}"
    env.settle()
    synced = [sid for sid in committed if _in_plex(env, sid, scenes[sid])]
    record("crash: hooks SIGKILLed mid-enqueue", hooks=n, killed=killed, jobs_committed=len(committed),
           committed_jobs_synced=len(synced), jobs_lost=len(committed) - len(synced))
    assert killed > 0, "no hook was killed: the delays are too long for this machine"
    assert synced == committed
    assert env.plex.item(scenes[first])["title"] == "after the kills"
    assert env.stats() == {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}
