"""Emulator self-tests for what the matcher relies on, through the real plexapi:
the ``updatedAt>>=`` filter, a renamed file whose item Plex kept, and a folder
added to a library."""

from datetime import datetime


from tests.e2e import plexapi_server as connect

ROOT = LIBRARY_ROOT = "/data/stash"  # conftest.emu adds the library


def keys(items):
    return sorted(int(i.ratingKey) for i in items)


def test_updated_at_filter_is_strictly_after_through_plexapi(emu):
    old = emu.add_item(emu.section_key, "Old", [f"{ROOT}/old.mp4"], updatedAt=1_700_000_000)
    edge = emu.add_item(emu.section_key, "Edge", [f"{ROOT}/edge.mp4"], updatedAt=1_700_000_100)
    new = emu.add_item(emu.section_key, "New", [f"{ROOT}/new.mp4"], updatedAt=1_700_000_200)
    section = connect(emu).library.section("Stash")
    after = section.search(filters={"updatedAt>>": datetime.fromtimestamp(1_700_000_100)})
    assert keys(after) == [new]  # "is after": the item of that very second is not included
    request = [r for r in emu.requests if r.path.endswith("/all") and "updatedAt>>" in r.query][-1]
    assert request.query["updatedAt>>"] == ["1700000100"]  # plexapi sends int(timestamp)
    assert keys(section.search(filters={"updatedAt>>": datetime.fromtimestamp(1_700_000_099)})) == [edge, new]
    assert old not in keys(section.search(filters={"updatedAt>>": "1s"}))  # changed more than 1 s ago


def test_updated_at_filter_as_the_matcher_sends_it(emu):
    emu.add_item(emu.section_key, "Old", [f"{ROOT}/old.mp4"], updatedAt=1_700_000_000)
    new = emu.add_item(emu.section_key, "New", [f"{ROOT}/new.mp4"])  # updatedAt: now
    server = connect(emu)
    data = server.query(f"/library/sections/{emu.section_key}/all?includeGuids=0&type=1&updatedAt%3E%3E=1699999999",
                        headers={"X-Plex-Container-Start": "0", "X-Plex-Container-Size": "500"})
    assert data.get("totalSize") == "2"
    data = server.query(f"/library/sections/{emu.section_key}/all?includeGuids=0&type=1&updatedAt%3E%3E=1700000000")
    assert [int(v.get("ratingKey")) for v in data] == [new]


def test_an_edit_moves_updated_at_past_the_filter(emu):
    rk = emu.add_item(emu.section_key, "Old", [f"{ROOT}/old.mp4"], updatedAt=1_700_000_000)
    server = connect(emu)
    server.fetchItem(rk).editTitle("Edited")
    section = server.library.section("Stash")
    assert keys(section.search(filters={"updatedAt>>": datetime.fromtimestamp(1_700_000_000)})) == [rk]


def test_a_renamed_file_keeps_its_item(emu):
    rk = emu.add_item(emu.section_key, "One", [f"{ROOT}/one.mp4"], updatedAt=1_700_000_000)
    emu.move_file(f"{ROOT}/one.mp4", f"{ROOT}/moved/one-renamed.mp4")
    item = connect(emu).fetchItem(rk)
    assert item.locations == [f"{ROOT}/moved/one-renamed.mp4"]
    assert item.title == "One"
    assert emu.find_by_file(f"{ROOT}/one.mp4") is None
    assert emu.find_by_file(f"{ROOT}/moved/one-renamed.mp4") == rk
    assert int(item.updatedAt.timestamp()) == 1_700_000_000  # not documented for PMS: left alone


def test_a_folder_added_to_a_library_is_listed(emu):
    emu.add_location(emu.section_key, "/data/other")
    section = connect(emu).library.section("Stash")
    assert section.locations == [ROOT, "/data/other"]
