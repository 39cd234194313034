"""Documented procedures, end to end against the emulators.

A GraphQL-only setting set the way docs/config.md says (its own example), and
path_map in the Docker layout of docs/install.md. The tasks, the CLI, the
circuit breaker and the bad-token fix have their own end-to-end tests
(test_e2e_tasks, test_cli, test_reliability_*). Real plexapi and stashapi;
PlexSync.py runs from an installed plugin. About 6 s.
"""

import re
import sqlite3
import time
from pathlib import Path

import requests

from tests.e2e import PLEX_TOKEN, STASH_API_KEY, env, wait_for  # noqa: F401
from tests.runner import scene_update

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _configure_as_documented(env, **extra):
    """docs/config.md: read the settings, send them back with additions via configurePlugin."""
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    query, mutation = re.findall(r"^```graphql\n(.*?)^```", text, re.M | re.S)[:2]
    headers = {"ApiKey": STASH_API_KEY}
    current = requests.post(env.stash.graphql_url, json={"query": query}, headers=headers, timeout=10).json()
    settings = current["data"]["configuration"]["plugins"]["PlexSync"]
    settings.update(extra)
    answer = requests.post(env.stash.graphql_url, json={"query": mutation, "variables": {"input": settings}},
                           headers=headers, timeout=10).json()
    assert "errors" not in answer, answer


def test_graphql_only_setting_drives_the_purge_task(env):
    _configure_as_documented(env, dlq_retention_days=2)
    assert env.stash.plugin_settings("PlexSync")["plex_token"] == PLEX_TOKEN  # nothing lost
    old, new = env.stash.add_scene(title="Old"), env.stash.add_scene(title="New")
    for sid in (old, new):
        env.hook(sid)
    env.settle()
    assert len(env.dlq()) == 2
    with sqlite3.connect(str(env.runner.data_dir / "dlq.db")) as conn:
        conn.execute("UPDATE dlq SET failed_at = ? WHERE scene_id = ?", (time.time() - 3 * 86400, old))
    result = env.runner.run_task("Purge Old Dead-Letter Entries")
    assert result.output == "Purged 1 dead-letter entries older than 2 days"
    assert [e["scene_id"] for e in env.dlq()] == [new]


def test_path_map_for_containers_that_see_different_paths(env):
    """Stash sees /data/stash, Plex /media/stash (docs/install.md, Docker)."""
    media = env.plex.add_section("Media", locations=["/media/stash"])
    env.settings(plex_library="Media")
    # Without a map: a file Plex lacks lies outside every library folder. It is
    # reported once, and neither scanned for, retried nor dead-lettered.
    env.plex.stage_file(media, "/media/stash/new/fresh.mp4")
    fresh = env.stash.add_scene(title="Fresh", files=["/data/stash/new/fresh.mp4"])
    env.hook(fresh)
    env.settle()
    assert env.plex.scans == [] and env.dlq() == [] and env.stats()["waiting_retry"] == 0
    assert ("'/data/stash/new/fresh.mp4' is not in any Plex library (no library folder holds "
            "'/data/stash/new/fresh.mp4'); not retried") in env.runner.worker_log()
    # With the map: the partial scan goes to the Plex-side folder, and the retry finds the file.
    env.settings(path_map="/data/stash=>/media/stash")
    env.hook(fresh, scene_update(fresh, title="Fresh"))
    wait_for(lambda: env.plex.scans, 30, message="a partial scan")
    assert env.plex.scans == ["/media/stash/new"]
    # A jittered retry can come due at once and find the file before this looks: that is fine too.
    wait_for(lambda: env.stats()["waiting_retry"] == 1 or env.title_at("/media/stash/new/fresh.mp4") == "Fresh",
             30, message="a waiting retry")
    env.make_retries_due()
    env.settle()
    assert env.plex.item(env.plex.find_by_file("/media/stash/new/fresh.mp4"))["title"] == "Fresh"
    # Equal file names in two folders: the full path picks the right one.
    a = env.plex.add_item(media, "dup a", ["/media/stash/a/dup.mp4"])
    b = env.plex.add_item(media, "dup b", ["/media/stash/b/dup.mp4"])
    sid = env.stash.add_scene(title="The B one", files=["/data/stash/b/dup.mp4"])
    env.hook(sid)
    env.settle()
    assert (env.plex.item(a)["title"], env.plex.item(b)["title"]) == ("dup a", "The B one")
    assert env.dlq() == []
