"""Self-tests of the Plex emulator's watch history, driven by the real plexapi."""

import time
from datetime import datetime, timezone


from tests.e2e import plexapi_server as connect

ROOT = LIBRARY_ROOT = "/data/stash"  # conftest.emu adds the library
T0 = 1_700_000_000


def items(emu, n):
    return [emu.add_item(emu.section_key, f"Scene {i}", f"{ROOT}/scene_{i}.mp4") for i in range(n)]


def test_history_pages_with_one_request_per_100_entries(emu):
    rks = items(emu, 3)
    for i in range(250):
        emu.add_play(rks[i % 3], T0 + i)
    plex = connect(emu)
    emu.clear_requests()
    history = plex.history()
    assert len(history) == 250
    assert emu.count("GET", "/status/sessions/history/all") == 3
    assert [h.viewedAt for h in history[:2]] == sorted((h.viewedAt for h in history[:2]), reverse=True)
    entry = history[0]
    assert type(entry).__name__ == "MovieHistory"
    assert entry.ratingKey == rks[249 % 3]
    assert entry.accountID == 1 and entry.historyKey.startswith("/status/sessions/history/")
    assert entry.viewedAt == datetime.fromtimestamp(T0 + 249)


def test_mindate_filter_is_inclusive_and_account_filter(emu):
    rk = items(emu, 1)[0]
    emu.add_account(7, "guest")
    for i in range(5):
        emu.add_play(rk, T0 + 10 * i, account_id=1 if i % 2 == 0 else 7)
    plex = connect(emu)
    since = plex.history(mindate=datetime.fromtimestamp(T0 + 20))
    assert sorted(int(h.viewedAt.timestamp()) for h in since) == [T0 + 20, T0 + 30, T0 + 40]
    guest = plex.history(accountID=7)
    assert {h.accountID for h in guest} == {7} and len(guest) == 2
    assert {a.id: a.name for a in plex.systemAccounts()} == {1: "plexowner", 7: "guest"}


def test_container_start_and_size_give_one_page(emu):
    rk = items(emu, 1)[0]
    for i in range(7):
        emu.add_play(rk, T0 + i)
    plex = connect(emu)
    key = "/status/sessions/history/all?sort=viewedAt:asc"
    page = plex.fetchItems(key, container_start=3, container_size=3, maxresults=3)
    assert [int(h.viewedAt.timestamp()) for h in page] == [T0 + 3, T0 + 4, T0 + 5]


def test_mark_played_adds_no_history_entry(emu):
    rk = items(emu, 1)[0]
    plex = connect(emu)
    movie = plex.fetchItem(rk)
    movie.markPlayed()
    assert not len(movie.history())
    movie.reload()
    assert movie.viewCount == 1 and movie.lastViewedAt is not None
    movie.markUnplayed()
    movie.reload()
    assert movie.viewCount == 0


def test_progress_sets_view_offset_and_continue_watching(emu):
    a, b = items(emu, 2)
    plex = connect(emu)
    plex.fetchItem(a).updateProgress(65_000)
    emu.set_progress(b, 5_000)
    watching = {int(i.ratingKey): i.viewOffset for i in plex.continueWatching()}
    assert watching == {a: 65_000, b: 5_000}
    assert plex.fetchItem(a).viewOffset == 65_000
    emu.add_play(a, int(time.time()))  # a finished play clears the resume point
    assert {int(i.ratingKey) for i in plex.continueWatching()} == {b}


def test_deleted_item_keeps_its_entry_without_a_key(emu):
    rk = items(emu, 1)[0]
    emu.add_play(rk, T0)
    emu.delete_item(rk)
    (entry,) = connect(emu).history()
    assert not entry.key and entry.source() is None


def test_entry_without_time_and_item_watch_attributes(emu):
    rk = items(emu, 1)[0]
    emu.add_play(rk, None)
    (entry,) = connect(emu).history()
    assert entry.viewedAt is None
    assert emu.watch_state(rk)["viewCount"] == 1
    assert datetime.now(timezone.utc).timestamp() - emu.watch_state(rk)["lastViewedAt"] < 3600
