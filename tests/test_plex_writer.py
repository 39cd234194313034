"""Writing scene metadata into Plex: real plexapi against the Plex emulator."""

import json
import os

import plexapi
import pytest

from common.errors import PlexAuthError, PlexBadRequest, PlexUnavailable
from plex.client import connect, load_device_id, plex_errors
from plex.sync import Outcome, PlexSync
from validation.config import PlexSyncConfig
from validation.scene import SceneData

FILE = "/data/stash/studio/scene one.mp4"


@pytest.fixture
def section(emu):
    return emu.add_section("Stash", locations=["/data/stash"])


def config(emu, **settings):
    settings.setdefault("plex_token", emu.token)
    return PlexSyncConfig(plex_url=emu.url, **settings)


def scene(scene_id=1, files=(FILE,), **fields):
    return SceneData(id=scene_id, files=list(files), **fields)


def no_image(_scene):
    raise AssertionError("fetch_image must not be called for a scene without screenshot_url")


def puts(emu):
    return [r for r in emu.requests if r.method == "PUT"]


FULL = dict(
    title="Scene One",
    details="What happens.\nSecond line.",
    date="2024-03-05",
    studio="Acme",
    performers=["Jane Doe", "John Roe"],
    tags=["Outdoor", "B & C"],
    rating=8.0,
)


# -- one edit per item ------------------------------------------------------------


def test_all_fields_and_tags_go_in_one_put(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE])
    result = make_sync().sync_batch([scene(**FULL)], no_image)
    assert result[1] == Outcome(status="synced", items=[rk], edited=True, poster_uploaded=False)
    (put,) = puts(emu)
    assert put.path == f"/library/sections/{section}/all"
    assert put.query["title.value"] == ["Scene One"] and put.query["id"] == [str(rk)]
    item = emu.item(rk)
    assert item["title"] == "Scene One"
    assert item["summary"] == "What happens.\nSecond line."
    assert item["originallyAvailableAt"] == "2024-03-05"
    assert item["studio"] == "Acme"
    assert item["actors"] == ["Jane Doe", "John Roe"]
    assert item["genres"] == ["Outdoor", "B & C"]
    assert item["userRating"] == 8.0


def test_fields_are_locked_and_survive_a_plex_refresh(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE], summary="agent text", genres=["Agent"])
    sync = make_sync()
    sync.sync_batch([scene(**FULL)], no_image)
    assert {"title", "summary", "originallyAvailableAt", "studio", "actor", "genre", "userRating"} <= emu.item(rk)["locked"]
    sync.server.fetchItem(rk).refresh()  # the agent resets every unlocked value
    item = emu.item(rk)
    assert (item["title"], item["summary"], item["genres"]) == ("Scene One", FULL["details"], ["Outdoor", "B & C"])


def test_one_fetch_and_one_put_per_item_for_a_batch(emu, section, make_sync):
    files = [f"/data/stash/many/s{i:02d}.mp4" for i in range(60)]
    keys = [emu.add_item(section, f"s{i:02d}", [f]) for i, f in enumerate(files)]
    sync = make_sync()
    sync.matcher.refresh()
    emu.clear_requests()
    result = sync.sync_batch([scene(i, [f], title=f"T{i}") for i, f in enumerate(files)], no_image)
    assert all(isinstance(r, Outcome) and r.edited for r in result.values())
    fetches = [r for r in emu.requests if r.path.startswith("/library/metadata/")]
    assert [len(r.path.rsplit("/", 1)[1].split(",")) for r in fetches] == [50, 10]
    assert len(puts(emu)) == 60
    assert emu.count("GET", "/library/sections/1/all") == 0
    # nothing was reloaded item by item (plexapi's auto-reload sends include* params)
    assert not any("includeMarkers" in r.query for r in emu.requests)
    assert emu.item(keys[59])["title"] == "T59"


def test_equal_values_send_no_put(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE])
    sync = make_sync()
    sync.sync_batch([scene(**FULL)], no_image)
    emu.clear_requests()
    result = make_sync().sync_batch([scene(**FULL)], no_image)
    assert result[1] == Outcome(status="unchanged", items=[rk], edited=False, poster_uploaded=False)
    assert puts(emu) == []
    assert [r.path for r in emu.requests if r.path.startswith("/library/")] == [f"/library/metadata/{rk}"]


def test_empty_stash_values_keep_plex_values(emu, section, make_sync):
    rk = emu.add_item(section, "Plex Title", [FILE], summary="Plex summary", studio="Plex Studio",
                      originallyAvailableAt="2020-01-01", userRating=6.0, genres=["Keep"], actors=["Kept Actor"])
    result = make_sync().sync_batch([scene(title=None, details="", studio=None, tags=[], performers=[], rating=None)], no_image)
    assert result[1].status == "unchanged" and puts(emu) == []
    item = emu.item(rk)
    assert (item["title"], item["summary"], item["studio"], item["originallyAvailableAt"]) == (
        "Plex Title", "Plex summary", "Plex Studio", "2020-01-01")
    assert (item["userRating"], item["genres"], item["actors"]) == (6.0, ["Keep"], ["Kept Actor"])


def test_preserve_plex_edits_fills_only_empty_fields(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE], summary="Edited in Plex", genres=["Mine"])
    make_sync(preserve_plex_edits=True).sync_batch([scene(**FULL)], no_image)
    item = emu.item(rk)
    assert item["summary"] == "Edited in Plex" and item["genres"] == ["Mine"]
    assert item["title"] == "Scene One"  # still the file-name title: not a user's edit
    assert (item["studio"], item["originallyAvailableAt"], item["userRating"]) == ("Acme", "2024-03-05", 8.0)
    assert item["actors"] == ["Jane Doe", "John Roe"]
    (put,) = puts(emu)
    assert "summary.value" not in put.query and "genre.locked" not in put.query


# -- tags -----------------------------------------------------------------------


def test_tags_are_replaced_exactly(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE], genres=["Keep", "Drop Me", "Also Drop"], actors=["Old Actor"])
    make_sync().sync_batch([scene(tags=["Keep", "New"], performers=["New Actor"])], no_image)
    item = emu.item(rk)
    assert item["genres"] == ["Keep", "New"]
    assert item["actors"] == ["New Actor"]


def test_truncated_listing_tags_do_not_lose_tags(emu, section, make_sync):
    many = [f"Genre {i}" for i in range(6)]  # a listing shows only two of them
    actors = [f"Actor {i}" for i in range(5)]  # and three of these
    rk = emu.add_item(section, "scene one", [FILE], genres=many, actors=actors)
    make_sync().sync_batch([scene(tags=many + ["Extra"], performers=actors + ["Extra Actor"])], no_image)
    item = emu.item(rk)
    assert item["genres"] == many + ["Extra"]
    assert item["actors"] == actors + ["Extra Actor"]


def test_same_tags_in_another_order_or_case_send_nothing(emu, section, make_sync):
    emu.add_item(section, "scene one", [FILE], genres=["Alpha", "Beta"])
    result = make_sync().sync_batch([scene(tags=["beta", "ALPHA"])], no_image)
    assert result[1].status == "unchanged" and puts(emu) == []


# -- dates and ratings ----------------------------------------------------------


@pytest.mark.parametrize("stash_date, plex_date", [("2024-03-05", "2024-03-05"), ("2023", "2023-01-01"), ("2023-07", "2023-07-01")])
def test_dates(emu, section, make_sync, stash_date, plex_date):
    rk = emu.add_item(section, "scene one", [FILE])
    make_sync().sync_batch([scene(date=stash_date)], no_image)
    assert emu.item(rk)["originallyAvailableAt"] == plex_date
    emu.clear_requests()
    assert make_sync().sync_batch([scene(date=stash_date)], no_image)[1].status == "unchanged"


def test_rating_goes_into_the_same_put_as_user_rating(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE], userRating=4.0)
    make_sync().sync_batch([scene(title="T", rating=7.5)], no_image)
    assert emu.item(rk)["userRating"] == 7.5
    (put,) = puts(emu)
    assert put.query["userRating.value"] == ["7.5"] and put.query["userRating.locked"] == ["1"]
    assert emu.count("PUT", "/:/rate") == 0


# -- posters --------------------------------------------------------------------


def test_poster_uploaded_once_then_skipped_then_replaced(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE])
    shot = dict(FULL, screenshot_url="http://stash/scene/1/screenshot")
    calls = []

    def fetch(item):
        calls.append(item.id)
        return images[0]

    images = [b"\x89PNG first image"]
    result = make_sync().sync_batch([scene(**shot)], fetch)
    assert result[1].poster_uploaded and emu.count("POST", f"/library/metadata/{rk}/posters") == 1
    assert emu.item(rk)["posters"][-1]["selected"]

    emu.clear_requests()
    result = make_sync().sync_batch([scene(**shot)], fetch)
    assert result[1] == Outcome(status="unchanged", items=[rk], edited=False, poster_uploaded=False)
    assert emu.count("POST") == 0 and emu.count(path_prefix=f"/library/metadata/{rk}/") == 0

    images[0] = b"\x89PNG second image"
    result = make_sync().sync_batch([scene(**shot)], fetch)
    assert result[1].status == "synced" and result[1].poster_uploaded
    assert emu.count("POST", f"/library/metadata/{rk}/posters") == 1
    assert calls == [1, 1, 1]


def _user_uploads_poster(emu, rk, image: bytes) -> None:
    """What Plex Web does when someone picks a poster: the same upload, by another client."""
    from plexapi.server import PlexServer

    PlexServer(emu.url, emu.token).fetchItem(rk).uploadPoster(filepath=image)


def _selected_poster(emu, rk) -> str:
    return next(p["ratingKey"] for p in emu.item(rk)["posters"] if p["selected"])


def test_preserve_plex_edits_keeps_a_poster_chosen_in_plex(emu, section, make_sync):
    import hashlib

    shot = dict(FULL, screenshot_url="http://stash/scene/1/screenshot")
    images = [b"\x89PNG stash cover one"]
    sha = lambda data: hashlib.sha1(data).hexdigest()  # noqa: E731

    # Plex's own poster (thumb unlocked): the first sync replaces it.
    rk = emu.add_item(section, "scene one", [FILE])
    result = make_sync(preserve_plex_edits=True).sync_batch([scene(**shot)], lambda s: images[0])
    assert result[1].poster_uploaded and _selected_poster(emu, rk).endswith(sha(images[0]))

    # The Stash cover changes while our upload is still selected: replaced again.
    images[0] = b"\x89PNG stash cover two"
    result = make_sync(preserve_plex_edits=True).sync_batch([scene(**shot)], lambda s: images[0])
    assert result[1].poster_uploaded and _selected_poster(emu, rk).endswith(sha(images[0]))

    # Someone picks another poster in Plex, then the Stash cover changes: theirs stays.
    _user_uploads_poster(emu, rk, b"\x89PNG chosen in plex")
    images[0] = b"\x89PNG stash cover three"
    emu.clear_requests()
    result = make_sync(preserve_plex_edits=True).sync_batch([scene(**shot)], lambda s: images[0])
    assert not result[1].poster_uploaded and emu.count("POST") == 0
    assert _selected_poster(emu, rk).endswith(sha(b"\x89PNG chosen in plex"))

    # Without the setting Stash wins.
    result = make_sync().sync_batch([scene(**shot)], lambda s: images[0])
    assert result[1].poster_uploaded and _selected_poster(emu, rk).endswith(sha(images[0]))


def test_preserve_plex_edits_keeps_a_poster_set_in_plex_before_the_first_sync(emu, section, make_sync):
    rk = emu.add_item(section, "scene one", [FILE])
    _user_uploads_poster(emu, rk, b"\x89PNG chosen in plex")
    emu.clear_requests()
    shot = dict(FULL, screenshot_url="http://stash/scene/1/screenshot")
    result = make_sync(preserve_plex_edits=True).sync_batch([scene(**shot)], lambda s: b"\x89PNG stash cover")
    assert not result[1].poster_uploaded and emu.count("POST") == 0
    # Known to be someone else's without asking Plex for its posters.
    assert emu.count("GET", f"/library/metadata/{rk}/posters") == 0


def test_no_image_means_no_upload(emu, section, make_sync):
    emu.add_item(section, "scene one", [FILE])
    result = make_sync().sync_batch([scene(title="T", screenshot_url="http://x")], lambda s: None)
    assert not result[1].poster_uploaded and emu.count("POST") == 0


# -- errors ---------------------------------------------------------------------


def assert_clean(exc, emu):
    assert emu.token not in str(exc) and exc.__cause__ is None


def test_bad_token_is_an_auth_error(emu, section, paths):
    emu.add_item(section, "scene one", [FILE])
    sync = PlexSync(config(emu, plex_token="wrong-token-123456"), paths)
    with pytest.raises(PlexAuthError, match="plex_token") as info:
        sync.sync_batch([scene(title="T")], no_image)
    assert "wrong-token-123456" not in str(info.value)
    sync.close()


@pytest.mark.parametrize("fault, error", [
    (dict(status=401), PlexAuthError),
    (dict(status=403), PlexAuthError),
    (dict(status=400), PlexBadRequest),
    (dict(status=429), PlexUnavailable),
    (dict(status=500), PlexUnavailable),
    (dict(status=503), PlexUnavailable),
    (dict(status=520), PlexUnavailable),  # plexapi itself crashes with TypeError here
    (dict(reset=True), PlexUnavailable),
])
def test_errors_are_translated_by_type(emu, fault, error):
    emu.fault(times=1, **fault)
    with pytest.raises(error) as info:
        connect(config(emu), "device")
    assert_clean(info.value, emu)


def test_hang_past_read_timeout_is_unavailable(emu):
    slow = config(emu).model_copy(update={"read_timeout": 0.3})
    emu.fault(hang=1.0, times=1)
    with pytest.raises(PlexUnavailable, match="timed out") as info:
        connect(slow, "device")
    assert_clean(info.value, emu)


def test_unreachable_server_is_unavailable(emu):
    cfg = config(emu)
    emu.stop()
    with pytest.raises(PlexUnavailable) as info:
        connect(cfg, "device")
    assert_clean(info.value, emu)


def test_other_exceptions_pass_through():
    with pytest.raises(KeyError):
        with plex_errors():
            raise KeyError("ours")


def test_503_during_the_batch_raises_before_any_write(emu, section, make_sync):
    emu.add_item(section, "scene one", [FILE])
    sync = make_sync()
    sync.matcher.refresh()
    emu.fault(status=503, path_prefix="/library/metadata")
    with pytest.raises(PlexUnavailable):
        sync.sync_batch([scene(title="T")], no_image)


def test_per_scene_errors_are_returned(emu, section, make_sync):
    a = emu.add_item(section, "a", ["/data/stash/a.mp4"])
    b = emu.add_item(section, "b", ["/data/stash/b.mp4"])
    sync = make_sync()
    sync.matcher.refresh()
    emu.fault(status=400, method="PUT", times=1)
    result = sync.sync_batch([scene(1, ["/data/stash/a.mp4"], title="A"), scene(2, ["/data/stash/b.mp4"], title="B")], no_image)
    assert isinstance(result[1], PlexBadRequest)
    assert result[2].items == [b] and emu.item(b)["title"] == "B" and emu.item(a)["title"] == "a"


def test_outage_mid_batch_stops_writing(emu, section, make_sync):
    files = [f"/data/stash/{n}.mp4" for n in "abc"]
    for f in files:
        emu.add_item(section, f, [f])
    sync = make_sync()
    sync.matcher.refresh()
    sync.sync_batch([scene(1, [files[0]], title="warm-up")], no_image)  # connect + section list
    emu.clear_requests()
    emu.fault(status=503, method="PUT", path_prefix="/library/sections", times=99)
    result = sync.sync_batch([scene(i, [f], title=f"T{i}") for i, f in enumerate(files)], no_image)
    assert isinstance(result[0], PlexUnavailable)
    assert result[1] is result[0] and result[2] is result[0]
    assert len(puts(emu)) == 1


# -- device id ------------------------------------------------------------------


def test_device_id_persists_across_connects(emu, section, paths):
    emu.add_item(section, "scene one", [FILE])
    first = load_device_id(paths)
    assert load_device_id(paths) == first
    assert json.loads(open(paths.device_id).read()) == {"device_id": first}
    if os.name == "posix":
        assert os.stat(paths.device_id).st_mode & 0o077 == 0
    before = dict(plexapi.BASE_HEADERS)
    for _ in range(2):
        sync = PlexSync(config(emu), paths)
        sync.sync_batch([scene(title="T")], no_image)
        sync.close()
    assert plexapi.BASE_HEADERS == before  # no global side effect
    assert {r.headers["X-Plex-Client-Identifier"] for r in emu.requests} == {first}
    assert {r.headers["X-Plex-Product"] for r in emu.requests} == {"PlexSync"}


def test_unreadable_device_id_is_replaced(paths):
    with open(paths.device_id, "w") as fh:
        fh.write("not json")
    new = load_device_id(paths)
    assert load_device_id(paths) == new
