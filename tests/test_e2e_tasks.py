"""Every task of PlexSync.yml, run the way Stash runs it (PluginRunner.run_task).

Real plexapi and stashapi against the emulators. Covers paging, progress,
the summary line, skip-unchanged, Sync Recent's 24 h window, the queue and
dead-letter tasks, a task Stash cancels (SIGKILL) mid-sync, and a task that
takes the queue over from a busy background worker.
"""

import re
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from tests.e2e import env, wait_for  # noqa: F401
from tests.runner import scene_update

SYNC_ALL = "Sync All Scenes to Plex"
SYNC_RECENT = "Sync Recent Scenes to Plex"
PROCESS = "Process Queue"
STATUS = "Queue Status"
RETRY = "Retry Failed Jobs"
CLEAR = "Clear Dead-Letter Queue"
PURGE = "Purge Old Dead-Letter Entries"
SUMMARY = re.compile(r"(\d+) synced, (\d+) unchanged, (\d+) not found, (\d+) failed")


def counts(output: str):
    """(synced, unchanged, not found, failed) from a task's summary line."""
    match = SUMMARY.search(output or "")
    assert match, f"no summary counts in {output!r}"
    return tuple(int(n) for n in match.groups())


def small_pages(runner, size: int) -> None:
    """Lower defaults.STASH_PAGE_SIZE in the installed copy, so a few dozen scenes
    span several findScenes pages (the constant is the only knob)."""
    path = runner.plugin_dir / "common" / "defaults.py"
    text, n = re.subn(r"^STASH_PAGE_SIZE = \d+", f"STASH_PAGE_SIZE = {size}", path.read_text(encoding="utf-8"),
                      count=1, flags=re.MULTILINE)
    assert n == 1, "common/defaults.py no longer defines STASH_PAGE_SIZE"
    path.write_text(text, encoding="utf-8")


@contextmanager
def no_worker(env):
    """Hold worker.lock, as a live worker would: hooks queue but start no worker."""
    from common.locking import FileLock

    env.runner.data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(env.runner.data_dir / "worker.lock")
    wait_for(lock.acquire, 30, message="the worker lock")
    try:
        yield
    finally:
        lock.release()


def kill_worker(env) -> None:
    """SIGKILL the background worker a task left behind (it runs retries)."""
    wait_for(env.runner.worker_pid, 30, message="the background worker")
    env.runner.kill_workers()
    wait_for(lambda: env.runner.worker_pid() is None, 30, message="the worker to die")


def queue_by_hook(env, *scene_ids):
    with no_worker(env):
        for sid in scene_ids:
            assert env.hook(sid, scene_update(sid, title="x")).output == f"queued scene {sid}"


def find_scenes_pages(env):
    """(page, per_page) of every findScenes listing request the plugin sent."""
    out = []
    for doc in env.stash.documents:
        variables = doc.get("variables") or {}
        if "findScenes" in (doc.get("query") or "") and "scene_ids" not in variables:
            f = variables.get("filter") or {}
            out.append((f.get("page"), f.get("per_page")))
    return out


def assert_progress(result):
    values = result.progress
    assert values, "no progress reported"
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values), f"progress went backwards: {values}"
    assert values[-1] == 1.0


# -- Sync All / Sync Recent ------------------------------------------------------

def test_sync_all_pages_syncs_then_skips_unchanged(env):
    small_pages(env.runner, 10)
    items = {i: env.scene_with_item(i)[1] for i in range(1, 37)}

    result = env.runner.run_task(SYNC_ALL)
    assert result.parsed and result.error is None, result.stderr
    assert result.output == "Sync complete: 36 synced, 0 unchanged, 0 not found, 0 failed"
    assert result.has_log("Sync all: 36 scenes checked, 36 queued, 0 unchanged since their last sync")
    assert_progress(result)
    assert len(set(result.progress)) >= 5, result.progress  # 4 listing pages, then the sync
    assert find_scenes_pages(env) == [(1, 10), (2, 10), (3, 10), (4, 10)]
    for i, rk in items.items():
        item = env.plex.item(rk)
        assert (item["title"], item["summary"], item["studio"]) == (f"Title {i}", f"Details {i}", "Acme")
    assert env.stats()["ready"] == 0 and env.dlq() == []

    env.plex.clear_requests()
    again = env.runner.run_task(SYNC_ALL)
    assert again.output == "Sync complete: 0 synced, 36 unchanged, 0 not found, 0 failed"
    assert env.plex.count("PUT") == 0 and env.plex.count("POST") == 0
    assert_progress(again)

    env.stash.update_scene(7, title="Retitled")
    third = env.runner.run_task(SYNC_ALL)
    assert counts(third.output) == (1, 35, 0, 0)
    assert env.plex.item(items[7])["title"] == "Retitled"
    assert all(per_page == 10 for _, per_page in find_scenes_pages(env))  # never per_page -1


def test_sync_all_beside_an_idle_worker_counts_everything(env, monkeypatch):
    monkeypatch.setenv("PLEXSYNC_LOG_LEVEL", "DEBUG")  # the worker would log each scene it synced
    small_pages(env.runner, 1)
    env.settings(poll_interval=30)  # the worker lingers, polling the queue every 0.5 s
    items = {i: env.scene_with_item(i)[1] for i in range(1, 5)}
    nofile = env.stash.add_scene(title="No file")
    env.hook(nofile)  # starts the background worker (this job goes to the DLQ)
    wait_for(env.dlq, 30, message="the worker to process the hook's job")
    assert env.runner.worker_pid() is not None
    env.stash.latency = 0.25  # slow listing: the idle worker would see page 1's job

    result = env.runner.run_task(SYNC_ALL)
    assert result.error is None, result.stderr
    # Everything was synced, and counted, by the task: the worker yielded first.
    assert result.output == "Sync complete: 4 synced, 0 unchanged, 0 not found, 0 failed, 1 without a file"
    assert result.has_log("Sync all: 5 scenes checked, 4 queued, 0 unchanged since their last sync, "
                          "1 without a file skipped")
    assert "synced in Plex" not in env.runner.worker_log()
    assert [env.plex.item(rk)["title"] for rk in items.values()] == [f"Title {i}" for i in items]
    assert len(env.dlq()) == 1  # the file-less scene is not dead-lettered again


def test_sync_recent_takes_only_the_last_24_hours(env):
    # Stash keeps updated_at as text in its own zone and compares it as text:
    # a zone behind UTC is where a naive UTC bound loses recent scenes.
    zone = timezone(timedelta(hours=-5))
    env.stash.tz = zone
    now = datetime.now(timezone.utc)

    def ago(hours):
        return (now - timedelta(hours=hours)).astimezone(zone).isoformat(timespec="seconds")

    recent = [env.scene_with_item(i) for i in (1, 2)]
    twenty_h = env.scene_with_item(3, updated_at=ago(20))
    old = [env.scene_with_item(i, updated_at=ago(h)) for i, h in ((4, 30), (5, 24 * 9))]

    result = env.runner.run_task(SYNC_RECENT)
    assert result.error is None, result.stderr
    assert result.output == "Sync complete: 3 synced, 0 unchanged, 0 not found, 0 failed"
    assert result.has_log("Sync recent: 3 scenes checked, 3 queued")
    assert_progress(result)
    for n, (_, rk) in zip((1, 2, 3), recent + [twenty_h]):
        assert env.plex.item(rk)["title"] == f"Title {n}"
    for n, (_, rk) in zip((4, 5), old):
        assert env.plex.item(rk)["title"] == f"scene_{n}"  # untouched
    # The filter went to Stash (bounded pages), not a full listing.
    docs = [d for d in env.stash.documents if "scene_filter" in (d.get("variables") or {})]
    assert docs and all(d["variables"]["scene_filter"]["updated_at"]["modifier"] == "GREATER_THAN" for d in docs)

    again = env.runner.run_task(SYNC_RECENT)
    assert again.output == "Sync complete: 0 synced, 3 unchanged, 0 not found, 0 failed"


# -- the queue tasks --------------------------------------------------------------

def test_process_queue_drains_a_stalled_queue(env):
    items = {i: env.scene_with_item(i)[1] for i in (1, 2, 3)}
    queue_by_hook(env, 1, 2, 3)
    assert env.stats()["ready"] == 3 and env.runner.worker_pid() is None

    result = env.runner.run_task(PROCESS)
    assert result.error is None, result.stderr
    assert result.output == "Queue processed: 3 synced, 0 unchanged, 0 not found, 0 failed"
    assert_progress(result)
    assert [env.plex.item(rk)["title"] for rk in items.values()] == ["Title 1", "Title 2", "Title 3"]
    assert env.stats()["ready"] == 0

    empty = env.runner.run_task(PROCESS)
    assert empty.output == "Nothing to process: 0 due jobs, 0 waiting to retry" and empty.error is None


def test_queue_status_reports_queue_dlq_breaker_and_last_sync(env):
    from worker.breaker import CircuitBreaker

    before = env.runner.run_task(STATUS)
    assert before.error is None
    data = env.runner.data_dir
    assert not data.exists() or not list(data.iterdir()), "Queue Status only reads: it creates no file"
    assert before.output.splitlines() == [
        "Queue: 0 pending, 0 waiting to retry, 0 in progress", "DLQ: 0 (top errors: none)",
        "Circuit breaker: closed", "Last successful sync: never", "Background worker: not running",
        f"Data folder: {env.runner.data_dir}", f"Worker log: {env.runner.data_dir / 'worker.log'}"]

    env.scene_with_item(1)
    nofile = [env.stash.add_scene(title=f"No file {i}") for i in (1, 2)]
    env.plex.stage_file(env.section, "/data/stash/later.mp4")  # not in Plex yet: a retry
    later = env.stash.add_scene(title="Later", files=["/data/stash/later.mp4"])
    queue_by_hook(env, 1, later, *nofile)
    processed = env.runner.run_task(PROCESS)
    # The retry's delay is drawn from 0-30 s: set it to an hour before the
    # worker the task left (still starting up) could see it due.
    assert env.postpone_retries(3600) == 1
    assert counts(processed.output) == (1, 0, 1, 2)
    assert processed.output.endswith("(1 waiting to retry)")
    kill_worker(env)  # the one left to run the retry; now queue jobs nobody takes
    pending = [env.scene_with_item(i)[0] for i in (5, 6)]
    for _ in range(5):
        CircuitBreaker(env.runner.data_dir / "queue" / "data.db").record_failure()

    with no_worker(env):
        for sid in pending:
            env.hook(sid)
        status = env.runner.run_task(STATUS)
    assert status.error is None, status.stderr
    out = status.output
    assert out.startswith("Queue: 2 pending, 1 waiting to retry (next at "), out
    assert "DLQ: 2 (top errors: SceneHasNoFile (2))" in out
    assert "Circuit breaker: open (Plex paused until " in out
    assert "Last successful sync: never" not in out
    stamp = re.search(r"Last successful sync: (\S+ \S+)$", out, re.MULTILINE).group(1)
    assert abs(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") - datetime.now()) < timedelta(minutes=5)
    assert "Background worker: running" in out.splitlines()  # no_worker holds worker.lock, as a worker does
    for line in out.splitlines():  # also in Stash's log, a line each
        assert status.has_log(f"[PlexSync] {line}", "info"), line


def test_retry_purge_and_clear_dead_letters(env):
    nofile = [env.stash.add_scene(title=f"Fixable {i}") for i in (1, 2, 3)]
    queue_by_hook(env, *nofile)
    assert counts(env.runner.run_task(PROCESS).output) == (0, 0, 0, 3)
    assert {e["scene_id"] for e in env.dlq()} == set(nofile)

    # Fix the cause for two of them: the files now exist in Stash and in Plex.
    fixed = {}
    for sid in nofile[:2]:
        path = f"/data/stash/fixed_{sid}.mp4"
        fixed[sid] = env.plex.add_item(env.section, f"fixed {sid}", [path])
        env.stash.update_scene(sid, files=[path])
    retry = env.runner.run_task(RETRY)
    assert retry.error is None, retry.stderr
    assert retry.output.startswith("Requeued 3. Queue processed:")
    assert counts(retry.output) == (2, 0, 0, 1)
    assert_progress(retry)
    assert [env.plex.item(rk)["title"] for rk in fixed.values()] == ["Fixable 1", "Fixable 2"]
    assert [e["scene_id"] for e in env.dlq()] == [nofile[2]]

    # One more failure, then age the older entry past the 30-day retention.
    another = env.stash.add_scene(title="Another")
    queue_by_hook(env, another)
    env.runner.run_task(PROCESS)
    with sqlite3.connect(str(env.runner.data_dir / "dlq.db")) as conn:
        conn.execute("UPDATE dlq SET failed_at = ? WHERE scene_id = ?", (time.time() - 31 * 86400, nofile[2]))
    purge = env.runner.run_task(PURGE)
    assert purge.error is None and purge.output == "Purged 1 dead-letter entries older than 30 days"
    assert [e["scene_id"] for e in env.dlq()] == [another]
    assert env.runner.run_task(PURGE).output == "Purged 0 dead-letter entries older than 30 days"

    clear = env.runner.run_task(CLEAR)
    assert clear.error is None and clear.output == "Cleared 1 dead-letter entries"
    assert env.dlq() == []
    assert env.runner.run_task(RETRY).output == "Dead-letter queue is empty"


def test_dead_letter_tasks_work_with_broken_plex_settings(env):
    nofile = env.stash.add_scene(title="No file")
    queue_by_hook(env, nofile)
    env.runner.run_task(PROCESS)
    env.settings(plex_url="plex.local:32400")  # invalid: Plex tasks refuse to run
    assert "Configuration error" in (env.runner.run_task(PROCESS).error or "")
    status = env.runner.run_task(STATUS)
    assert status.error is None and "DLQ: 1 (top errors: SceneHasNoFile (1))" in status.output
    assert env.runner.run_task(PURGE).output == "Purged 0 dead-letter entries older than 30 days"
    assert env.runner.run_task(CLEAR).output == "Cleared 1 dead-letter entries"


# -- cancellation and concurrency -----------------------------------------------------

def test_cancelled_sync_all_loses_nothing(env):
    items = {i: env.scene_with_item(i)[1] for i in range(1, 31)}
    env.plex.latency = 0.05  # slow Plex: the task is mid-sync when Stash cancels it
    proc = env.runner.start_task(SYNC_ALL)
    wait_for(lambda: env.plex.count("PUT") >= 3, 60, message="the task to start syncing")
    proc.kill()  # what Stash does on cancel: SIGKILL, no clean-up
    proc.wait()
    synced_before = env.plex.count("PUT")
    assert synced_before < 30, "the task finished before it was cancelled"
    left = env.stats()
    assert left["ready"] + left["in_progress"] > 0

    env.plex.latency = 0.0
    rerun = env.runner.run_task(PROCESS)
    assert rerun.error is None, rerun.stderr
    synced, unchanged, not_found, failed = counts(rerun.output)
    assert (not_found, failed) == (0, 0) and synced + unchanged == 30
    assert synced >= 30 - synced_before
    for i, rk in items.items():
        assert env.plex.item(rk)["title"] == f"Title {i}"
    assert env.stats() == {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}
    assert env.dlq() == []

    env.plex.clear_requests()
    after = env.runner.run_task(SYNC_ALL)
    assert after.output == "Sync complete: 0 synced, 30 unchanged, 0 not found, 0 failed"
    assert env.plex.count("PUT") == 0


def test_task_takes_the_queue_over_from_a_busy_worker(env):
    from sync_queue.queue import JobQueue, make_job

    n = 55  # more than one worker batch (50)
    items = {i: env.scene_with_item(i)[1] for i in range(1, n + 1)}
    env.runner.data_dir.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(str(env.runner.data_dir / "queue"))
    try:  # what n hooks would have queued
        queue.put_many([make_job(i, "metadata", {"input_fields": ["title"], "source": "hook"}) for i in range(1, n)])
    finally:
        queue.close()
    env.plex.latency = 0.04
    env.hook(n)  # queues the last one and starts the background worker
    wait_for(lambda: env.plex.count("PUT") >= 1, 60, message="the worker to start syncing")
    assert env.runner.worker_pid() is not None

    result = env.runner.run_task(PROCESS)
    assert result.error is None, result.stderr
    synced, _, _, failed = counts(result.output)
    assert failed == 0 and synced >= 1, result.output  # the task got jobs the worker had not taken
    env.plex.latency = 0.0
    env.settle()
    for i, rk in items.items():
        assert env.plex.item(rk)["title"] == f"Title {i}"
    assert env.plex.count("PUT") == n  # each scene written once: never by both
    assert env.dlq() == []


def test_sync_all_over_hundreds_of_scenes_logs_per_batch_not_per_scene(env):
    for i in range(1, 301):
        env.scene_with_item(i)
    env.plex.add_item(env.section, "dup a", ["/data/stash/a/dup.mp4"])
    env.plex.add_item(env.section, "dup b", ["/data/stash/b/dup.mp4"])
    dup = env.stash.add_scene(title="Dup", files=["/data/stash/c/dup.mp4"])  # two items by name: ambiguous

    result = env.runner.run_task(SYNC_ALL)
    assert result.output == "Sync complete: 300 synced, 0 unchanged, 0 not found, 1 failed", result.stderr
    info = result.messages("info")
    batches = [m for m in info if m.startswith("[PlexSync Worker] Batch of ")]
    assert len(batches) == 7, info  # 301 jobs, 50 per batch
    assert "[PlexSync Worker] Batch of 50 jobs: 50 synced, 0 unchanged, 0 waiting, 0 failed" in batches
    assert len(info) <= 2 * len(batches) + 3, info  # a few lines per batch, plus listing and summary
    assert not [m for m in info if re.search(r"\bScene \d+\b", m)], info
    assert info[-1] == "[PlexSync] " + result.output
    failure = [m for m in result.messages("error") if f"Scene {dup} " in m]
    assert failure and "AmbiguousMatch" in failure[0], result.messages("error")
    assert_progress(result)
    assert len(set(result.progress)) >= 8, result.progress  # listing, then every batch
