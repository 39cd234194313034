"""The Plex emulator's collections, driven through the real plexapi (see _CollectionsMixin)."""

import pytest
from plexapi.collection import Collection
from plexapi.exceptions import NotFound
from plexapi.server import PlexServer

from tests.emulators.plex import PlexEmulator


@pytest.fixture
def emu():
    with PlexEmulator() as e:
        e.section_key = e.add_section("Stash", locations=["/data/stash"])
        yield e


def connect(emu) -> PlexServer:
    return PlexServer(emu.url, emu.token, timeout=5)


def test_an_edit_naming_a_new_collection_creates_it(emu):
    rk = emu.add_item(emu.section_key, "a", ["/data/stash/a.mp4"])
    item = connect(emu).fetchItem(rk)
    item.addCollection(["Acme"])
    assert emu.item(rk)["collections"] == ["Acme"] and "collection" in emu.item(rk)["locked"]
    coll = connect(emu).library.sectionByID(emu.section_key).collection("Acme")
    assert isinstance(coll, Collection) and coll.childCount == 1
    assert coll.key == f"/library/collections/{coll.ratingKey}"
    assert [i.ratingKey for i in coll.items()] == [rk]


def test_an_emptied_collection_stays_until_deleted(emu):
    rk = emu.add_item(emu.section_key, "a", ["/data/stash/a.mp4"], collections=["Acme"])
    connect(emu).fetchItem(rk).removeCollection("Acme")
    section = connect(emu).library.sectionByID(emu.section_key)
    coll = section.collection("Acme")
    assert coll.childCount == 0
    coll.delete()
    with pytest.raises(NotFound):
        section.collection("Acme")
    assert emu.collections(emu.section_key) == []


def test_deleting_a_collection_untags_its_items(emu):
    rk = emu.add_item(emu.section_key, "a", ["/data/stash/a.mp4"], collections=["Acme", "Mine"])
    connect(emu).library.sectionByID(emu.section_key).collection("Acme").delete()
    assert emu.item(rk)["collections"] == ["Mine"]


def test_section_collections_listing_pages_and_carries_counts(emu):
    for n in range(5):
        emu.add_item(emu.section_key, f"i{n}", [f"/data/stash/{n}.mp4"], collections=[f"C{n}", "All"])
    plex = connect(emu)
    listed = plex.fetchItems(f"/library/sections/{emu.section_key}/collections", container_size=2)
    assert [(c.title, c.childCount) for c in listed] == [("All", 5)] + [(f"C{n}", 1) for n in range(5)]
    assert all(c.librarySectionID == emu.section_key for c in listed)
    assert [c.title for c in plex.library.sectionByID(emu.section_key).collections()] == [c.title for c in listed]


def test_collection_summary_and_poster(emu):
    emu.add_item(emu.section_key, "a", ["/data/stash/a.mp4"], collections=["Acme"])
    coll = connect(emu).library.sectionByID(emu.section_key).collection("Acme")
    coll.editSummary("About Acme")
    coll.uploadPoster(filepath=b"\xff\xd8poster")
    snap = emu.collection(emu.section_key, "Acme")
    assert snap["summary"] == "About Acme" and {"summary", "thumb"} <= snap["locked"]
    assert len(snap["posters"]) == 1 and snap["posters"][0].startswith("upload://posters/")
    coll.reload()
    assert coll.summary == "About Acme" and coll.thumb.startswith(f"/library/metadata/{coll.ratingKey}/thumb/")
    assert [p.selected for p in coll.posters()] == [True]


def test_the_users_collection_is_listed_even_empty(emu):
    emu.add_collection(emu.section_key, "Favourites", summary="mine")
    (coll,) = connect(emu).fetchItems(f"/library/sections/{emu.section_key}/collections")
    assert (coll.title, coll.childCount, coll.summary) == ("Favourites", 0, "mine")


def test_items_show_collection_tags_only_when_full(emu):
    rk = emu.add_item(emu.section_key, "a", ["/data/stash/a.mp4"], collections=["Acme"])
    plex = connect(emu)
    assert [c.tag for c in plex.fetchItem(rk).collections] == ["Acme"]
    listed = plex.library.sectionByID(emu.section_key).all()
    assert listed[0]._data.find("Collection") is None  # listings leave Collection tags out, like PMS


def test_a_cast_photo_is_a_url_plex_keeps_and_shows_every_client(emu):
    """Why PlexSync sends no performer photos (docs/architecture.md, "What is written"):
    ``actor[i].tag.thumb`` stores the URL itself, and every client reading the
    item gets it back verbatim, credentials and all."""
    rk = emu.add_item(emu.section_key, "a", ["/data/stash/a.mp4"])
    url = "http://stash:9999/performer/1/image?apikey=would-leak"
    connect(emu).fetchItem(rk).edit(**{"actor[0].tag.tag": "Jane", "actor[0].tag.thumb": url, "actor.locked": 1})
    (role,) = connect(emu).fetchItem(rk).roles
    assert (role.tag, role.thumb) == ("Jane", url)
