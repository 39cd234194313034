"""Matching while the library changes, end to end through the runner: renames
with a live worker, the fixes troubleshoot.md gives for a missing or ambiguous
match followed by Retry Failed Jobs, and a Plex library that covers only some
of Stash's files.

Real plexapi and stashapi against the emulators; PlexSync.py launched the way
Stash launches it.
"""

import pytest
from plexapi.server import PlexServer

from tests.e2e import Env, env, wait_for  # noqa: F401
from tests.runner import scan_update, scene_update

SYNC_ALL = "Sync All Scenes to Plex"
RETRY = "Retry Failed Jobs"
NOT_IN_LIBRARY = "is not in any Plex library"


def live_worker(env):
    """A worker kept alive by a retry that waits (a file Plex does not have yet)."""
    waiting = env.stash.add_scene(title="Waiting", files=["/data/stash/not-in-plex-yet.mp4"])
    env.hook(waiting, scene_update(waiting, title="Waiting"))
    wait_for(lambda: env.stats()["waiting_retry"] == 1, 30, message="the waiting retry")
    pid = env.runner.worker_pid()
    assert pid is not None
    return pid


def synced_scene(env, n: int):
    sid, rk = env.scene_with_item(n)
    env.hook(sid, scene_update(sid, title=f"Title {n}"))
    wait_for(lambda: env.plex.item(rk)["title"] == f"Title {n}", 30, message="the first sync")
    return sid, rk


# -- renames and moves with a live worker -------------------------------------------


def test_rename_with_a_kept_rating_key_lands_with_a_live_worker(env, monkeypatch):
    monkeypatch.setenv("PLEXSYNC_LOG_LEVEL", "DEBUG")  # per-scene lines in worker.log
    # Plex already holds the scene's values: the first sync writes nothing, so the
    # item's updatedAt stays older than what the index has seen (the newer item),
    # and only the scene's own earlier match can find it after the rename.
    rk = env.plex.add_item(env.section, "Kept", ["/data/stash/kept.mp4"], updatedAt=1_700_000_000)
    env.plex.add_item(env.section, "Newer", ["/data/stash/newer.mp4"], updatedAt=1_700_000_100)
    sid = env.stash.add_scene(title="Kept", files=["/data/stash/kept.mp4"], screenshot=None)
    pid = live_worker(env)
    env.hook(sid, scene_update(sid, title="Kept"))
    wait_for(lambda: f"Scene {sid} already up to date in Plex ({rk})" in env.runner.worker_log(), 30,
             message="the first sync")
    new_path = "/data/stash/moved/kept-final.mp4"
    env.plex.move_file("/data/stash/kept.mp4", new_path)  # Plex scanned first: same item, new Part
    env.stash.update_scene(sid, files=[new_path], title="After The Rename")
    env.hook(sid, scan_update(sid))
    wait_for(lambda: env.plex.item(rk)["title"] == "After The Rename", 20, message="the renamed file's sync")
    assert env.runner.worker_pid() == pid  # the same worker, not a new run
    assert env.dlq() == []
    # The title is in Plex before the job is settled (the batch goes on): wait for that, then
    # only the scene Plex never had is left.
    wait_for(lambda: sid not in env.queued_scenes(), 20, message="the renamed scene's job settled")
    assert len(env.queued_scenes()) == 1


def test_rename_where_plex_made_a_new_item_lands_with_a_live_worker(env):
    pid = live_worker(env)
    sid, old = synced_scene(env, 1)
    new_path = "/data/stash/moved/scene-one-final.mp4"
    env.plex.delete_item(old)  # Plex saw a deletion and a new file
    new = env.plex.add_item(env.section, "scene-one-final", [new_path])
    env.stash.update_scene(sid, files=[new_path], title="After The Rename")
    env.hook(sid, scan_update(sid))
    wait_for(lambda: env.plex.item(new)["title"] == "After The Rename", 20, message="the new item's sync")
    assert env.runner.worker_pid() == pid
    assert env.dlq() == []
    listings = [r for r in env.plex.requests if r.path.endswith("/all") and r.method == "GET"]
    assert all("updatedAt>>" in r.query for r in listings[1:])  # after the first build: only changes


# -- troubleshoot.md: fix, then Retry Failed Jobs -------------------------------------------

STASH_FILE = "/stash/one/dup.mp4"  # Stash's mount; Plex sees /data/...


def ambiguous(tmp_path):
    """A scene whose file name two Plex items share, dead-lettered as AmbiguousMatch."""
    env = Env(tmp_path, settings={"plex_library": "", "strict_matching": True})
    other = env.plex.add_section("Other", locations=["/data/other"])
    right = env.plex.add_item(env.section, "dup", ["/data/stash/one/dup.mp4"])
    wrong = env.plex.add_item(other, "dup", ["/data/other/dup.mp4"])
    sid = env.stash.add_scene(title="The Right One", files=[STASH_FILE])
    env.hook(sid, scene_update(sid, title="The Right One"))
    wait_for(env.dlq, 30, message="the dead-letter entry")
    assert env.dlq()[0]["error_type"] == "AmbiguousMatch"
    env.settle()
    return env, right, wrong


FIXES = {
    # "Set path_map so that Stash paths become Plex paths."
    "path_map": lambda env, wrong: env.settings(path_map="/stash=>/data/stash"),
    # "Set Plex library to only the library that holds your Stash files."
    "plex_library": lambda env, wrong: env.settings(plex_library="Stash"),
    # "Remove duplicate items in Plex."
    "remove_duplicate": lambda env, wrong: env.plex.delete_item(wrong),
}


@pytest.mark.parametrize("fix", sorted(FIXES))
def test_ambiguous_match_fix_then_retry_failed_jobs(tmp_path, fix):
    env, right, wrong = ambiguous(tmp_path)
    try:
        FIXES[fix](env, wrong)
        result = env.runner.run_task(RETRY)
        assert result.error is None, result.stderr
        assert "1 synced" in result.output and "0 failed" in result.output, result.output
        assert env.plex.item(right)["title"] == "The Right One"
        if fix != "remove_duplicate":
            assert env.plex.item(wrong)["title"] == "dup"
        assert env.dlq() == []
    finally:
        env.close()


def test_ambiguous_match_strict_matching_off_then_retry_failed_jobs(tmp_path):
    env, right, wrong = ambiguous(tmp_path)
    try:
        env.settings(strict_matching=False)  # "if equal names always mean the same video for you"
        result = env.runner.run_task(RETRY)
        assert "1 synced" in result.output, result.output
        assert "The Right One" in {env.plex.item(right)["title"], env.plex.item(wrong)["title"]}
        assert env.dlq() == []
    finally:
        env.close()


def test_missing_match_plex_scans_the_file_then_retry_failed_jobs(env):
    path = "/data/stash/late/new.mp4"
    sid = env.stash.add_scene(title="Late", files=[path])
    env.hook(sid, scene_update(sid, title="Late"))

    def dead_lettered():
        env.make_retries_due()  # fake the ~85 minutes of retries
        return env.dlq()
    wait_for(dead_lettered, 60, interval=0.2, message="the retries to run out")
    assert env.dlq()[0]["error_type"] == "PlexNotFound"
    env.settle()
    # "Check that the library's folders include the file's folder": the user scans it.
    env.plex.stage_file(env.section, path, title="new")
    PlexServer(env.plex.url, env.plex.token).library.section("Stash").update(path="/data/stash/late")
    rk = env.plex.find_by_file(path)
    assert rk is not None
    result = env.runner.run_task(RETRY)
    assert "1 synced" in result.output, result.output
    assert env.plex.item(rk)["title"] == "Late"
    assert env.dlq() == []


# -- a Plex library that covers only some files ------------------------------------------


def test_partial_library_reports_uncovered_files_once_then_syncs_them_when_covered(env):
    covered = {n: env.scene_with_item(n) for n in (1, 2)}
    outside = [env.stash.add_scene(title=f"Outside {n}", files=[f"/data/other/o{n}.mp4"]) for n in (1, 2)]

    first = env.runner.run_task(SYNC_ALL)
    assert first.error is None, first.stderr
    assert first.output.startswith("Sync complete: 2 synced, 0 unchanged, 0 not found, 0 failed"), first.output
    assert ", 2 not in any Plex library" in first.output
    reported = [m for m in first.messages() if NOT_IN_LIBRARY in m]
    assert len(reported) == 2 and all("not retried" in m for m in reported), reported
    assert all(any(f"Scene {sid}: " in m for m in reported) for sid in outside), reported
    assert env.dlq() == [] and env.stats()["waiting_retry"] == 0
    assert not any(r.path.endswith("/refresh") for r in env.plex.requests)  # no scan asked for
    env.settle()

    # The user adds the folder to the Plex library, and Plex scans it.
    env.plex.add_location(env.section, "/data/other")
    items = [env.plex.add_item(env.section, f"o{n}", [f"/data/other/o{n}.mp4"]) for n in (1, 2)]
    second = env.runner.run_task(SYNC_ALL)
    assert second.output.startswith("Sync complete: 2 synced, 2 unchanged, 0 not found, 0 failed"), second.output
    assert NOT_IN_LIBRARY not in second.output
    assert [env.plex.item(rk)["title"] for rk in items] == ["Outside 1", "Outside 2"]
    assert [env.plex.item(rk)["title"] for _, rk in covered.values()] == ["Title 1", "Title 2"]
    assert env.dlq() == []
