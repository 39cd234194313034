"""Plex converges to what Stash says while a worker lives: same-second saves,
settings changed under a running worker, expired Stash sessions (issue 12)."""

import json
from datetime import datetime, timedelta

from tests.e2e import env, wait_for  # noqa: F401
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
