"""Self-tests for the Plex Media Server emulator, driven by the real, unmodified plexapi."""
from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plexapi.exceptions import BadRequest, NotFound, Unauthorized  # noqa: E402
from plexapi.server import PlexServer  # noqa: E402


ROOT = "/data/stash"


@pytest.fixture
def emu(emu):
    emu.section_key = emu.add_section("Stash", locations=[ROOT])
    return emu


def connect(emu, **kw) -> PlexServer:
    kw.setdefault("timeout", 5)
    return PlexServer(emu.url, emu.token, **kw)


def raw(emu, path, headers=None, params=None, method="get"):
    h = {"X-Plex-Token": emu.token}
    h.update(headers or {})
    return getattr(requests, method)(emu.url + path, headers=h, params=params, timeout=5)


def add_scenes(emu, n, **attrs):
    return [emu.add_item(emu.section_key, f"Scene {i}", f"{ROOT}/acme/scene_{i}.mp4", **attrs)
            for i in range(n)]


# --------------------------------------------------------------------------- connect / sections
def test_connect_sends_one_get_and_reads_root(emu):
    plex = connect(emu)
    assert plex.machineIdentifier == emu.machine_identifier
    assert plex.friendlyName == "plexsync-emulator"
    assert plex.version.startswith("1.41")
    assert plex.transcoderActiveVideoSessions == 0
    assert [(r.method, r.path) for r in emu.requests] == [("GET", "/")]
    hdrs = emu.requests[0].headers
    assert hdrs["X-Plex-Token"] == emu.token
    assert hdrs["X-Plex-Product"] == "PlexAPI"
    assert plex.identity().machineIdentifier == emu.machine_identifier


def test_sections_lookup(emu):
    second = emu.add_section("Other Videos", locations=["/data/other", "/data/more"])
    plex = connect(emu)
    sections = plex.library.sections()
    assert [s.title for s in sections] == ["Stash", "Other Videos"]
    sec = plex.library.section("  sTaSh ")
    assert sec.key == emu.section_key
    assert type(sec).__name__ == "MovieSection"
    assert sec.locations == [ROOT]
    assert sec.agent == "tv.plex.agents.none" and sec.scanner == "Plex Video Files Scanner"
    assert sec.refreshing is False and sec.uuid and sec.createdAt is not None
    other = plex.library.sectionByID(second)
    assert other.title == "Other Videos" and other.locations == ["/data/other", "/data/more"]
    with pytest.raises(NotFound):
        plex.library.section("nope")
    # sections are cached by plexapi: one GET /library/sections only
    assert emu.count("GET", "/library/sections") == 1


# --------------------------------------------------------------------------- paging
def test_paging_across_pages_with_container_size(emu):
    add_scenes(emu, 7)
    sec = connect(emu).library.section("Stash")
    emu.clear_requests()
    items = sec.all(container_size=3)
    assert [i.title for i in items] == [f"Scene {i}" for i in range(7)]
    pages = [r for r in emu.requests if r.path.endswith("/all")]
    assert [r.headers["X-Plex-Container-Start"] for r in pages] == ["0", "3", "6"]
    assert all(r.headers["X-Plex-Container-Size"] == "3" for r in pages)
    assert pages[0].query == {"includeGuids": ["1"], "type": ["1"]}


def test_raw_paging_attributes_headers_and_query_params(emu):
    add_scenes(emu, 7)
    path = f"/library/sections/{emu.section_key}/all"
    r = raw(emu, path, headers={"X-Plex-Container-Start": "3", "X-Plex-Container-Size": "3"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/xml;charset=utf-8"
    root = ET.fromstring(r.content)
    assert (root.get("size"), root.get("totalSize"), root.get("offset")) == ("3", "7", "3")
    assert root.get("librarySectionID") == str(emu.section_key)
    assert root.get("librarySectionTitle") == "Stash"
    assert [v.get("title") for v in root.iter("Video")] == ["Scene 3", "Scene 4", "Scene 5"]
    # the same paging as query parameters
    root = ET.fromstring(raw(emu, path, params={"X-Plex-Container-Start": 6,
                                                "X-Plex-Container-Size": 3}).content)
    assert (root.get("size"), root.get("totalSize"), root.get("offset")) == ("1", "7", "6")
    # size 0: counts only
    root = ET.fromstring(raw(emu, path, params={"X-Plex-Container-Size": 0}).content)
    assert root.get("totalSize") == "7" and root.get("size") == "0" and root.find("Video") is None
    # no paging at all: everything
    root = ET.fromstring(raw(emu, path).content)
    assert root.get("size") == "7" and len(root.findall("Video")) == 7


def test_total_view_size_uses_query_params(emu):
    add_scenes(emu, 5)
    sec = connect(emu).library.section("Stash")
    emu.clear_requests()
    assert sec.totalViewSize() == 5
    rec = emu.requests[-1]
    assert rec.query["X-Plex-Container-Size"] == ["0"]
    assert "X-Plex-Container-Size" not in rec.headers


class _StripTotalSize(requests.Session):
    def get(self, *a, **kw):
        resp = super().get(*a, **kw)
        resp._content = re.sub(rb' totalSize="\d+"', b"", resp.content)
        return resp


def test_plexapi_stops_after_one_page_without_total_size(emu):
    """The trap the emulator must avoid: without totalSize plexapi silently stops."""
    add_scenes(emu, 7)
    r = raw(emu, f"/library/sections/{emu.section_key}/all",
            headers={"X-Plex-Container-Start": "0", "X-Plex-Container-Size": "3"})
    assert b'totalSize="7"' in r.content
    good = connect(emu).library.section("Stash").all(container_size=3)
    assert len(good) == 7
    broken = PlexServer(emu.url, emu.token, session=_StripTotalSize(), timeout=5)
    assert len(broken.library.section("Stash").all(container_size=3)) == 3


# --------------------------------------------------------------------------- search / fetch
def test_title_search_is_case_insensitive_substring(emu):
    add_scenes(emu, 12)
    emu.add_item(emu.section_key, "Something else", f"{ROOT}/x/else.mp4")
    sec = connect(emu).library.section("Stash")
    emu.clear_requests()
    found = sec.search(title="scene 1")
    assert sorted(i.title for i in found) == ["Scene 1", "Scene 10", "Scene 11"]
    assert emu.requests[-1].query["title"] == ["scene 1"]
    one = sec.search(title="SCENE 1", libtype="movie", maxresults=1)
    assert len(one) == 1 and emu.requests[-1].headers["X-Plex-Container-Size"] == "1"
    assert sec.get("Something").title == "Something else"
    assert emu.requests[-1].query["limit"] == ["1"]
    assert sec.search(title="no such thing") == []


def test_fetch_item_and_items(emu):
    rks = add_scenes(emu, 3)
    plex = connect(emu)
    emu.clear_requests()
    item = plex.fetchItem(rks[1])
    assert item.title == "Scene 1" and item.ratingKey == rks[1]
    assert item.librarySectionID == emu.section_key
    assert item.locations == [f"{ROOT}/acme/scene_1.mp4"]
    assert emu.requests[-1].path == f"/library/metadata/{rks[1]}"
    both = plex.fetchItems([rks[0], rks[2]])
    assert [i.title for i in both] == ["Scene 0", "Scene 2"]
    assert emu.requests[-1].path == f"/library/metadata/{rks[0]},{rks[2]}"
    with pytest.raises(NotFound) as exc:
        plex.fetchItem(999999)
    assert not isinstance(exc.value, BadRequest)
    assert str(exc.value).startswith("(404) not_found")


def test_library_all_and_hub_search(emu):
    other = emu.add_section("Other", locations=["/data/other"])
    add_scenes(emu, 3)
    ork = emu.add_item(other, "Scene Other", "/data/other/o.mp4")
    plex = connect(emu)
    found = plex.library.search(title="scene")
    assert sorted(i.title for i in found) == ["Scene 0", "Scene 1", "Scene 2", "Scene Other"]
    assert {i.librarySectionID for i in found} == {emu.section_key, other}
    assert emu.requests[-1].path == "/library/all"
    hits = plex.search("scene oth")
    assert [h.ratingKey for h in hits] == [ork]
    rec = emu.requests[-1]
    assert rec.path == "/hubs/search" and rec.query["query"] == ["scene oth"]
    assert rec.query["includeCollections"] == ["1"]
    assert hits[0].librarySectionID == other
    limited = plex.library.section("Stash").hubSearch("scene", limit=2)
    assert len(limited) == 2 and all(h.librarySectionID == emu.section_key for h in limited)


# --------------------------------------------------------------------------- partial vs full
def test_listing_tags_are_truncated_full_item_has_everything(emu):
    rk = emu.add_item(emu.section_key, "Tagged", f"{ROOT}/t.mp4",
                      genres=["Drama", "Outdoor", "X", "Y"],
                      actors=["Jane Doe", "John Roe", "A", "B", "C"],
                      directors=["J. Smith", "K. Jones"], collections=["Acme Series"],
                      labels=["stash"], locked={"title"})
    r = raw(emu, f"/library/sections/{emu.section_key}/all")
    video = ET.fromstring(r.content).find("Video")
    assert [g.attrib for g in video.findall("Genre")] == [{"tag": "Drama"}, {"tag": "Outdoor"}]
    assert len(video.findall("Role")) == 3 and len(video.findall("Director")) == 1
    assert video.find("Collection") is None and video.find("Label") is None
    assert video.find("Field") is None
    assert video.find("Media/Part").get("file") == f"{ROOT}/t.mp4"

    full = ET.fromstring(raw(emu, f"/library/metadata/{rk}").content).find("Video")
    genres = full.findall("Genre")
    assert [g.get("tag") for g in genres] == ["Drama", "Outdoor", "X", "Y"]
    assert genres[0].get("filter") == f"genre={genres[0].get('id')}"
    roles = full.findall("Role")
    assert len(roles) == 5 and roles[0].get("filter").startswith("actor=")
    assert [c.get("tag") for c in full.findall("Collection")] == ["Acme Series"]
    assert [c.get("tag") for c in full.findall("Label")] == ["stash"]
    assert [(f.get("name"), f.get("locked")) for f in full.findall("Field")] == [("title", "1")]
    assert full.get("librarySectionID") == str(emu.section_key)

    plex = connect(emu)
    partial = plex.library.section("Stash").all()[0]
    assert [g.tag for g in partial.genres] == ["Drama", "Outdoor"]
    emu.clear_requests()
    assert [c.tag for c in partial.collections] == ["Acme Series"]  # empty -> auto reload
    assert emu.count("GET", f"/library/metadata/{rk}") == 1
    item = plex.fetchItem(rk)
    assert [r.tag for r in item.roles] == ["Jane Doe", "John Roe", "A", "B", "C"]


def test_add_genre_on_partial_item_drops_truncated_tags(emu):
    """Data-loss trap: plexapi resends the truncated listing tags, PMS replaces the set."""
    rk = emu.add_item(emu.section_key, "Tagged", f"{ROOT}/t.mp4",
                      genres=["Drama", "Outdoor", "X", "Y"])
    rk2 = emu.add_item(emu.section_key, "Tagged 2", f"{ROOT}/t2.mp4",
                       genres=["Drama", "Outdoor", "X", "Y"])
    plex = connect(emu)
    partial = next(i for i in plex.library.section("Stash").all() if i.ratingKey == rk)
    partial.addGenre("New")
    assert emu.item(rk)["genres"] == ["Drama", "Outdoor", "New"]  # X and Y lost
    full = plex.fetchItem(rk2)
    full.addGenre("New")
    assert emu.item(rk2)["genres"] == ["Drama", "Outdoor", "X", "Y", "New"]


# --------------------------------------------------------------------------- edits
def test_batch_edits_send_one_put(emu):
    rk = emu.add_item(emu.section_key, "Old", f"{ROOT}/o.mp4", genres=["Drama"],
                      actors=["Old Actor"], labels=["old"], updatedAt=1_700_000_000)
    item = connect(emu).fetchItem(rk)
    item.section()  # plexapi loads /library + /library/sections once to find the section
    emu.clear_requests()
    item.batchEdits()
    item.editTitle("New T").editSummary("S2").editStudio("Acme Studios")
    item.editOriginallyAvailable("2024-01-02").editUserRating(8)
    item.editTags("actor", ["Jane Doe", "B & C"]).addLabel("stash")
    item.saveEdits()
    assert emu.count() == 1 and emu.count("PUT", f"/library/sections/{emu.section_key}/all") == 1
    q = emu.requests[0].query
    assert q["id"] == [str(rk)] and q["type"] == ["1"]
    assert q["title.value"] == ["New T"] and q["title.locked"] == ["1"]
    assert q["actor[2].tag.tag"] == ["B & C"] and q["label[1].tag.tag"] == ["stash"]
    snap = emu.item(rk)
    assert (snap["title"], snap["summary"], snap["studio"]) == ("New T", "S2", "Acme Studios")
    assert snap["originallyAvailableAt"] == "2024-01-02" and snap["userRating"] == 8.0
    assert snap["actors"] == ["Old Actor", "Jane Doe", "B & C"]
    assert snap["labels"] == ["old", "stash"]
    assert snap["genres"] == ["Drama"]
    assert snap["locked"] >= {"title", "summary", "studio", "originallyAvailableAt",
                              "userRating", "actor", "label"}
    assert snap["updatedAt"] > 1_700_000_000
    before = snap["updatedAt"]
    item.editTagline("again")
    assert emu.item(rk)["updatedAt"] > before
    item.reload()
    assert item.title == "New T" and item.studio == "Acme Studios" and item.userRating == 8.0
    assert item.originallyAvailableAt == datetime(2024, 1, 2)


def test_indexed_tag_list_replaces_whole_set(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4", genres=["A", "B", "C"],
                      collections=["Old"])
    item = connect(emu).fetchItem(rk)
    item.edit(**{"genre[0].tag.tag": "Only", "genre.locked": 1,
                 "collection[0].tag.tag": "New1", "collection[1].tag.tag": "New2"})
    snap = emu.item(rk)
    assert snap["genres"] == ["Only"]
    assert snap["collections"] == ["New1", "New2"]
    assert "genre" in snap["locked"] and "collection" not in snap["locked"]


def test_tag_removal_with_double_encoded_names(emu):
    names = ["Jane Doe", "B & C", "x,y", "100%", "Keep"]
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4", genres=names, actors=names)
    item = connect(emu).fetchItem(rk)
    emu.clear_requests()
    item.removeGenre(["Jane Doe", "B & C", "x,y", "100%"])
    assert emu.item(rk)["genres"] == ["Keep"]
    assert emu.requests[-1].query["genre[].tag.tag-"] == ["Jane%20Doe,B%20%26%20C,x%2Cy,100%25"]
    item.editTags("actor", ["Jane Doe", "x,y"], remove=True)
    assert emu.item(rk)["actors"] == ["B & C", "100%", "Keep"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=10),
                min_size=1, max_size=5, unique_by=str.lower))
def test_tag_names_round_trip_through_plexapi(emu, names):
    rk = emu.add_item(emu.section_key, "H", [])
    item = connect(emu).fetchItem(rk)
    item.editTags("label", names)
    assert emu.item(rk)["labels"] == names
    item.reload()
    assert [t.tag for t in item.labels] == names
    item.removeLabel(names[:1])
    assert emu.item(rk)["labels"] == names[1:]
    emu.delete_item(rk)


def test_field_locks_present_and_absent(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4", summary="orig")
    item = connect(emu).fetchItem(rk)
    assert item.isLocked("summary") is False
    item.editSummary("mine")
    item.reload()
    assert item.isLocked("summary") is True and item.summary == "mine"
    fields = ET.fromstring(raw(emu, f"/library/metadata/{rk}").content).findall("Video/Field")
    assert ("summary", "1") in [(f.get("name"), f.get("locked")) for f in fields]
    item.editSummary("mine 2", locked=False)
    item.reload()
    assert item.isLocked("summary") is False and item.summary == "mine 2"
    fields = ET.fromstring(raw(emu, f"/library/metadata/{rk}").content).findall("Video/Field")
    assert "summary" not in [f.get("name") for f in fields]
    item.lockPoster()
    assert emu.item(rk)["locked"] == {"thumb"}
    item.editSummary(None)  # falsy value clears the field
    assert emu.item(rk)["summary"] is None


def test_edit_errors(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4")
    other = emu.add_section("Other", locations=["/data/other"])
    ork = emu.add_item(other, "O", "/data/other/o.mp4")
    plex = connect(emu)
    put = plex._session.put
    base = f"/library/sections/{emu.section_key}/all"
    with pytest.raises(BadRequest, match=r"^\(400\)"):
        plex.query(f"{base}?type=1&id={rk}&bogus.value=1", method=put)
    with pytest.raises(BadRequest, match=r"^\(400\)"):
        plex.query(f"{base}?type=1&id={ork}&title.value=x", method=put)
    with pytest.raises(BadRequest, match=r"^\(400\)"):
        plex.query(f"{base}?type=1&title.value=x", method=put)
    with pytest.raises(NotFound):
        plex.query(f"{base}?type=1&id=424242&title.value=x", method=put)
    with pytest.raises(BadRequest, match=r"^\(500\)"):
        plex.query(f"{base}?type=1&id={rk}&originallyAvailableAt.value=soon", method=put)
    # a rejected request changes nothing (validated before applying)
    with pytest.raises(BadRequest):
        plex.query(f"{base}?type=1&id={rk}&title.value=changed&nope.locked=1", method=put)
    assert emu.item(rk)["title"] == "T" and emu.item(rk)["locked"] == set()


def test_multi_edit_two_items_in_one_put(emu):
    rks = add_scenes(emu, 2)
    plex = connect(emu)
    sec = plex.library.section("Stash")
    items = plex.fetchItems(rks)
    emu.clear_requests()
    sec.multiEdit(items, **{"studio.value": "Both", "studio.locked": 1})
    assert emu.count("PUT") == 1 and emu.requests[-1].query["id"] == [f"{rks[0]},{rks[1]}"]
    assert [emu.item(r)["studio"] for r in rks] == ["Both", "Both"]


# --------------------------------------------------------------------------- images / rating
def test_upload_poster_and_art_from_bytes(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4")
    item = connect(emu).fetchItem(rk)
    assert [p.selected for p in item.posters()] == [True]
    img = b"\x89PNG\r\n\x1a\nfake image bytes"
    emu.clear_requests()
    item.uploadPoster(filepath=img)
    rec = emu.requests[-1]
    assert (rec.method, rec.path, rec.body_len) == ("POST", f"/library/metadata/{rk}/posters", len(img))
    assert "Content-Type" not in rec.headers
    sha = hashlib.sha1(img).hexdigest()
    posters = item.posters()
    selected = [p for p in posters if p.selected]
    assert len(posters) == 2 and [p.ratingKey for p in selected] == [f"upload://posters/{sha}"]
    item.reload()
    assert item.isLocked("thumb") is True and item.thumb.startswith(f"/library/metadata/{rk}/thumb/")
    # uploading the same bytes again does not add a duplicate
    item.uploadPoster(filepath=img)
    assert len(item.posters()) == 2
    # selecting the original again
    original = next(p for p in item.posters() if not p.selected)
    item.setPoster(original)
    assert [p.ratingKey for p in item.posters() if p.selected] == [original.ratingKey]
    item.uploadArt(filepath=b"art")
    arts = emu.item(rk)["arts"]
    assert [a["ratingKey"] for a in arts if a["selected"]] == [
        f"upload://arts/{hashlib.sha1(b'art').hexdigest()}"]
    assert "art" in emu.item(rk)["locked"]


def test_rate_sets_and_clears_user_rating(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4")
    item = connect(emu).fetchItem(rk)
    item.rate(7)
    rec = emu.requests[-1]
    assert (rec.method, rec.path) == ("PUT", "/:/rate")
    assert rec.query == {"key": [str(rk)], "identifier": ["com.plexapp.plugins.library"],
                         "rating": ["7"]}
    assert emu.item(rk)["userRating"] == 7.0
    item.reload()
    assert item.userRating == 7.0 and item.lastRatedAt is not None
    item.rate()
    assert emu.requests[-1].query["rating"] == ["-1"]
    assert emu.item(rk)["userRating"] is None


# --------------------------------------------------------------------------- scans / refresh
def test_partial_scan_makes_staged_file_appear(emu):
    new_file = f"{ROOT}/new folder/fresh_scene.mp4"
    emu.stage_file(emu.section_key, new_file)
    emu.stage_file(emu.section_key, f"{ROOT}/elsewhere/later.mp4", title="Later")
    sec = connect(emu).library.section("Stash")
    assert sec.search(title="fresh") == [] and emu.find_by_file(new_file) is None
    sec.update(path=f"{ROOT}/new folder/fresh_scene.mp4")  # a file path is not a folder
    assert emu.find_by_file(new_file) is None
    sec.update(path=f"{ROOT}/new folder")
    assert emu.requests[-1].path == f"/library/sections/{emu.section_key}/refresh"
    assert emu.scans[-1] == f"{ROOT}/new folder"  # '+' decoded to a space
    found = sec.search(title="fresh")
    assert [i.title for i in found] == ["fresh_scene"]  # filename stem, as the none agent does
    assert found[0].locations == [new_file] and emu.find_by_file(new_file) == found[0].ratingKey
    assert emu.find_by_file(f"{ROOT}/elsewhere/later.mp4") is None
    sec.update()  # full scan
    assert [i.title for i in sec.search(title="later")] == ["Later"]


def test_async_scan_reports_refreshing(emu):
    emu.scan_delay = 0.3
    f = f"{ROOT}/slow/s.mp4"
    emu.stage_file(emu.section_key, f)
    plex = connect(emu)
    plex.library.section("Stash").update(path=f"{ROOT}/slow")
    assert emu.find_by_file(f) is None
    d = ET.fromstring(raw(emu, "/library/sections").content).find("Directory")
    assert d.get("refreshing") == "1"
    deadline = time.time() + 3
    while emu.find_by_file(f) is None and time.time() < deadline:
        time.sleep(0.05)
    assert emu.find_by_file(f) is not None
    d = ET.fromstring(raw(emu, "/library/sections").content).find("Directory")
    assert d.get("refreshing") == "0"


def test_item_refresh_resets_only_unlocked_fields(emu):
    rk = emu.add_item(emu.section_key, "agent title", f"{ROOT}/t.mp4", summary="agent summary",
                      genres=["Agent"])
    item = connect(emu).fetchItem(rk)
    item.batchEdits()
    item.editTitle("my title", locked=False).editSummary("my summary").editTags("genre", ["Mine"])
    item.saveEdits()
    before = emu.item(rk)["updatedAt"]
    emu.clear_requests()
    item.refresh()
    assert [(r.method, r.path) for r in emu.requests] == [("PUT", f"/library/metadata/{rk}/refresh")]
    snap = emu.item(rk)
    assert snap["title"] == "agent title"          # unlocked -> reset
    assert snap["summary"] == "my summary"         # locked -> kept
    assert snap["genres"] == ["Agent", "Mine"]     # editTags resent existing + new, locked
    assert snap["updatedAt"] > before and emu.refreshes == [rk]


# --------------------------------------------------------------------------- Meta / filters
def test_include_meta_block(emu):
    add_scenes(emu, 2)
    base = f"/library/sections/{emu.section_key}"
    root = ET.fromstring(raw(emu, f"{base}/all", params={
        "includeMeta": 1, "includeAdvanced": 1, "X-Plex-Container-Start": 0,
        "X-Plex-Container-Size": 0}).content)
    meta = root.find("Meta")
    assert meta is not None and root.find("Video") is None and root.get("totalSize") == "2"
    t = meta.find("Type")
    assert t.get("type") == "movie"
    assert {f.get("key") for f in t.findall("Field")} >= {"title", "studio", "addedAt", "genre"}
    assert {s.get("key") for s in t.findall("Sort")} >= {"titleSort", "addedAt"}
    assert {ft.get("type") for ft in meta.findall("FieldType")} >= {"string", "tag", "date", "integer"}
    assert ET.fromstring(raw(emu, f"{base}/all").content).find("Meta") is None
    coll = ET.fromstring(raw(emu, f"{base}/collections", params={"includeMeta": 1}).content)
    assert coll.find("Meta/Type").get("type") == "collection" and coll.get("size") == "0"


def test_validated_search_sort_filters_and_recently_added(emu):
    k = emu.section_key
    a = emu.add_item(k, "Alpha", f"{ROOT}/a.mp4", studio="Acme Studios", genres=["Drama"],
                     addedAt=1_704_000_000, updatedAt=1_704_000_000, year=2020)
    b = emu.add_item(k, "Beta", f"{ROOT}/b.mp4", studio="Other", genres=["Comedy"],
                     addedAt=1_706_000_000, updatedAt=1_706_000_000, year=2022)
    c = emu.add_item(k, "Gamma", f"{ROOT}/c.mp4", studio="Acme", genres=["Drama", "Comedy"],
                     addedAt=1_705_000_000, updatedAt=1_705_000_000, year=2021)
    plex = connect(emu)
    sec = plex.library.section("Stash")
    rk = lambda items: [i.ratingKey for i in items]  # noqa: E731
    assert rk(sec.search(sort="addedAt:desc")) == [b, c, a]
    assert emu.requests[-1].query["sort"] == ["movie.addedAt:desc"]
    assert rk(sec.recentlyAdded(maxresults=2)) == [b, c]
    assert rk(sec.search(studio="acme")) == [a, c]                      # contains
    assert rk(sec.search(**{"studio==": "Acme"})) == [c]                 # exact
    assert rk(sec.search(**{"studio!": "acme"})) == [b]                  # does not contain
    assert rk(sec.search(genre="Drama")) == [a, c]
    assert rk(sec.search(genre=["Drama", "Comedy"], sort="titleSort:desc")) == [c, b, a]
    assert rk(sec.search(filters={"addedAt>>": datetime.fromtimestamp(1_704_500_000)})) == [b, c]
    assert rk(sec.search(filters={"or": [{"year": 2020}, {"year": 2022}]})) == [a, b]
    assert rk(sec.search(title=["alp", "gam"])) == [a, c]
    # server-side incremental query on updatedAt
    since = datetime.now() - timedelta(seconds=5)
    plex.fetchItem(a).editTagline("changed")
    assert rk(sec.search(filters={"updatedAt>>": since})) == [a]
    with pytest.raises(NotFound):
        sec.search(sort="nonsense:desc")


def test_media_part_file_lookups(emu):
    rks = add_scenes(emu, 4)
    target = f"{ROOT}/acme/scene_2.mp4"
    sec = connect(emu).library.section("Stash")
    emu.clear_requests()
    hits = sec.search(Media__Part__file__exact=target)
    assert [i.ratingKey for i in hits] == [rks[2]]
    assert "file" not in emu.requests[-1].query  # client-side: the whole section was downloaded
    key = f"/library/sections/{sec.key}/all?type=1&file={quote(target)}"
    hits = sec.fetchItems(key, Media__Part__file=target)
    assert [i.ratingKey for i in hits] == [rks[2]]
    assert emu.requests[-1].query["file"] == [target]
    # the undocumented file= filter is a folder match, not an exact one
    root = ET.fromstring(raw(emu, f"/library/sections/{sec.key}/all",
                             params={"type": 1, "file": target}).content)
    assert root.get("totalSize") == "4"
    with pytest.raises(BadRequest, match="Invalid filter field"):
        sec.search(Media__Part__file=target)


# --------------------------------------------------------------------------- auth / errors
def test_unauthorized_wrong_and_missing_token(emu):
    assert issubclass(Unauthorized, BadRequest)
    with pytest.raises(Unauthorized) as exc:
        PlexServer(emu.url, "wrong-token", timeout=5)
    assert str(exc.value).startswith("(401) unauthorized")
    with pytest.raises(Unauthorized):
        PlexServer(emu.url, None, timeout=5)
    assert "X-Plex-Token" not in emu.requests[-1].headers
    r = requests.get(emu.url + "/library/sections", timeout=5)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "text/html"
    assert r.headers["X-Plex-Protocol"] == "1.0"
    assert r.text == ("<html><head><title>Unauthorized</title></head>"
                      "<body><h1>401 Unauthorized</h1></body></html>")
    r = requests.get(emu.url + "/library/sections", params={"X-Plex-Token": emu.token}, timeout=5)
    assert r.status_code == 200 and ET.fromstring(r.content).find("Directory").get("title") == "Stash"
    # every recorded request, even rejected ones, is in the log
    assert emu.count("GET", "/library/sections") == 2


def test_unknown_path_is_not_found(emu):
    plex = connect(emu)
    with pytest.raises(NotFound):
        plex.query("/no/such/endpoint")


def test_handler_exception_answers_500_and_server_survives(emu, monkeypatch):
    plex = connect(emu)

    def boom(**kw):
        raise RuntimeError("boom")
    monkeypatch.setattr(emu, "_get_identity", boom)
    with pytest.raises(BadRequest, match=r"^\(500\)"):
        plex.identity()
    monkeypatch.undo()
    assert plex.identity().machineIdentifier == emu.machine_identifier


# --------------------------------------------------------------------------- faults
def test_fault_503_maintenance(emu):
    plex = connect(emu)
    emu.fault(status=503, times=1)
    with pytest.raises(BadRequest) as exc:
        plex.identity()
    assert str(exc.value).startswith("(503) service_unavailable")
    assert "maintenance" in str(exc.value).lower()
    # plexapi quirk: a failing GET /library is swallowed, it falls back to /library/sections/
    emu.fault(status=503, times=1, path_prefix="/library")
    assert [s.title for s in plex.library.sections()] == ["Stash"]
    assert [r.path for r in emu.requests[-3:]] == ["/library", "/library/sections",
                                                   "/library/sections"]


def test_fault_reset_gives_connection_error(emu):
    plex = connect(emu)
    emu.fault(reset=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        plex.library.sections()
    assert plex.library.section("Stash").key == emu.section_key


def test_fault_hang_gives_read_timeout_but_edit_still_applies(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4")
    plex = PlexServer(emu.url, emu.token, timeout=(1, 0.3))
    item = plex.fetchItem(rk)
    emu.fault(hang=0.8, times=1, method="PUT")
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        item.editTitle("late")
    assert time.monotonic() - t0 < 0.75
    deadline = time.time() + 3
    while emu.item(rk)["title"] != "late" and time.time() < deadline:
        time.sleep(0.05)
    assert emu.item(rk)["title"] == "late"


def test_latency_attribute_and_latency_fault(emu):
    plex = connect(emu)
    emu.latency = 0.2
    t0 = time.monotonic()
    plex.identity()
    assert time.monotonic() - t0 >= 0.2
    emu.latency = 0.0
    emu.fault(latency=0.25, times=1, path_prefix="/identity")
    t0 = time.monotonic()
    plex.identity()
    assert time.monotonic() - t0 >= 0.25
    t0 = time.monotonic()
    plex.identity()
    assert time.monotonic() - t0 < 0.2


def test_fault_times_path_and_method_matching(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4")
    plex = connect(emu)
    emu.fault(status=500, times=2, path_prefix="/library/metadata")
    assert plex.identity()  # not matched, not consumed
    for _ in range(2):
        with pytest.raises(BadRequest, match=r"^\(500\)"):
            plex.fetchItem(rk)
    assert plex.fetchItem(rk).title == "T"
    emu.fault(status=429, method="PUT")  # until cleared
    item = plex.fetchItem(rk)
    for _ in range(3):
        with pytest.raises(BadRequest, match=r"^\(429\)"):
            item.editTitle("x")
    emu.clear_faults()
    item.editTitle("x")
    assert emu.item(rk)["title"] == "x"


# --------------------------------------------------------------------------- log / concurrency / scale
def test_request_log_and_counting(emu):
    rk = emu.add_item(emu.section_key, "T", f"{ROOT}/t.mp4")
    plex = connect(emu)
    plex.fetchItem(rk).editSummary("a b")
    # editing needs item.section(): plexapi loads /library and /library/sections first
    assert [(r.method, r.path) for r in emu.requests] == [
        ("GET", "/"), ("GET", f"/library/metadata/{rk}"), ("GET", "/library"),
        ("GET", "/library/sections"), ("PUT", f"/library/sections/{emu.section_key}/all")]
    assert emu.count() == 5
    assert emu.count("PUT") == 1 and emu.count(path_prefix="/library/metadata/") == 1
    put = [r for r in emu.requests if r.method == "PUT"][0]
    assert put.query["summary.value"] == ["a b"] and put.body_len == 0
    emu.clear_requests()
    assert emu.count() == 0


def test_keep_alive_reuses_one_connection(emu):
    add_scenes(emu, 3)
    plex = connect(emu)
    for _ in range(5):
        plex.library.section("Stash").all()
    assert emu.count() >= 7
    assert len({r.client_port for r in emu.requests}) == 1
    assert emu.connections == 1


def test_concurrent_clients(emu):
    rks = add_scenes(emu, 40)
    errors = []

    def worker(n):
        try:
            plex = connect(emu)
            sec = plex.library.section("Stash")
            assert len(sec.all(container_size=7)) == 40
            for r in rks[n::8]:
                plex.fetchItem(r).editSummary(f"w{n}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert [emu.item(r)["summary"] for r in rks] == [f"w{i % 8}" for i in range(40)]


def test_large_library_is_pageable(emu):
    k = emu.section_key
    for i in range(100_000):
        emu.add_item(k, f"Scene {i:06d}", f"{ROOT}/d{i % 100}/s{i}.mp4")
    sec = connect(emu).library.section("Stash")
    assert sec.totalViewSize() == 100_000
    last = sec.search(container_start=99_950, container_size=50, maxresults=50)
    assert [i.title for i in last][-1] == "Scene 099999" and len(last) == 50
    hit = sec.search(title="scene 054321")
    assert [i.title for i in hit] == ["Scene 054321"]
    assert emu.find_by_file(f"{ROOT}/d21/s54321.mp4") == hit[0].ratingKey
    # Its speed at this size is a benchmark figure (bench/matching.py), not asserted here.
