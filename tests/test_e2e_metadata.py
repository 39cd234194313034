"""What is written, chosen by the user (issue 13) and clearing (issue 12 item 8), end to end.

Real plexapi and stashapi against the emulators; PlexSync.py launched the
way Stash launches it. Each setting is shown on and off.
"""

import pytest

from tests.e2e import env, wait_for  # noqa: F401
from tests.emulators.stash import tiny_jpeg
from tests.runner import scene_update

ACME_IMAGE = tiny_jpeg(b"acme studio")
NETWORK_IMAGE = tiny_jpeg(b"the network")
GROUP_IMAGE = tiny_jpeg(b"group front")


def sync(env, sid):
    result = env.hook(sid, scene_update(sid, title="changed"))
    assert result.error is None, result.error
    env.settle()


def writes(env):
    """Requests that change Plex (edits, uploads, deletes)."""
    return [r for r in env.plex.requests if r.method in ("PUT", "POST", "DELETE")]


def studios(env):
    env.stash.set_studio("Network", details="The network", image=NETWORK_IMAGE)
    env.stash.set_studio("Acme", parent="Network", details="Acme makes scenes", image=ACME_IMAGE)


def test_studio_collections_with_parents_posters_summaries_and_a_move(env):
    studios(env)
    env.settings(studio_collections=True)
    sid, rk = env.scene_with_item(1)
    env.plex.clear_requests()
    sync(env, sid)
    assert sorted(env.plex.item(rk)["collections"]) == ["Acme", "Network"]
    assert "collection" in env.plex.item(rk)["locked"]
    acme, network = env.plex.collection(env.section, "Acme"), env.plex.collection(env.section, "Network")
    assert acme["summary"] == "Acme makes scenes" and network["summary"] == "The network"
    assert len(acme["posters"]) == 1 and len(network["posters"]) == 1
    # membership went in the item's one edit; one poster upload per collection
    assert env.plex.count("PUT", f"/library/sections/{env.section}/all") == 1 + 2  # item + two summaries
    assert env.plex.count("POST", f"/library/metadata/{acme['ratingKey']}/posters") == 1

    # saved again with nothing changed (a new updated_at, so the worker compares with Plex): Plex gets nothing
    env.stash.update_scene(sid, title="Title 1")
    env.plex.clear_requests()
    sync(env, sid)
    assert env.plex.count("GET", "/library/metadata/") == 1  # it did look
    assert writes(env) == []
    assert env.plex.count("GET", f"/library/sections/{env.section}/collections") == 0

    # a new studio image is uploaded once, the unchanged summary is not re-sent
    env.stash.set_studio("Acme", parent="Network", details="Acme makes scenes", image=tiny_jpeg(b"new acme"))
    env.stash.update_scene(sid, title="Title 1b")
    env.plex.clear_requests()
    sync(env, sid)
    acme_rk = acme["ratingKey"]
    assert len(env.plex.collection(env.section, "Acme")["posters"]) == 2
    assert env.plex.count("POST", f"/library/metadata/{acme_rk}/posters") == 1
    assert env.plex.count("PUT", f"/library/sections/{env.section}/all") == 1  # the item's title only

    # the scene moves to a studio without a parent: both old collections empty and go
    env.stash.set_studio("Other", details="Someone else")
    env.stash.update_scene(sid, studio="Other")
    sync(env, sid)
    assert env.plex.item(rk)["collections"] == ["Other"]
    assert [c["title"] for c in env.plex.collections(env.section)] == ["Other"]
    assert env.plex.item(rk)["studio"] == "Other"


def test_the_users_own_collections_are_kept_and_never_touched(env):
    studios(env)
    env.settings(studio_collections=True)
    path = "/data/stash/own.mp4"
    rk = env.plex.add_item(env.section, "own", [path], collections=["Favourites"])
    other = env.plex.add_item(env.section, "other", ["/data/stash/other.mp4"], collections=["Acme", "Watch later"])
    env.plex.add_collection(env.section, "Empty and mine")
    sid = env.stash.add_scene(title="Own", studio="Acme", files=[path])
    sync(env, sid)
    assert sorted(env.plex.item(rk)["collections"]) == ["Acme", "Favourites", "Network"]
    # "Acme" existed before PlexSync: no poster, no summary from Stash
    assert env.plex.collection(env.section, "Acme")["posters"] == []
    assert env.plex.collection(env.section, "Acme")["summary"] is None
    assert len(env.plex.collection(env.section, "Network")["posters"]) == 1

    env.stash.update_scene(sid, studio=None)
    sync(env, sid)
    # PlexSync takes back only what it added; the user's collections stay, even empty
    assert env.plex.item(rk)["collections"] == ["Favourites"]
    names = [c["title"] for c in env.plex.collections(env.section)]
    assert names == ["Acme", "Empty and mine", "Favourites", "Watch later"]  # Network (PlexSync's) is gone
    assert sorted(env.plex.item(other)["collections"]) == ["Acme", "Watch later"]


def test_membership_the_user_gave_is_kept(env):
    studios(env)
    env.settings(studio_collections=True)
    path = "/data/stash/kept.mp4"
    rk = env.plex.add_item(env.section, "kept", [path], collections=["Acme"])
    sid = env.stash.add_scene(title="Kept", studio="Acme", files=[path])
    sync(env, sid)
    env.stash.update_scene(sid, studio=None)
    sync(env, sid)
    # the item was in the user's "Acme" before PlexSync: it stays there
    assert env.plex.item(rk)["collections"] == ["Acme"]
    assert env.plex.collection(env.section, "Acme")["posters"] == []


def test_group_collections_and_a_scene_moving_between_groups(env):
    env.stash.set_group("Series One", synopsis="The first series", front_image=GROUP_IMAGE)
    env.stash.set_group("Series Two", synopsis="The second series")
    sid, rk = env.scene_with_item(3, groups=["Series One"])
    sync(env, sid)
    assert env.plex.item(rk)["collections"] == []  # off by default
    assert env.plex.collections(env.section) == []

    env.settings(group_collections=True)
    env.stash.update_scene(sid, title="Title 3b")
    sync(env, sid)
    assert env.plex.item(rk)["collections"] == ["Series One"]
    one = env.plex.collection(env.section, "Series One")
    assert one["summary"] == "The first series" and len(one["posters"]) == 1

    env.stash.update_scene(sid, groups=["Series Two"])
    sync(env, sid)
    assert env.plex.item(rk)["collections"] == ["Series Two"]
    two = env.plex.collection(env.section, "Series Two")
    assert two["summary"] == "The second series" and two["posters"] == []  # Stash has no image for it
    assert env.plex.collection(env.section, "Series One") is None


def test_tag_collections_on_then_off_again(env):
    sid, rk = env.scene_with_item(4, tags=["Featured", "HD", "Outdoor"])
    env.settings(tag_collections="featured, Missing")
    sync(env, sid)
    assert env.plex.item(rk)["collections"] == ["Featured"]
    assert [c["title"] for c in env.plex.collections(env.section)] == ["Featured"]

    env.settings(tag_collections="")
    env.stash.update_scene(sid, title="Title 4b")
    sync(env, sid)
    assert env.plex.item(rk)["collections"] == []
    assert "collection" not in env.plex.item(rk)["locked"]
    assert env.plex.collections(env.section) == []


def test_content_rating_on_and_off(env):
    sid, rk = env.scene_with_item(5)
    sync(env, sid)
    assert env.plex.item(rk)["contentRating"] is None
    env.settings(content_rating="XXX")
    env.stash.update_scene(sid, title="Title 5b")
    sync(env, sid)
    assert env.plex.item(rk)["contentRating"] == "XXX" and "contentRating" in env.plex.item(rk)["locked"]
    # empty again: Plex's value is left alone
    env.settings(content_rating="")
    env.stash.update_scene(sid, title="Title 5c")
    sync(env, sid)
    assert env.plex.item(rk)["contentRating"] == "XXX"


def test_skip_fields_are_never_written_locked_or_uploaded(env):
    studios(env)
    env.settings(skip_fields="summary, poster, collections, rating", studio_collections=True)
    sid, rk = env.scene_with_item(6)
    sync(env, sid)
    item = env.plex.item(rk)
    assert item["title"] == "Title 6" and item["summary"] is None and item["userRating"] is None
    assert not {"summary", "userRating", "collection", "thumb"} & item["locked"]
    assert item["collections"] == [] and env.plex.collections(env.section) == []
    assert env.plex.count("POST") == 0

    env.settings(skip_fields="")
    env.stash.update_scene(sid, title="Title 6b")
    sync(env, sid)
    item = env.plex.item(rk)
    assert item["summary"] == "Details 6" and item["userRating"] == 8.0
    assert sorted(item["collections"]) == ["Acme", "Network"]


def test_exclude_tags_keeps_workflow_tags_out_of_genres(env):
    sid, rk = env.scene_with_item(7, tags=["Outdoor", "TODO", "needs-cover"])
    env.settings(exclude_tags="todo,NEEDS-COVER")
    sync(env, sid)
    assert env.plex.item(rk)["genres"] == ["Outdoor"]
    env.settings(exclude_tags="")
    env.stash.update_scene(sid, title="Title 7b")
    sync(env, sid)
    assert sorted(env.plex.item(rk)["genres"]) == ["Outdoor", "TODO", "needs-cover"]


@pytest.mark.parametrize("settings, named", [
    ({"skip_fields": "title, titel, posters"}, "skip_fields: unknown field(s) titel, posters"),
    ({"studio_collections": "maybe"}, "studio_collections"),
])
def test_bad_values_are_rejected_by_name(env, settings, named):
    sid, _ = env.scene_with_item(8)
    env.settings(**settings)
    result = env.hook(sid)
    assert result.error and "Configuration error" in result.error and named in result.error
    assert env.plex.requests == []


def test_clearing_in_stash_clears_what_plexsync_wrote_and_nothing_else(env):
    path = "/data/stash/scene_9.mp4"
    rk = env.plex.add_item(env.section, "scene_9", [path], tagline="agent tagline", contentRating="R")
    sid = env.stash.add_scene(title="Nine", details="Stash details", date="2024-01-02", studio="Acme",
                              performers=["Jane"], tags=["HD"], rating100=60, files=[path])
    sync(env, sid)
    assert env.plex.item(rk)["studio"] == "Acme"

    env.stash.update_scene(sid, details="", date=None, studio=None, performers=[], tags=[], rating100=None)
    sync(env, sid)
    item = env.plex.item(rk)
    assert (item["summary"], item["originallyAvailableAt"], item["studio"], item["userRating"]) == (None,) * 4
    assert item["actors"] == [] and item["genres"] == []
    assert not {"summary", "originallyAvailableAt", "studio", "actor", "genre", "userRating"} & item["locked"]
    assert item["title"] == "Nine" and "title" in item["locked"]
    assert item["contentRating"] == "R"  # never PlexSync's

    # a value someone set in Plex after PlexSync's stays when Stash is empty
    env.stash.update_scene(sid, studio="Acme")
    sync(env, sid)
    env.plex.clear_requests()
    from plexapi.server import PlexServer

    PlexServer(env.plex.url, env.plex.token).fetchItem(rk).editStudio("Chosen in Plex")
    env.stash.update_scene(sid, studio=None)
    env.plex.clear_requests()
    sync(env, sid)
    assert env.plex.item(rk)["studio"] == "Chosen in Plex"
    assert writes(env) == []


def test_a_value_plexsync_never_wrote_stays(env):
    path = "/data/stash/scene_10.mp4"
    rk = env.plex.add_item(env.section, "scene_10", [path], summary="From the agent", studio="Agent studio",
                           genres=["Agent genre"])
    sid = env.stash.add_scene(title="Ten", files=[path])
    sync(env, sid)
    item = env.plex.item(rk)
    assert (item["summary"], item["studio"], item["genres"]) == ("From the agent", "Agent studio", ["Agent genre"])


def test_turning_a_collection_setting_on_or_off_reaches_every_scene_without_a_save(env):
    """The settings change what every item should hold: the next worker batch or
    syncing task compares every scene with Plex again (worker.reshape)."""
    studios(env)
    scenes = env.scenes_with_items(3)
    first, *others = sorted(scenes)
    sync(env, first)  # the first run records the settings it applied
    assert (env.runner.data_dir / "written_options.json").exists()
    env.settings(studio_collections=True)
    sync(env, first)  # one save; the other two scenes are unchanged in Stash
    assert all(sorted(env.plex.item(rk)["collections"]) == ["Acme", "Network"] for rk in scenes.values())
    assert "Settings that shape what is written changed (studio_collections): 3 scenes queued" \
        in env.runner.worker_log()

    env.settings(studio_collections=False)
    task = env.runner.run_task("Sync All Scenes to Plex")  # no save at all: a task sees it too
    assert task.error is None, task.stderr
    assert all(env.plex.item(rk)["collections"] == [] for rk in scenes.values())
    assert env.plex.collections(env.section) == []  # the emptied collections PlexSync made are gone
    assert task.has_log("Settings that shape what is written changed (studio_collections): 3 scenes queued")

    env.plex.clear_requests()
    env.runner.run_task("Sync All Scenes to Plex")  # applied: nothing queued again
    assert writes(env) == []
