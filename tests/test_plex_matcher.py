"""Matching Stash files to Plex items: real plexapi against the Plex emulator."""

import logging
import os
import sqlite3
import threading
import tracemalloc

import pytest

from common.errors import AmbiguousMatch, ConfigError, NotInPlexLibrary, PlexNotFound, SceneHasNoFile
from common.locking import FileLock
from plex.pathnorm import basename_key, map_path, parent_folder, path_key
from plex.sync import Outcome, PlexSync
from validation.config import PlexSyncConfig, parse_path_map
from validation.scene import SceneData

MATCHER_LOG = "plexsync.plex.matcher"


@pytest.fixture
def matcher_log(caplog):
    """Matcher records, even when common.log.setup() stopped "plexsync" propagating."""
    logger = logging.getLogger(MATCHER_LOG)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # caplog's root handler would see each record twice
    yield caplog
    logger.setLevel(level)
    logger.propagate = propagate
    logger.removeHandler(caplog.handler)


def scene(scene_id=1, *files, **fields):
    return SceneData(id=scene_id, files=list(files), **fields)


def listings(emu):
    """Full listing pages requested (title searches and changes listings excluded)."""
    return sum(
        1 for r in emu.requests
        if r.method == "GET" and r.path.startswith("/library/sections/") and r.path.endswith("/all")
        and "title" not in r.query and "updatedAt>>" not in r.query
    )


def title_searches(emu):
    return sum(1 for r in emu.requests if r.path.endswith("/all") and "title" in r.query)


# -- path keys (pure) -----------------------------------------------------------


def test_path_keys_normalize_windows_and_long_prefix():
    assert path_key(r"\\?\D:\Media\Stash\One.MP4") == "d:/media/stash/one.mp4"
    assert path_key(r"\\?\UNC\nas\share\A.mp4") == "//nas/share/a.mp4"
    assert path_key("/data//stash/./One.mp4") == "/data/stash/One.mp4"  # POSIX keeps case
    assert basename_key(r"D:\Media\One.MP4") == basename_key("/x/one.mp4") == "one.mp4"


def test_map_path_uses_longest_whole_component_prefix():
    rules = parse_path_map("/data=>/media; /data/stash=>/plex/stash; /dat=>/nope")
    assert map_path("/data/stash/a/b.mp4", rules) == "/plex/stash/a/b.mp4"
    assert map_path("/data/other/b.mp4", rules) == "/media/other/b.mp4"
    assert map_path("/database/b.mp4", rules) == "/database/b.mp4"
    win = parse_path_map(r"/data/stash=>D:\Media\Stash")
    assert map_path("/data/stash/a/b.mp4", win) == r"D:\Media\Stash\a\b.mp4"
    assert parent_folder(r"D:\Media\Stash\a\b.mp4") == r"D:\Media\Stash\a"


# -- lookup order ---------------------------------------------------------------


def test_match_by_exact_path(emu, make_sync):
    section = emu.add_section("Stash", locations=["/data/stash"])
    rk = emu.add_item(section, "One", ["/data/stash/a/one.mp4"])
    emu.add_item(section, "Other", ["/data/stash/a/other.mp4"])
    match = make_sync().matcher.match_file("/data/stash/a/one.mp4")
    assert (match.rating_key, match.section_id) == (rk, section)


def test_match_by_basename_across_mounts(emu, make_sync):
    section = emu.add_section("Stash", locations=["/mnt/plex"])
    rk = emu.add_item(section, "One", ["/mnt/plex/studio/One.mp4"])
    sync = make_sync()
    assert sync.matcher.match_file("/data/stash/elsewhere/one.mp4").rating_key == rk


def test_path_map_prefers_the_mapped_full_path(emu, make_sync):
    section = emu.add_section("Stash", locations=["/media"])
    wanted = emu.add_item(section, "A", ["/media/stash/x/same.mp4"])
    emu.add_item(section, "B", ["/media/other/same.mp4"])  # same name, other folder
    sync = make_sync(path_map="/data=>/media", strict_matching=True)
    assert sync.matcher.match_file("/data/stash/x/same.mp4").rating_key == wanted


def test_windows_plex_paths_match_case_insensitively(emu, make_sync):
    section = emu.add_section("Win", locations=[r"D:\Media\Stash"])
    wanted = emu.add_item(section, "A", [r"\\?\D:\Media\Stash\Studio\Same.MP4"])
    emu.add_item(section, "B", [r"D:\Media\Other\same.mp4"])
    sync = make_sync(path_map=r"/data/stash=>D:\Media\Stash", strict_matching=True)
    assert sync.matcher.match_file("/data/stash/studio/same.mp4").rating_key == wanted


def changes_listings(emu):
    """Listing requests filtered to what changed (``updatedAt>>=``)."""
    return [r for r in emu.requests if r.path.endswith("/all") and "updatedAt>>" in r.query]


def test_new_item_is_found_by_one_changes_listing(emu, make_sync):
    section = emu.add_section("Stash")
    emu.add_item(section, "Old", ["/data/stash/old.mp4"], updatedAt=1_700_000_000)
    sync = make_sync()
    sync.matcher.match_file("/data/stash/old.mp4")
    # A title unlike the file name: only the file tells which item it is.
    new = emu.add_item(section, "Plex Title", ["/data/stash/new/qqq-111.mp4"])
    emu.clear_requests()
    sync.matcher.begin_batch()
    assert sync.matcher.match_file("/data/stash/new/qqq-111.mp4").rating_key == new
    changed = changes_listings(emu)
    assert emu.count() == len(changed) == 1  # one cheap request per miss, never the whole library
    # Only items changed after the newest one the index saw (less 1 s of overlap).
    assert changed[0].query["updatedAt>>"] == [str(1_700_000_000 - 1)]
    # The hit went into the index: the next lookup is local.
    emu.clear_requests()
    sync.matcher.begin_batch()
    assert sync.matcher.match_file("/data/stash/new/qqq-111.mp4").rating_key == new
    assert emu.count() == 0


def test_changes_listing_moves_its_watermark(emu, make_sync):
    section = emu.add_section("Stash")
    emu.add_item(section, "Old", ["/data/stash/old.mp4"], updatedAt=1_700_000_000)
    sync = make_sync()
    sync.matcher.match_file("/data/stash/old.mp4")
    emu.add_item(section, "New", ["/data/stash/new.mp4"], addedAt=1_700_000_500)
    sync.matcher.begin_batch()
    sync.matcher.match_file("/data/stash/new.mp4")
    emu.clear_requests()
    sync.matcher.begin_batch()
    with pytest.raises(PlexNotFound):
        sync.matcher.match_file("/data/stash/missing.mp4")
    assert [r.query["updatedAt>>"] for r in changes_listings(emu)] == [[str(1_700_000_500 - 1)]]


def test_changes_are_listed_at_most_once_per_batch(emu, make_sync):
    emu.add_section("Stash")
    sync = make_sync()
    with pytest.raises(PlexNotFound):
        sync.matcher.match_file("/data/stash/a.mp4")
    sync.matcher.begin_batch()
    emu.clear_requests()
    for name in ("b", "c", "d"):
        with pytest.raises(PlexNotFound):
            sync.matcher.match_file(f"/data/stash/{name}.mp4")
    assert len(changes_listings(emu)) == 1


def test_changes_listing_ignores_items_with_another_file(emu, make_sync):
    section = emu.add_section("Stash")
    emu.add_item(section, "Old", ["/data/stash/old.mp4"])
    sync = make_sync()
    sync.matcher.match_file("/data/stash/old.mp4")
    emu.add_item(section, "Sunset", ["/data/stash/sunset-other.mp4"])
    sync.matcher.begin_batch()
    with pytest.raises(PlexNotFound):
        sync.matcher.match_file("/data/stash/sunset.mp4")


def test_renamed_file_whose_item_plex_kept_is_found_by_the_scene(emu, make_sync):
    section = emu.add_section("Stash")
    rk = emu.add_item(section, "One", ["/data/stash/one.mp4"])
    sync = make_sync()
    assert [m.rating_key for m in sync.matcher.match(scene(7, "/data/stash/one.mp4"))] == [rk]
    emu.move_file("/data/stash/one.mp4", "/data/stash/moved/one-renamed.mp4")
    emu.clear_requests()
    sync.matcher.begin_batch()
    assert [m.rating_key for m in sync.matcher.match(scene(7, "/data/stash/moved/one-renamed.mp4"))] == [rk]
    assert emu.count("GET", f"/library/metadata/{rk}") == 1
    assert listings(emu) == 0  # the kept item answered; no listing needed
    # The old path left the index with the new one.
    assert sync.store.by_path("/data/stash/one.mp4") == []
    assert sync.store.by_path("/data/stash/moved/one-renamed.mp4") == [(rk, section)]


def test_another_scene_does_not_claim_a_kept_item(emu, make_sync):
    section = emu.add_section("Stash")
    rk = emu.add_item(section, "One", ["/data/stash/one.mp4"])
    sync = make_sync()
    sync.matcher.match(scene(7, "/data/stash/one.mp4"))
    sync.matcher.begin_batch()
    with pytest.raises(PlexNotFound):
        sync.matcher.match(scene(8, "/data/stash/two.mp4"))
    assert sync.store.scene_items(7) == [(rk, section)]


# -- the index ------------------------------------------------------------------


def test_index_is_reused_across_instances(emu, make_sync):
    section = emu.add_section("Stash")
    rk = emu.add_item(section, "One", ["/data/stash/one.mp4"])
    assert make_sync().matcher.match_file("/data/stash/one.mp4").rating_key == rk
    assert listings(emu) == 1
    emu.clear_requests()
    second = make_sync()
    assert second.matcher.match_file("/data/stash/one.mp4").rating_key == rk
    assert emu.count() == 0  # matching needs no Plex request at all


def test_index_pages_through_large_sections(emu, make_sync, monkeypatch):
    monkeypatch.setattr("common.defaults.PLEX_PAGE_SIZE", 7)
    section = emu.add_section("Stash")
    keys = [emu.add_item(section, f"T{i:02d}", [f"/data/stash/f{i:02d}.mp4"]) for i in range(20)]
    sync = make_sync()
    assert sync.matcher.match_file("/data/stash/f19.mp4").rating_key == keys[19]
    assert listings(emu) == 3
    pages = [r for r in emu.requests if r.path.endswith("/all")]
    assert [r.headers["X-Plex-Container-Start"] for r in pages] == ["0", "7", "14"]
    assert all(r.query.get("includeGuids") == ["0"] for r in pages)


def test_index_build_memory_stays_flat(emu, make_sync, monkeypatch):
    """Rows stream page by page into SQLite; no page outlives its insert."""
    monkeypatch.setattr("common.defaults.PLEX_PAGE_SIZE", 50)
    section = emu.add_section("Stash")
    for i in range(1000):
        emu.add_item(section, f"Title {i}", [f"/data/stash/d{i % 10}/file{i}.mp4"], genres=["a", "b"], actors=["x", "y"])
    sync = make_sync()
    sync.matcher.sections()
    tracemalloc.start()
    try:
        sync.matcher.refresh()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The same 1000 items as plexapi objects take ~7 MB (emulator's own allocations included here).
    assert peak < 3_000_000
    assert sync.matcher.match_file("/data/stash/d9/file999.mp4")


def test_index_refreshes_once_per_run_when_a_file_is_missing(emu, make_sync):
    section = emu.add_section("Stash")
    emu.add_item(section, "One", ["/data/stash/one.mp4"])
    make_sync().matcher.match_file("/data/stash/one.mp4")
    two = emu.add_item(section, "Renamed In Plex", ["/data/stash/qqq111.mp4"])
    three = emu.add_item(section, "Also Renamed", ["/data/stash/qqq222.mp4"])
    emu.clear_requests()
    run = make_sync()
    assert run.matcher.match_file("/data/stash/qqq111.mp4").rating_key == two
    assert run.matcher.match_file("/data/stash/qqq222.mp4").rating_key == three
    assert listings(emu) == 0 and len(changes_listings(emu)) == 1  # both new items in one cheap request
    with pytest.raises(PlexNotFound):
        run.matcher.match_file("/data/stash/not-in-plex.mp4")
    assert listings(emu) == 1  # the index predates this run: one rebuild
    run.matcher.begin_batch()
    with pytest.raises(PlexNotFound):
        run.matcher.match_file("/data/stash/not-in-plex-either.mp4")
    assert listings(emu) == 1  # never a second rebuild in one run


def test_a_fresh_index_is_not_refreshed_again_in_the_same_run(emu, make_sync):
    emu.add_section("Stash")
    sync = make_sync()
    with pytest.raises(PlexNotFound):
        sync.matcher.match_file("/data/stash/a.mp4")
    with pytest.raises(PlexNotFound):
        sync.matcher.match_file("/data/stash/b.mp4")
    assert listings(emu) == 1  # the first build only


def test_readers_never_see_a_half_built_index(emu, make_sync, paths, monkeypatch):
    monkeypatch.setattr("common.defaults.PLEX_PAGE_SIZE", 5)
    section = emu.add_section("Stash")
    for i in range(12):
        emu.add_item(section, f"T{i}", [f"/data/stash/f{i}.mp4"])
    sync = make_sync()
    sync.matcher.refresh()
    for i in range(12, 24):
        emu.add_item(section, f"T{i}", [f"/data/stash/f{i}.mp4"])

    seen = []
    reader = sqlite3.connect(paths.match_index)
    real = sync.store.add_build_rows

    def add_and_peek(rows):
        real(rows)
        seen.append(reader.execute("SELECT count(*) FROM items").fetchone()[0])

    monkeypatch.setattr(sync.store, "add_build_rows", add_and_peek)
    sync.matcher.refresh()
    assert seen and set(seen) == {12}  # the old index, complete, while the new one fills
    assert reader.execute("SELECT count(*) FROM items").fetchone()[0] == 24
    reader.close()


def test_another_process_building_is_not_disturbed(emu, make_sync, paths):
    section = emu.add_section("Stash")
    emu.add_item(section, "One", ["/data/stash/one.mp4"])
    make_sync().matcher.match_file("/data/stash/one.mp4")
    other = FileLock(str(paths.match_index) + ".lock")
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("held", other.acquire()))
    thread.start()
    thread.join()
    try:
        assert result["held"]
        emu.clear_requests()
        assert make_sync().matcher.refresh() is False
        assert listings(emu) == 0
    finally:
        other.release()


def test_index_file_is_private(emu, make_sync, paths):
    emu.add_section("Stash")
    make_sync().store
    if os.name == "posix":
        assert os.stat(paths.match_index).st_mode & 0o077 == 0


# -- stale keys, confidence, not found -------------------------------------------


def test_stale_rating_key_is_dropped_and_looked_up_again(emu, make_sync):
    section = emu.add_section("Stash")
    old = emu.add_item(section, "One", ["/data/stash/one.mp4"])
    sync = make_sync()
    assert sync.matcher.match_file("/data/stash/one.mp4").rating_key == old
    emu.delete_item(old)
    new = emu.add_item(section, "One", ["/data/stash/one.mp4"])  # Plex re-added it
    result = sync.sync_batch([scene(1, "/data/stash/one.mp4", title="Fresh")], lambda s: None)
    assert isinstance(result[1], Outcome) and result[1].items == [new]
    assert emu.item(new)["title"] == "Fresh"
    assert sync.matcher.match_file("/data/stash/one.mp4").rating_key == new


def test_low_confidence_strict_raises_and_logs(emu, make_sync, matcher_log):
    section = emu.add_section("Stash", locations=["/plex"])
    emu.add_item(section, "A dup", ["/plex/one/dup.mp4"])
    emu.add_item(section, "B dup", ["/plex/two/dup.mp4"])
    sync = make_sync(strict_matching=True)
    with pytest.raises(AmbiguousMatch):
        sync.matcher.match_file("/stash/dup.mp4")
    assert "[PlexSync Matcher] LOW confidence match for '/stash/dup.mp4': 2 candidates found" in matcher_log.messages
    result = sync.sync_batch([scene(3, "/stash/dup.mp4", title="X")], lambda s: None)
    assert isinstance(result[3], AmbiguousMatch)


def test_low_confidence_non_strict_uses_the_first(emu, make_sync, matcher_log):
    section = emu.add_section("Stash", locations=["/plex"])
    first = emu.add_item(section, "A dup", ["/plex/one/dup.mp4"])
    emu.add_item(section, "B dup", ["/plex/two/dup.mp4"])
    sync = make_sync(strict_matching=False)
    assert sync.matcher.match_file("/stash/dup.mp4").rating_key == first
    assert any("LOW confidence match for '/stash/dup.mp4': 2 candidates found" in m for m in matcher_log.messages)


def test_not_found_then_scan_makes_the_file_matchable(emu, make_sync):
    section = emu.add_section("Stash", locations=["/plex/stash"])
    emu.add_item(section, "One", ["/plex/stash/one.mp4"])
    emu.stage_file(section, "/plex/stash/new folder/fresh.mp4")
    sync = make_sync(path_map="/data/stash=>/plex/stash")
    item = scene(9, "/data/stash/new folder/fresh.mp4", title="Fresh")
    result = sync.sync_batch([item], lambda s: None)
    assert isinstance(result[9], PlexNotFound) and "fresh.mp4" in str(result[9])

    emu.clear_requests()
    sync.request_scan(item)
    scans = [r for r in emu.requests if r.path == f"/library/sections/{section}/refresh"]
    assert [r.query["path"] for r in scans] == [["/plex/stash/new folder"]]

    result = sync.sync_batch([item], lambda s: None)
    assert isinstance(result[9], Outcome) and result[9].status == "synced"
    assert emu.item(result[9].items[0])["title"] == "Fresh"


def test_scan_request_outside_every_library_is_skipped(emu, make_sync):
    emu.add_section("Stash", locations=["/plex/stash"])
    sync = make_sync()
    assert sync.matcher.request_scan("/somewhere/else/a.mp4") is False
    assert not any(r.path.endswith("/refresh") for r in emu.requests)


# -- libraries ------------------------------------------------------------------


def test_empty_plex_library_searches_every_movie_library(emu, make_sync, matcher_log):
    one = emu.add_section("Movies A", locations=["/a"])
    two = emu.add_section("Movies B", locations=["/b"])
    emu.add_section("TV", type="show", locations=["/tv"])
    rk_a = emu.add_item(one, "A", ["/a/a.mp4"])
    rk_b = emu.add_item(two, "B", ["/b/b.mp4"])
    sync = make_sync(plex_library="")
    assert sync.matcher.match_file("/a/a.mp4").rating_key == rk_a
    assert sync.matcher.match_file("/b/b.mp4").rating_key == rk_b
    lines = [m for m in matcher_log.messages if "Searching all" in m]
    assert lines == ["[PlexSync Matcher] Searching all 2 libraries (set plex_library to speed up)"]
    assert emu.count("GET", "/library/sections/3/") == 0


def test_configured_libraries_limit_the_index(emu, make_sync):
    one = emu.add_section("Movies A", locations=["/a"])
    two = emu.add_section("Movies B", locations=["/b"])
    emu.add_item(one, "A", ["/a/a.mp4"])
    rk_b = emu.add_item(two, "B", ["/b/b.mp4"])
    sync = make_sync(plex_library=" movies b ")
    assert sync.matcher.match_file("/b/b.mp4").rating_key == rk_b
    assert emu.count("GET", f"/library/sections/{one}/") == 0
    with pytest.raises(NotInPlexLibrary):  # only the chosen libraries count
        sync.matcher.match_file("/a/a.mp4")


def test_changing_the_libraries_rebuilds_the_index(emu, make_sync):
    one = emu.add_section("Movies A", locations=["/a"])
    two = emu.add_section("Movies B", locations=["/b"])
    emu.add_item(one, "A", ["/a/a.mp4"])
    rk_b = emu.add_item(two, "B", ["/b/b.mp4"])
    make_sync(plex_library="Movies A").matcher.match_file("/a/a.mp4")
    assert make_sync(plex_library="Movies A,Movies B").matcher.match_file("/b/b.mp4").rating_key == rk_b


def test_unknown_library_is_a_config_error(emu, make_sync):
    emu.add_section("Stash")
    sync = make_sync(plex_library="Nope")
    with pytest.raises(ConfigError, match="Nope"):
        sync.sync_batch([scene(1, "/data/stash/a.mp4")], lambda s: None)


# -- scenes -----------------------------------------------------------------------


def test_multi_file_scene_returns_every_item(emu, make_sync):
    section = emu.add_section("Stash")
    first = emu.add_item(section, "One", ["/data/stash/one-a.mp4"])
    second = emu.add_item(section, "One B", ["/data/stash/one-b.mkv"])
    sync = make_sync()
    matches = sync.matcher.match(scene(1, "/data/stash/one-a.mp4", "/data/stash/one-b.mkv"))
    assert sorted(m.rating_key for m in matches) == sorted([first, second])
    result = sync.sync_batch([scene(1, "/data/stash/one-a.mp4", "/data/stash/one-b.mkv", title="T")], lambda s: None)
    assert sorted(result[1].items) == sorted([first, second])
    assert emu.item(first)["title"] == emu.item(second)["title"] == "T"


def test_two_versions_of_one_item_give_one_match(emu, make_sync):
    section = emu.add_section("Stash")
    rk = emu.add_item(section, "One", ["/data/stash/one.mp4", "/data/stash/one-4k.mp4"])
    matches = make_sync().matcher.match(scene(1, "/data/stash/one.mp4", "/data/stash/one-4k.mp4"))
    assert [m.rating_key for m in matches] == [rk]


def test_a_file_plex_lacks_does_not_block_the_others(emu, make_sync):
    section = emu.add_section("Stash")
    rk = emu.add_item(section, "One", ["/data/stash/one.mp4"])
    matches = make_sync().matcher.match(scene(1, "/data/stash/one.mp4", "/data/stash/gone.mp4"))
    assert [m.rating_key for m in matches] == [rk]


def test_scene_without_files(emu, make_sync):
    emu.add_section("Stash")
    sync = make_sync()
    with pytest.raises(SceneHasNoFile):
        sync.matcher.match(scene(5))
    result = sync.sync_batch([scene(5, title="x")], lambda s: None)
    assert isinstance(result[5], SceneHasNoFile)
    with pytest.raises(SceneHasNoFile):
        sync.request_scan(scene(5))


# -- stale candidates, partial libraries, library moves -------------------------------


def test_a_deleted_duplicate_no_longer_makes_the_match_ambiguous(emu, make_sync):
    section = emu.add_section("Stash", locations=["/plex"])
    keep = emu.add_item(section, "A dup", ["/plex/one/dup.mp4"])
    dup = emu.add_item(section, "B dup", ["/plex/two/dup.mp4"])
    with pytest.raises(AmbiguousMatch):
        make_sync(strict_matching=True).matcher.match_file("/stash/dup.mp4")
    emu.delete_item(dup)  # troubleshoot.md: "Remove duplicate items in Plex"
    emu.clear_requests()
    again = make_sync(strict_matching=True)
    assert again.matcher.match_file("/stash/dup.mp4").rating_key == keep
    assert emu.count("GET", "/library/metadata/") == 1 and listings(emu) == 0
    assert again.store.by_basename("dup.mp4") == [(keep, section)]


def test_a_duplicate_that_now_holds_another_file_is_dropped(emu, make_sync):
    section = emu.add_section("Stash", locations=["/plex"])
    keep = emu.add_item(section, "A dup", ["/plex/one/dup.mp4"])
    emu.add_item(section, "B dup", ["/plex/two/dup.mp4"])
    make_sync().matcher.match_file("/plex/one/dup.mp4")
    emu.move_file("/plex/two/dup.mp4", "/plex/two/other.mp4")
    assert make_sync(strict_matching=True).matcher.match_file("/stash/dup.mp4").rating_key == keep


def test_file_outside_every_library_is_not_in_plex_library(emu, make_sync):
    section = emu.add_section("Stash", locations=["/data/stash"])
    emu.add_item(section, "One", ["/data/stash/one.mp4"])
    sync = make_sync()
    with pytest.raises(NotInPlexLibrary, match="not in any Plex library"):
        sync.matcher.match_file("/data/other/two.mp4")
    emu.clear_requests()
    with pytest.raises(NotInPlexLibrary):
        sync.matcher.match_file("/data/other/three.mp4")
    assert emu.count() == 0  # folders already re-read in this batch
    result = sync.sync_batch([scene(2, "/data/other/two.mp4", title="T")], lambda s: None)
    assert isinstance(result[2], NotInPlexLibrary)


def test_a_folder_added_to_the_library_is_seen_in_the_next_batch(emu, make_sync):
    section = emu.add_section("Stash", locations=["/data/stash"])
    sync = make_sync()
    with pytest.raises(NotInPlexLibrary):
        sync.matcher.match_file("/data/other/two.mp4")
    emu.add_location(section, "/data/other")
    sync.matcher.begin_batch()
    with pytest.raises(PlexNotFound):  # covered now: wait for Plex to import it
        sync.matcher.match_file("/data/other/two.mp4")
    rk = emu.add_item(section, "Two", ["/data/other/two.mp4"])
    result = sync.sync_batch([scene(2, "/data/other/two.mp4", title="Now In Plex")], lambda s: None)
    assert isinstance(result[2], Outcome) and result[2].items == [rk]
    assert emu.item(rk)["title"] == "Now In Plex"


def test_a_path_map_covers_the_file(emu, make_sync):
    emu.add_section("Stash", locations=["/media/stash"])
    with pytest.raises(NotInPlexLibrary):
        make_sync().matcher.match_file("/data/stash/new.mp4")
    with pytest.raises(PlexNotFound):
        make_sync(path_map="/data/stash=>/media/stash").matcher.match_file("/data/stash/new.mp4")


def test_scene_waits_while_any_file_may_still_arrive(emu, make_sync):
    emu.add_section("Stash", locations=["/data/stash"])
    sync = make_sync()
    with pytest.raises(PlexNotFound):
        sync.matcher.match(scene(1, "/data/other/a.mp4", "/data/stash/not-yet.mp4"))
    with pytest.raises(NotInPlexLibrary):
        sync.matcher.match(scene(1, "/data/other/a.mp4", "/data/other/b.mp4"))


def test_an_item_moved_to_another_library_is_matched_again(emu, make_sync):
    one = emu.add_section("Movies A", locations=["/a"])
    two = emu.add_section("Movies B", locations=["/a"])
    old = emu.add_item(one, "A", ["/a/a.mp4"])
    sync = make_sync(plex_library="Movies A,Movies B")
    assert sync.matcher.match_file("/a/a.mp4").rating_key == old
    emu.delete_item(old)
    new = emu.add_item(two, "A", ["/a/a.mp4"])
    result = sync.sync_batch([scene(1, "/a/a.mp4", title="Moved")], lambda s: None)
    assert isinstance(result[1], Outcome) and result[1].items == [new]
    edits = [r for r in emu.requests if r.method == "PUT" and r.path.endswith("/all")]
    assert [r.path for r in edits] == [f"/library/sections/{two}/all"]


def test_a_scenes_items_outlive_the_run(emu, make_sync):
    section = emu.add_section("Stash")
    rk = emu.add_item(section, "One", ["/data/stash/one.mp4"])
    first = make_sync()
    first.matcher.match(scene(7, "/data/stash/one.mp4"))
    first.close()
    emu.move_file("/data/stash/one.mp4", "/data/stash/renamed.mp4")
    emu.clear_requests()
    again = make_sync()
    assert [m.rating_key for m in again.matcher.match(scene(7, "/data/stash/renamed.mp4"))] == [rk]
    assert listings(emu) == 0 and emu.count("GET", "/library/metadata/") == 1


def _plans(db, sql):
    return " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", (1,)))


def test_lookups_by_rating_key_use_an_index_also_in_an_index_built_before_it(tmp_path):
    """A vanished item's rows are replaced by rating key (the matcher's "what changed"
    listing, forget): without an index each one scans the whole table (drift repair
    at 100,000 items spent most of its CPU there)."""
    from plex.store import MatchStore

    path = tmp_path / "match_index.db"
    store = MatchStore(path)
    store.add([("/a/x.mp4", "x.mp4", 1, 1)])
    store.close()
    db = sqlite3.connect(path)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'items_rk_%'"):
        db.execute(f"DROP INDEX {name}")  # as a file built by an earlier release
    db.commit()
    assert "SCAN items" in _plans(db, "DELETE FROM items WHERE rating_key = ?")
    db.close()
    store = MatchStore(path)  # opening it adds the index
    try:
        for sql in ("DELETE FROM items WHERE rating_key = ?", "SELECT path FROM items WHERE rating_key = ?",
                    "DELETE FROM scene_items WHERE rating_key = ?"):
            assert "USING INDEX" in _plans(store._db, sql) or "USING COVERING INDEX" in _plans(store._db, sql), sql
        store.add([("/a/x.mp4", "x.mp4", 1, 1), ("/a/y.mp4", "y.mp4", 2, 1)])
        assert store.by_basename("x.mp4") == [(1, 1)] and store.parts(2) == [("/a/y.mp4", "y.mp4")]
    finally:
        store.close()
