"""Drift repair (issue 12 item 7), end to end.

Each drift is made the way a user or Plex makes it, through the real
plexapi against the emulator; then Repair Plex Drift runs as Stash runs it,
and a second run writes nothing.
"""

import pytest
from plexapi.server import PlexServer

from tests.e2e import env, past_latest_update  # noqa: F401
from tests.emulators.stash import tiny_jpeg

SYNC_ALL = "Sync All Scenes to Plex"
REPAIR = "Repair Plex Drift"
FORCE = "Force Full Re-sync"


def writes(env):
    return [r for r in env.plex.requests if r.method in ("PUT", "POST", "DELETE")]


def plex_item(env, rk):
    return PlexServer(env.plex.url, env.plex.token).fetchItem(rk)


def run(env, task):
    result = env.runner.run_task(task)
    assert result.error is None, result.error
    return result


def synced(env, n=2, **fields):
    """n scenes synced, then a first repair that records what Plex holds."""
    scenes = env.scenes_with_items(n, **fields)
    run(env, SYNC_ALL)
    first = run(env, REPAIR)
    assert "checked for the first time" in first.output
    env.plex.clear_requests()
    return scenes


def repaired_twice(env, expect: str):
    """The repair fixes ``expect``; a second run lists Plex and writes nothing."""
    result = run(env, REPAIR)
    assert expect in result.output, result.output
    env.plex.clear_requests()
    again = run(env, REPAIR)
    assert writes(env) == []
    assert env.plex.count("GET", "/library/metadata/") == 0  # no per-item request: only listings
    assert "0 scenes re-synced" in again.output, again.output
    return result


def test_unchanged_items_cost_only_the_listing(env):
    synced(env, 3)
    result = run(env, REPAIR)
    assert "3 synced items checked, 0 scenes re-synced" in result.output
    assert writes(env) == []
    assert env.plex.count("GET", "/library/metadata/") == 0
    assert env.plex.count("GET", f"/library/sections/{env.section}/all") == 1


@pytest.mark.parametrize("preserve", [False, True])
def test_hand_edit_in_plex(env, preserve):
    env.settings(preserve_plex_edits=preserve)
    scenes = synced(env)
    rk = scenes[1]
    plex_item(env, rk).editTitle("Edited by hand")  # locks the title, as the Plex UI does
    result = repaired_twice(env, "changed in Plex: 1 found, " + ("0 fixed" if preserve else "1 fixed"))
    assert env.plex.item(rk)["title"] == ("Edited by hand" if preserve else "Title 1")
    assert "1 scenes re-synced" in result.output
    assert env.plex.item(scenes[2])["title"] == "Title 2"


def test_value_reset_by_an_agent_refresh(env):
    scenes = synced(env)
    rk = scenes[1]
    item = plex_item(env, rk)
    item.edit(**{"summary.locked": 0})  # unlocked in Plex, as the lock icon does
    item.refresh()  # the agent puts its own (empty) summary back
    assert not env.plex.item(rk).get("summary")
    repaired_twice(env, "reset by an agent refresh: 1 found, 1 fixed")
    assert env.plex.item(rk)["summary"] == "Details 1"
    assert "summary" in env.plex.item(rk)["locked"]


def test_library_rebuilt_with_new_rating_keys(env):
    scenes = synced(env)
    old = scenes[1]
    env.plex.delete_item(old)
    new = env.plex.add_item(env.section, "scene_1", ["/data/stash/scene_1.mp4"])
    assert new != old
    repaired_twice(env, "re-added with a new ratingKey: 1 found, 1 fixed")
    assert env.plex.item(new)["title"] == "Title 1"
    assert env.plex.item(new)["summary"] == "Details 1"


def test_vanished_item_is_reported_and_retried(env):
    scenes = synced(env)
    env.plex.delete_item(scenes[1])
    result = run(env, REPAIR)
    assert "vanished from Plex: 1 found, 0 fixed" in result.output, result.output
    assert "1 not found" in result.output
    assert env.queued_scenes() == [1]  # its retry: 0-30 s, so it may be due already


@pytest.mark.parametrize("preserve", [False, True])
def test_replaced_poster(env, preserve, tmp_path):
    env.settings(preserve_plex_edits=preserve)
    scenes = synced(env, 1, screenshot=tiny_jpeg(b"stash cover"))
    rk = scenes[1]
    assert env.plex.item(rk)["posters"], "the cover was uploaded"
    own = tmp_path / "own.jpg"
    own.write_bytes(tiny_jpeg(b"chosen in plex"))
    plex_item(env, rk).uploadPoster(filepath=str(own))
    result = repaired_twice(env, "poster replaced: 1 found, " + ("0 fixed" if preserve else "1 fixed"))
    selected = next(p["ratingKey"] for p in env.plex.item(rk)["posters"] if p["selected"])
    assert selected.endswith(_sha1(tiny_jpeg(b"chosen in plex") if preserve else tiny_jpeg(b"stash cover")))
    assert "1 scenes re-synced" in result.output


def test_force_full_resync_ignores_the_timestamp_shortcut(env):
    scenes = env.scenes_with_items(2)
    past_latest_update(env)  # else the first sync is in updated_at's second, and not taken as current
    run(env, SYNC_ALL)
    env.plex.clear_requests()
    assert "2 unchanged since their last sync" in " ".join(run(env, SYNC_ALL).messages())
    # Plex changed behind PlexSync's back, Stash did not: Sync All skips, the forced run fixes
    plex_item(env, scenes[1]).editTitle("Edited by hand")
    assert env.plex.item(scenes[1])["title"] == "Edited by hand"
    run(env, SYNC_ALL)
    assert env.plex.item(scenes[1])["title"] == "Edited by hand"
    env.plex.clear_requests()
    result = run(env, FORCE)
    assert "1 synced, 1 unchanged" in result.output, result.output
    assert env.plex.item(scenes[1])["title"] == "Title 1"
    assert env.plex.count("PUT") == 1


def _sha1(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data).hexdigest()
