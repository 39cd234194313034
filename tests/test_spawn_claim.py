"""The spawn claim that keeps a burst of hooks to one worker start (worker.launch)."""

import os
import subprocess
import sys
import time

from worker.launch import CLAIM_GRACE, claim_is_live, claim_spawn, pid_alive, release_claim


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_the_first_claim_wins_while_it_is_live(tmp_path):
    claim = str(tmp_path / "worker.spawning")
    first = claim_spawn(claim)
    assert first and first.startswith(f"{os.getpid()}-")
    # Our own pid is the claimer and it is alive: every later hook stands back.
    assert [claim_spawn(claim) for _ in range(20)] == [None] * 20
    assert open(claim).read() == first


def test_claim_with_a_dead_worker_pid_is_replaced(tmp_path):
    claim = str(tmp_path / "worker.spawning")
    token = claim_spawn(claim)
    with open(claim, "a") as fh:
        fh.write(f" {_dead_pid()}")
    assert not claim_is_live(claim)
    second = claim_spawn(claim)
    assert second and second != token


def test_claim_of_a_dead_hook_without_worker_pid_is_replaced(tmp_path):
    claim = str(tmp_path / "worker.spawning")
    with open(claim, "w") as fh:
        fh.write(f"{_dead_pid()}-123")
    assert claim_spawn(claim) is not None


def test_claim_older_than_the_grace_is_replaced_even_if_pid_lives(tmp_path):
    claim = str(tmp_path / "worker.spawning")
    claim_spawn(claim)
    with open(claim, "a") as fh:
        fh.write(f" {os.getpid()}")  # alive (or reused by another process)
    assert claim_is_live(claim)
    assert not claim_is_live(claim, now=time.time() + CLAIM_GRACE + 1)
    assert claim_spawn(claim, now=time.time() + CLAIM_GRACE + 1) is not None


def test_worker_releases_only_its_own_claim(tmp_path):
    claim = str(tmp_path / "worker.spawning")
    token = claim_spawn(claim)
    release_claim(claim, "someone-else")
    release_claim(claim, None)
    assert os.path.exists(claim)
    release_claim(claim, token)
    assert not os.path.exists(claim)
    release_claim(claim, token)  # already gone: no error
    assert claim_spawn(claim) is not None


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())


# -- end to end: hooks honour a live claim and replace a dead one -------------------

from tests.e2e import env, wait_for  # noqa: E402,F401


def _write_claim(env, text: str) -> None:
    env.runner.data_dir.mkdir(parents=True, exist_ok=True)
    (env.runner.data_dir / "worker.spawning").write_text(text)


def test_hook_leaves_the_start_to_a_live_claim_and_replaces_a_dead_one(env):
    sid, rk = env.scene_with_item(1)
    env.hook(sid)  # the first save reads the settings and starts the worker
    env.settle()

    # A worker "starting" (a live process, not yet holding worker.lock): the
    # hook queues and leaves the start to it.
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_claim(env, f"1-1 {starting.pid}")
        env.stash.update_scene(sid, title="while a start is claimed")
        assert env.hook(sid).output == f"queued scene {sid}"
        time.sleep(1.0)
        assert not env.runner.worker_processes(), "a hook started a second worker beside a live claim"
        assert env.stats()["ready"] == 1
    finally:
        starting.kill()
        starting.wait()

    # That start died before taking the lock: the next save starts a worker,
    # which drains both saves' job and removes its own claim.
    env.stash.update_scene(sid, title="after the claimed start died")
    assert env.hook(sid).output == f"queued scene {sid}"
    wait_for(lambda: env.plex.item(rk)["title"] == "after the claimed start died", 30, message="the sync")
    env.settle()
    assert not (env.runner.data_dir / "worker.spawning").exists()
