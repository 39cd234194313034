"""Concurrency: dozens of hook processes at once, beside a worker and a task.

Parallel scan workers and concurrent saves make Stash run many hooks at the
same time. Every event must be queued (or merged into its scene's pending
job), exactly one process may drain, SQLite must never answer "database is
locked", and the hooks must not spawn a worker each.
"""

import json
import os
import re
import sys
import threading
import time

import pytest

from common.state import ConfigState
from tests.e2e import Env, env  # noqa: F401
from tests.reliability import Drainers, long_run, record, wait_until, worker_pids
from tests.runner import scene_update

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts processes in /proc")

PROBLEMS = re.compile(r"database is locked|Traceback|OperationalError")
KEPT = "kept in pending/ for the worker"  # a hook's fallback when the queue stays busy: not lost, not a problem


def _problems(text: str) -> list:
    """Lock errors and tracebacks, leaving out the hook's kept-save warnings."""
    return PROBLEMS.findall("\n".join(line for line in text.splitlines() if KEPT not in line))


def _queued(result, sid) -> bool:
    """The hook queued the save, or kept it for the worker (see hooks.handler)."""
    return result.error is None and result.output in (f"queued scene {sid}", f"kept scene {sid}: queue busy")
IDLE = {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}


class SpawnWatch:
    """Samples /proc for PlexSync.py --worker processes of one install."""

    def __init__(self, plugin_dir) -> None:
        self.plugin_dir = plugin_dir
        self.seen: set = set()
        self.max_alive = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            alive = worker_pids(self.plugin_dir)
            self.seen |= alive
            self.max_alive = max(self.max_alive, len(alive))
            time.sleep(0.003)

    def __enter__(self) -> "SpawnWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _scenes(env, n):
    scenes = env.scenes_with_items(n)
    # What the first save of a session leaves behind: hooks then never ask Stash.
    ConfigState(str(env.runner.data_dir / "config_state.json")).write(enabled=True)
    return scenes


def _storm(env, ids, n_hooks, gap=0.0):
    """Save and hook ``n_hooks`` times over ``ids`` (some scenes several times), all at once."""
    started = []
    for i in range(n_hooks):
        sid = ids[i % len(ids)]
        env.stash.update_scene(sid, title=f"storm {i} scene {sid}")
        proc = env.runner.start(env.runner.hook_args(scene_update(sid, title=f"storm {i} scene {sid}")))
        started.append((proc, time.perf_counter()))
        if gap:
            time.sleep(gap)
    return [env.runner.finish(proc, t0) for proc, t0 in started]


def _in_plex(env, scenes):
    return [sid for sid, rk in scenes.items() if env.plex.item(rk)["title"] != env.stash.scene(sid)["title"]]


def test_hook_storm_beside_running_worker_and_task(tmp_path, request):
    n_hooks = 100 if long_run(request) else 40
    env = Env(tmp_path, settings={"poll_interval": 30})  # the worker outlives the storm
    try:
        scenes = _scenes(env, 60)
        ids = sorted(scenes)
        drainers = Drainers(env.runner, tmp_path / "batches.log")
        worker = drainers.start("worker")
        wait_until(lambda: env.runner.worker_pid() == worker.pid, 30, message="the worker to hold worker.lock")
        with SpawnWatch(env.runner.plugin_dir) as watch:
            task = drainers.start("sync_all")  # a foreground task drains at the same time
            # Once it has listed the scenes, only the hooks' jobs can carry the saves that follow.
            wait_until(lambda: any(b[0] == task.pid for b in drainers.batches()), 60, 0.01, "the task's first batch")
            results = _storm(env, ids[: n_hooks * 2 // 3], n_hooks)
            task.wait(120)
            wait_until(lambda: env.stats() == IDLE, 120, 0.1, "the queue to empty")
        task_result = json.loads(_task_json(drainers.output()))
        stale = _in_plex(env, scenes)
        hook_text = "".join(r.stdout + r.stderr for r in results)
        problems = _problems(hook_text + env.runner.worker_log() + drainers.output())
        extra = watch.seen - {worker.pid}
        overlaps = drainers.overlaps()
        record("concurrency: hook storm + worker + task", hooks=n_hooks, scenes_hooked=len(ids[: n_hooks * 2 // 3]),
               hooks_queued=sum(1 for r in results if (r.output or "").startswith("queued scene")),
               hooks_kept_for_worker=sum(1 for r in results if (r.output or "").startswith("kept scene")),
               hooks_failed=sum(1 for r in results if r.error), extra_workers_spawned=len(extra),
               batches=len(drainers.batches()), overlapping_drainers=len(overlaps),
               database_locked_or_tracebacks=len(problems), scenes_not_in_latest_state=len(stale),
               slowest_hook_s=round(max(r.duration for r in results), 2))
        assert all(r.parsed and r.error is None and r.output.startswith(("queued scene", "kept scene"))
                   for r in results), \
            [(r.output, r.error) for r in results if r.error or not r.parsed][:3]
        assert not problems, problems[:5]
        assert task_result["error"] is None, task_result
        assert not extra, f"hooks spawned {len(extra)} workers while one was running"
        assert worker.poll() is None and env.runner.worker_pid() == worker.pid
        assert not overlaps, overlaps[:3]
        assert not stale, stale[:10]
    finally:
        env.close()


def _task_json(text: str) -> str:
    """The task's one JSON object on stdout (its stderr log lines are interleaved)."""
    start = text.rindex('{"output"')
    return text[start:text.index("}", start) + 1]


SLOW_WORKER_START = """
import sys, time
if "--worker" in sys.argv:
    time.sleep(%r)
"""


def test_cold_start_storm_spawns_one_worker_at_a_time(env, request, tmp_path, monkeypatch):
    n_hooks = 100 if long_run(request) else 40
    scenes = _scenes(env, n_hooks)
    # A busy machine: the worker needs seconds from spawn to worker.lock (CI
    # once saw 43 spawns for 40 hooks). sitecustomize delays only the worker.
    slow = tmp_path / "slow_start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_WORKER_START % 2.0)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(slow), os.environ.get("PYTHONPATH")])))
    with SpawnWatch(env.runner.plugin_dir) as watch:
        results = _storm(env, sorted(scenes), n_hooks, gap=0.025)
        env.settle(120)
    log = env.runner.worker_log()
    # Only a worker that holds worker.lock logs "started"; two "started" in a
    # row without an "exiting" between them would be two workers at once.
    events = re.findall(r"Background worker (started|exiting)", log)
    nested = sum(1 for a, b in zip(events, events[1:]) if a == b == "started")
    stale = _in_plex(env, scenes)
    problems = _problems("".join(r.stdout + r.stderr for r in results) + log)
    record("concurrency: cold-start hook storm", hooks=n_hooks, worker_processes_spawned=len(watch.seen),
           spawned_but_never_drained=len(watch.seen) - events.count("started"),
           max_worker_processes_alive=watch.max_alive, workers_that_drained=events.count("started"),
           two_workers_at_once=nested, database_locked_or_tracebacks=len(problems),
           hooks_kept_for_worker=sum(1 for r in results if (r.output or "").startswith("kept scene")),
           scenes_not_in_latest_state=len(stale), slowest_hook_s=round(max(r.duration for r in results), 2))
    failed = [(sid, r.output, r.error, r.stderr[-400:]) for r, sid in zip(results, sorted(scenes))
              if not _queued(r, sid)]
    assert not failed, failed[:3]
    assert nested == 0 and events and events[-1] == "exiting"
    assert not problems, problems[:5]
    # A hook spawns only while no worker holds the lock and no start is
    # claimed: every worker process drains (a new one may follow an idle
    # exit), at most one ever finds the lock taken (a hook that looked just
    # as a worker was leaving), and never more than two processes are alive.
    idle = len(watch.seen) - events.count("started")
    assert idle <= 1, f"{len(watch.seen)} workers spawned for {n_hooks} hooks, {idle} never drained"
    assert watch.max_alive <= 2, f"{watch.max_alive} worker processes alive at once"
    assert not stale, stale[:10]
    assert env.stats() == IDLE and not list((env.runner.data_dir / "pending").glob("*.json"))
