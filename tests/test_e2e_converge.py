"""Plex converges to what Stash says while a worker lives: same-second saves,
settings changed under a running worker, expired Stash sessions (issue 12)."""

import json
import stat
from datetime import datetime, timedelta

import pytest

from tests.e2e import Env, env, wait_for  # noqa: F401
from tests.runner import scene_update


def _same_second_stamp(env, ahead: float = 5.0) -> str:
    """A Stash updated_at in a second that ends after the worker reads the scene.

    That is the case of a save and a sync within one second; stamping a few
    seconds ahead makes it certain however slow the machine (no sleeping).
    """
    from tests.emulators.stash import format_time

    when = datetime.now(env.stash.tz).replace(microsecond=0) + timedelta(seconds=ahead)
    return format_time(when, env.stash.tz)


def test_two_saves_in_the_same_second_both_reach_plex(env):
    sid, rk = env.scene_with_item(1)
    stamp = _same_second_stamp(env)
    env.stash.update_scene(sid, title="First", updated_at=stamp)
    env.hook(sid, scene_update(sid, title="First"))
    env.settle()
    assert env.plex.item(rk)["title"] == "First"
    recorded = json.loads((env.runner.data_dir / "sync_timestamps.json").read_text())[str(sid)]
    assert recorded[0] == stamp and recorded[1] < datetime.fromisoformat(stamp).timestamp() + 1
    # Stash stores updated_at to the second: the second save keeps the stamp.
    env.stash.update_scene(sid, rating100=40, updated_at=stamp)
    env.hook(sid, scene_update(sid, rating100=40))
    env.settle()
    assert float(env.plex.item(rk)["userRating"]) == 4.0


def test_an_unchanged_scene_costs_no_plex_write(env):
    sid, rk = env.scene_with_item(2)
    env.hook(sid)
    env.settle()
    env.plex.clear_requests()
    env.hook(sid)
    env.settle()
    assert not [r for r in env.plex.requests if r.method in ("PUT", "POST")]


# -- a live worker: settings and sessions change under it ---------------------------------

NEW_TOKEN = "plex-e2e-new-token-9876543210"


@pytest.fixture
def live(tmp_path):
    """A worker that stays alive (long poll_interval); Stash writes config.yml like Stash."""
    e = Env(tmp_path, settings={"poll_interval": 60})
    e.stash.config_dir = str(e.runner.stash_dir)
    e.settings()
    yield e
    e.close()


def _synced(env, rk, title, timeout=30):
    wait_for(lambda: env.plex.item(rk)["title"] == title, timeout, message=f"Plex title {title!r}")


def _live_worker(env, sid, rk):
    env.hook(sid, scene_update(sid, title=f"Title {sid}"))
    env.stash.update_scene(sid, title="warm")
    env.hook(sid, scene_update(sid, title="warm"))
    _synced(env, rk, "warm")
    # The title is in Plex before the job ends (the poster upload follows): the
    # test may change the settings only once the job is settled.
    wait_for(lambda: not any(env.stats()[k] for k in ("ready", "in_progress", "waiting_retry")), 30,
             message="the warm-up job settled")
    pid = env.runner.worker_pid()
    assert pid
    return pid


def test_new_token_applies_to_the_next_batch_of_a_running_worker(live):
    sid, rk = live.scene_with_item(1)
    sid2, rk2 = live.scene_with_item(2)
    pid = _live_worker(live, sid, rk)
    live.plex.token = NEW_TOKEN
    live.settings(plex_token=NEW_TOKEN)
    live.stash.update_scene(sid2, title="after the new token")
    assert live.hook(sid2, scene_update(sid2, title="x")).output == f"queued scene {sid2}"
    _synced(live, rk2, "after the new token")
    assert live.runner.worker_pid() == pid
    assert "Settings changed; the next batch uses them" in live.runner.worker_log()
    assert live.dlq() == []


def test_new_library_and_path_map_apply_to_a_running_worker(live):
    sid, rk = live.scene_with_item(1)
    other = live.plex.add_section("Other", locations=["/media/other"])
    rk2 = live.plex.add_item(other, "clip", ["/media/other/clip.mp4"])
    sid2 = live.stash.add_scene(title="Clip", files=["/data/other/clip.mp4"])
    pid = _live_worker(live, sid, rk)
    live.settings(plex_library="Stash, Other", path_map="/data/other=>/media/other")
    live.hook(sid2, scene_update(sid2, title="Clip"))
    _synced(live, rk2, "Clip")
    assert live.runner.worker_pid() == pid


def test_disabled_stops_queuing_and_syncing_at_once_then_enabled_resumes(live):
    from sync_queue.queue import make_job

    sid, rk = live.scene_with_item(1)
    sid2, rk2 = live.scene_with_item(2)
    _live_worker(live, sid, rk)
    live.settings(enabled=False)
    result = live.hook(sid2, scene_update(sid2, title="x"))
    assert result.output == "disabled" and live.stats()["ready"] == 0
    # A job queued just before the switch: the live worker must not sync it.
    live.stash.update_scene(sid2, title="queued before disabling")
    queue = live.queue()
    try:
        queue.put(make_job(sid2, "metadata", {"input_fields": ["title"], "source": "hook"}))
    finally:
        queue.close()
    wait_for(lambda: live.runner.worker_pid() is None, 30, message="the worker to stop")
    assert live.stats()["ready"] == 1 and live.plex.item(rk2)["title"] != "queued before disabling"
    assert "Plugin is disabled via configuration" in live.runner.worker_log()
    live.settings(enabled=True)
    assert live.hook(sid, scene_update(sid, title="x")).output == f"queued scene {sid}"
    _synced(live, rk2, "queued before disabling")


def test_expired_session_without_api_key_takes_up_the_next_hooks_cookie(tmp_path):
    env = Env(tmp_path, settings={"poll_interval": 60})
    env.stash.api_key = None  # Stash has no API key: the session cookie is all there is
    try:
        sid, rk = env.scene_with_item(1)
        sid2, rk2 = env.scene_with_item(2)
        pid = _live_worker(env, sid, rk)
        old = env.runner.cookie
        env.stash.expire_sessions()
        env.runner.cookie = env.stash.new_session_cookie()  # what Stash hands the next hook
        env.stash.update_scene(sid2, title="after the session expired")
        env.hook(sid2, scene_update(sid2, title="x"))
        _synced(env, rk2, "after the session expired")
        assert env.runner.worker_pid() == pid  # the same worker, with the new cookie
        session = env.runner.data_dir / "stash_session.json"
        assert stat.S_IMODE(session.stat().st_mode) == 0o600
        for text in (env.runner.worker_log(), json.dumps(env.dlq())):
            assert env.runner.cookie not in text and old not in text
    finally:
        env.close()


def test_expired_session_with_api_key_keeps_the_worker_syncing(live):
    sid, rk = live.scene_with_item(1)
    sid2, rk2 = live.scene_with_item(2)
    pid = _live_worker(live, sid, rk)
    live.stash.expire_sessions()  # the next hook's cookie is the expired one too
    live.stash.update_scene(sid2, title="with the API key")
    live.hook(sid2, scene_update(sid2, title="x"))
    _synced(live, rk2, "with the API key")
    assert live.runner.worker_pid() == pid


def test_sync_timestamps_current_only_when_read_in_a_later_second(tmp_path):
    from common.state import SyncTimestamps

    stamps = SyncTimestamps(tmp_path / "t.json")
    at = "2026-01-02T03:04:05+02:00"
    second = datetime.fromisoformat(at).timestamp()
    stamps.record(1, at, read_at=second + 0.9)   # read within the second of the save
    stamps.record(2, at, read_at=second + 1.0)   # read once that second was over
    stamps.record(3, at, read_at=None)           # unknown: never current
    stamps._data["4"] = at                       # the older form: trusted as before
    assert [stamps.is_current(i, at) for i in (1, 2, 3, 4)] == [False, True, False, True]
    assert not stamps.is_current(2, "2026-01-02T03:04:06+02:00")
    assert stamps.get(2) == at
