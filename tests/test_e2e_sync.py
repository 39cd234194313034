"""The pipeline end to end: Stash hook -> queue -> background worker -> Plex.

Real plexapi and stashapi against the emulators; PlexSync.py launched the
way Stash launches it.
"""

import json

from tests.e2e import PLEX_TOKEN, STASH_API_KEY, env, wait_for  # noqa: F401
from tests.runner import bulk_update, scan_update, scene_update, scenes_update


def _assert_clean_protocol(result):
    assert result.parsed, f"stdout is not one JSON object: {result.stdout!r}"
    assert json.loads(result.stdout).keys() == {"output", "error"}
    for level, message in result.logs:
        assert level != "error" or "Configuration error" in message, message


def test_hook_syncs_every_field_and_locks_them(env):
    sid, rk = env.scene_with_item(1)
    result = env.hook(sid, scene_update(sid, title="Title 1"))
    _assert_clean_protocol(result)
    assert result.error is None and result.output == f"queued scene {sid}"
    env.settle()
    item = env.plex.item(rk)
    assert item["title"] == "Title 1"
    assert item["summary"] == "Details 1"
    assert item["originallyAvailableAt"] == "2024-03-05"
    assert item["studio"] == "Acme"
    assert item["actors"] == ["Jane Doe"]
    assert sorted(item["genres"]) == ["HD", "Outdoor"]
    assert float(item["userRating"]) == 8.0
    assert {"title", "summary", "originallyAvailableAt", "studio", "genre", "actor", "userRating"} <= set(item["locked"])
    assert any(p["ratingKey"].startswith("upload://") and p["selected"] for p in item["posters"])
    # one edit PUT and one upload for the item
    assert env.plex.count("PUT", f"/library/sections/{env.section}/all") == 1
    assert env.plex.count("POST", f"/library/metadata/{rk}/posters") == 1
    assert "Synced" in env.runner.worker_log() or "synced" in env.runner.worker_log()


def test_hook_does_not_touch_plex_or_stash_graphql(env):
    sid, _ = env.scene_with_item(2)
    env.runner.kill_workers()
    env.plex.clear_requests()
    before = len(env.stash.documents)
    # Hold the worker lock so no worker runs: the hook alone must not talk to anyone.
    from common.locking import FileLock

    env.runner.data_dir.mkdir(parents=True, exist_ok=True)
    # First call may read settings (no cached state yet); the second must not.
    env.hook(sid)
    lock = FileLock(env.runner.data_dir / "worker.lock")
    wait_for(lambda: not lock.is_locked_elsewhere(), 30, message="first worker to exit")
    assert lock.acquire()
    try:
        before = len(env.stash.documents)
        env.plex.clear_requests()
        result = env.hook(sid)
        assert result.output == f"queued scene {sid}"
        assert len(env.stash.documents) == before
        assert env.plex.requests == []
        assert env.stats()["ready"] == 1
    finally:
        lock.release()


def test_unsynced_fields_are_filtered(env):
    sid, _ = env.scene_with_item(3)
    result = env.hook(sid, scene_update(sid, play_count=4, o_counter=2, organized=True))
    assert result.output == "no synced field changed" and result.error is None
    assert not (env.runner.data_dir / "queue").exists() or env.stats()["ready"] == 0


def test_all_input_shapes_sync(env):
    a, rka = env.scene_with_item(10, title="A")
    b, rkb = env.scene_with_item(11, title="B")
    c, rkc = env.scene_with_item(12, title="C")
    r1 = env.hook(a, scenes_update(a, [{"id": str(a), "title": "A"}, {"id": str(b), "details": "x"}]))
    r2 = env.hook(b, bulk_update(b, [b, c], tag_ids={"ids": ["1"], "mode": "ADD"}))
    r3 = env.hook(c, bulk_update(c, [b, c], tag_ids={"ids": ["1"], "mode": "ADD"}))
    assert [r.output for r in (r1, r2, r3)] == [f"queued scene {a}", f"queued scene {b}", f"queued scene {c}"]
    env.settle()
    assert [env.plex.item(rk)["title"] for rk in (rka, rkb, rkc)] == ["A", "B", "C"]


def test_stash_host_0000_and_coalescing(tmp_path):
    from tests.e2e import Env

    e = Env(tmp_path, host="0.0.0.0")
    try:
        sid, rk = e.scene_with_item(20)
        from common.locking import FileLock

        e.hook(sid)
        e.settle()
        lock = FileLock(e.runner.data_dir / "worker.lock")
        assert lock.acquire()  # keep the worker away while events pile up
        try:
            for title in ("one", "two", "three"):
                e.stash.update_scene(sid, title=title)
                e.hook(sid, scene_update(sid, title=title))
            assert e.stats()["ready"] == 1  # three events, one pending job
        finally:
            lock.release()
        e.hook(sid, scene_update(sid, title="three"))
        e.settle()
        assert e.plex.item(rk)["title"] == "three"
    finally:
        e.close()


def test_moved_file_is_rematched(env):
    sid, rk = env.scene_with_item(30)
    env.hook(sid)
    env.settle()
    new_path = "/data/stash/moved/scene_30_renamed.mp4"
    env.plex.delete_item(rk)
    new_rk = env.plex.add_item(env.section, "scene_30_renamed", [new_path])
    env.stash.update_scene(sid, files=[new_path])
    result = env.runner.run_hook(scan_update(sid))
    assert result.output == f"queued scene {sid}"
    env.settle()
    assert env.plex.item(new_rk)["title"] == "Title 30"


def test_not_found_requests_partial_scan_then_syncs(env):
    path = "/data/stash/new/fresh.mp4"
    env.plex.stage_file(env.section, path)
    sid = env.stash.add_scene(title="Fresh", files=[path])
    env.hook(sid)
    wait_for(lambda: env.plex.scans, 30, message="a partial scan request")
    assert env.plex.scans == ["/data/stash/new"]
    # A jittered retry can come due at once and find the file before this looks: that is fine too.
    wait_for(lambda: env.stats()["waiting_retry"] == 1 or env.title_at(path) == "Fresh", 30,
             message="a waiting retry")
    env.make_retries_due()
    env.settle()
    rk = env.plex.find_by_file(path)
    assert rk and env.plex.item(rk)["title"] == "Fresh"
    assert env.dlq() == []


def test_transient_503_retries_then_succeeds(env):
    sid, rk = env.scene_with_item(40)
    env.plex.fault(status=503, times=2, method="PUT")
    env.hook(sid)
    wait_for(lambda: env.stats()["waiting_retry"] == 1 or env.plex.item(rk)["title"] == "Title 40", 30,
             message="a retry after 503")
    env.make_retries_due()
    wait_for(lambda: env.plex.item(rk)["title"] == "Title 40" or env.make_retries_due() < 0, 30,
             message="sync after the outage")
    env.settle()
    assert env.dlq() == []


def test_a_batch_retried_for_one_reason_logs_one_warning(env):
    from common.locking import FileLock

    scenes = env.scenes_with_items(3)
    lock = FileLock(env.runner.data_dir / "worker.lock")
    assert lock.acquire()  # the three saves wait, to be taken as one batch
    try:
        for sid in scenes:
            assert env.hook(sid).output == f"queued scene {sid}"
    finally:
        lock.release()
    env.plex.fault(status=503)  # Plex down for every request
    env.hook(min(scenes))  # starts the worker
    wait_for(lambda: env.stats()["waiting_retry"] == 3, 30, message="three retries")

    def grouped():  # the batch's retry lines are logged once the batch is settled
        return [line for line in env.runner.worker_log().splitlines() if "3 scenes: " in line and "; retry 1/" in line]

    wait_for(grouped, 30, message="the batch's retry line in worker.log")
    env.plex.clear_faults()
    log = env.runner.worker_log()
    assert len(grouped()) == 1 and "(scenes 1, 2, 3)" in grouped()[0] and "WARNING" in grouped()[0], log
    # The first attempt is the batch of three; later retries fall due one by one (full jitter) and
    # may then be batches of one, logged per scene, so only the first round is asserted.
    assert not [line for line in log.splitlines()
                if "WARNING" in line and "] Scene " in line and "; retry 1/" in line], log
    env.make_retries_due()
    wait_for(lambda: all(env.plex.item(rk)["title"] == env.stash.scene(sid)["title"] for sid, rk in scenes.items())
             or env.make_retries_due() < 0, 30, message="the batch synced after the outage")


def test_permanent_failures_reach_dlq_with_reason(env):
    nofile = env.stash.add_scene(title="No file")
    p = "/data/stash/dup.mp4"
    env.plex.add_item(env.section, "dup a", [p])
    other = env.plex.add_section("Other", locations=["/other"])
    env.plex.add_item(other, "dup b", ["/other/dup.mp4"])
    env.settings(plex_library="")  # all libraries: the same file name twice
    dup = env.stash.add_scene(title="Dup", files=["/mnt/stash/dup.mp4"])  # another mount: by name
    env.hook(nofile)
    env.hook(dup)
    env.settle()
    entries = {e["scene_id"]: e for e in env.dlq()}
    assert entries[nofile]["error_type"] == "SceneHasNoFile"
    assert entries[dup]["error_type"] == "AmbiguousMatch"
    log = env.runner.worker_log()
    assert "LOW confidence match for" in log and "2 candidates found" in log
    assert "Searching all 2 libraries (set plex_library to speed up)" in log


def test_wrong_token_goes_to_dlq_and_never_leaks(env):
    sid, _ = env.scene_with_item(50)
    env.settings(plex_token="wrong-token-abcdefghij")
    env.hook(sid)
    env.settle()
    (entry,) = env.dlq()
    assert entry["error_type"] == "PlexAuthError"
    blob = env.runner.worker_log() + json.dumps(entry)
    for secret in ("wrong-token-abcdefghij", PLEX_TOKEN, STASH_API_KEY, env.runner.cookie):
        assert secret not in blob
    for f in env.runner.data_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for secret in ("wrong-token-abcdefghij", PLEX_TOKEN, STASH_API_KEY, env.runner.cookie):
                if f.name == "stash_session.json" and secret == env.runner.cookie:
                    continue  # the one credential store, owner-only (docs/install.md)
                assert secret.encode() not in data, f"{secret[:6]}... found in {f.name}"


def test_bad_config_logs_and_does_nothing(env):
    sid, rk = env.scene_with_item(60)
    env.settings(plex_url="plex.local:32400")
    result = env.hook(sid)
    assert result.has_log("Configuration error: plex_url: plex_url must start with http:// or https://")
    assert result.error and "Configuration error" in result.error
    assert env.runner.worker_pid() is None
    assert not (env.runner.data_dir / "queue").exists() or env.stats()["ready"] == 0
    assert env.plex.requests == []


def test_disabled_logs_and_reenable_takes_effect(env):
    sid, rk = env.scene_with_item(70)
    env.settings(enabled=False)
    result = env.hook(sid)
    assert result.has_log("Plugin is disabled via configuration") and result.output == "disabled"
    assert env.plex.requests == []
    env.settings(enabled=True)
    result = env.hook(sid)
    assert result.output == f"queued scene {sid}"
    env.settle()
    assert env.plex.item(rk)["title"] == "Title 70"


def test_empty_stash_values_never_wipe_plex(env):
    path = "/data/stash/keep.mp4"
    rk = env.plex.add_item(env.section, "Plex title", [path], summary="Plex summary", studio="Plex studio")
    sid = env.stash.add_scene(title=None, details=None, files=[path])
    env.hook(sid)
    env.settle()
    item = env.plex.item(rk)
    assert (item["title"], item["summary"], item["studio"]) == ("Plex title", "Plex summary", "Plex studio")


def test_preserve_plex_edits_fills_only_empty_fields(env):
    path = "/data/stash/pres.mp4"
    rk = env.plex.add_item(env.section, "Curated in Plex", [path], summary="")
    env.settings(preserve_plex_edits=True)
    sid = env.stash.add_scene(title="From Stash", details="Stash details", files=[path])
    env.hook(sid)
    env.settle()
    item = env.plex.item(rk)
    assert item["title"] == "Curated in Plex" and item["summary"] == "Stash details"


def test_preserve_plex_edits_keeps_the_poster_chosen_in_plex(env, monkeypatch):
    monkeypatch.setenv("PLEXSYNC_LOG_LEVEL", "DEBUG")  # the per-item line is at debug
    from plexapi.server import PlexServer

    sid, rk = env.scene_with_item(81)
    chosen = PlexServer(env.plex.url, env.plex.token).fetchItem(rk)
    chosen.uploadPoster(filepath=b"\x89PNG picked in Plex Web")
    before = [p["ratingKey"] for p in env.plex.item(rk)["posters"] if p["selected"]]
    env.settings(preserve_plex_edits=True)
    env.hook(sid)
    env.settle()
    item = env.plex.item(rk)
    assert [p["ratingKey"] for p in item["posters"] if p["selected"]] == before
    assert env.plex.count("POST", f"/library/metadata/{rk}/posters") == 1  # only the user's own upload
    assert "keeping the poster chosen in Plex" in env.runner.worker_log()


def test_persistent_device_id(env):
    sid, _ = env.scene_with_item(80)
    env.hook(sid)
    env.settle()
    env.stash.update_scene(sid, title="again")
    env.hook(sid)
    env.settle()
    ids = {r.headers.get("X-Plex-Client-Identifier") for r in env.plex.requests}
    assert len(ids) == 1 and None not in ids
    assert json.loads((env.runner.data_dir / "device_id.json").read_text())


def test_save_kept_while_the_queue_is_locked_reaches_plex_through_the_running_worker(tmp_path):
    """A hook that cannot get the queue's write lock within HOOK_QUEUE_WAIT keeps
    the save in pending/ and returns; the worker already running queues it."""
    import os
    import sqlite3

    from tests.e2e import Env

    e = Env(tmp_path, settings={"poll_interval": 60})  # the first save's worker outlives the test
    try:
        (a, rk_a), (b, rk_b) = e.scene_with_item(1), e.scene_with_item(2)
        assert e.hook(a, scene_update(a, title="Title 1")).output == f"queued scene {a}"
        wait_for(lambda: e.plex.item(rk_a)["title"] == "Title 1", 30, message="the first save in Plex")
        worker = e.runner.worker_pid()
        pending_dir = e.runner.data_dir / "pending"
        e.stash.update_scene(b, title="kept")
        blocker = sqlite3.connect(e.runner.data_dir / "queue" / "data.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer that does not let go
            result = e.hook(b, scene_update(b, title="kept"))
            kept = os.listdir(pending_dir)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert result.error is None and result.output == f"kept scene {b}: queue busy", (result.output, result.error)
        assert result.has_log("kept in pending/ for the worker", "warning")
        assert [name for name in kept if name.endswith(".json")], kept
        wait_for(lambda: e.plex.item(rk_b)["title"] == "kept", 30, message="the kept save in Plex")
        assert e.runner.worker_pid() == worker  # queued by the running worker, not a new one
        assert not os.listdir(pending_dir)
        assert "Queued 1 scene(s) from saves kept in pending/" in e.runner.worker_log()
    finally:
        e.close()
