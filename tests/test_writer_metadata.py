"""Planning of collections, content rating, skip_fields, exclude_tags and clearing, without a server."""

from pathlib import Path

from plex.writer import Cleared, Options, plan
from tests.planning import make_scene, make_snapshot
from validation.scene import CollectionSource

FILE = "/data/stash/a.mp4"
ROOT = Path(__file__).resolve().parents[1]


def scene(**fields):
    return make_scene(FILE, **fields)


def plex(**values):
    return make_snapshot(FILE, **values)


STUDIOS = [CollectionSource(name="Site"), CollectionSource(name="Network")]


def test_studio_collections_keep_the_users_own():
    todo = plan(scene(studios=STUDIOS), plex(collection=["Mine"]), Options(studio_collections=True))
    assert todo.edits == {"collection": ["Mine", "Site", "Network"]}
    assert todo.record == {"collection": ["Site", "Network"]}


def test_leaving_a_studio_removes_only_our_collections():
    written = {"collection": ["Site", "Network"]}
    todo = plan(scene(studios=STUDIOS[1:]), plex(collection=["Mine", "Site", "Network"]),
                Options(studio_collections=True), written)
    assert todo.edits == {"collection": ["Mine", "Network"]}
    assert todo.record == {"collection": ["Network"]}


def test_turning_collections_off_unlocks_what_is_left():
    todo = plan(scene(studios=STUDIOS), plex(collection=["Mine", "Site"]), Options(), {"collection": ["Site"]})
    assert todo.edits == {"collection": Cleared(("Mine",))} and todo.forget == ("collection",)


def test_membership_that_was_there_before_is_not_ours():
    todo = plan(scene(studios=STUDIOS[:1]), plex(collection=["Site"]), Options(studio_collections=True))
    assert todo.edits == {} and "collection" not in todo.record


def test_tag_collections_match_without_case_and_exclude_tags_filters_genres():
    options = Options(collection_tags=frozenset({"featured"}), excluded_tags=frozenset({"todo"}))
    todo = plan(scene(tags=["Featured", "TODO", "HD"]), plex(), options)
    assert todo.edits["collection"] == ["Featured"] and todo.edits["genre"] == ["Featured", "HD"]


def test_content_rating_written_and_never_cleared():
    assert plan(scene(), plex(), Options(content_rating="XXX")).edits == {"contentRating": "XXX"}
    assert plan(scene(), plex(contentRating="XXX"), Options(), {"contentRating": "XXX"}).edits == {}


def test_skip_fields_are_left_entirely_alone():
    options = Options(skipped=frozenset({"summary", "collections", "content_rating"}), content_rating="XXX",
                      studio_collections=True)
    todo = plan(scene(details="D", studios=STUDIOS), plex(summary="ours"), options, {"summary": "ours"})
    assert todo.edits == {}


def test_clearing_only_what_plexsync_wrote():
    written = {"summary": "S", "studio": "Acme", "userRating": 8.0, "genre": ["HD", "Old"], "title": "T"}
    current = plex(title="T", summary="S", studio="Changed in Plex", userRating=8.0, genre=["HD", "Agent"],
                   originallyAvailableAt="2024-01-01")
    todo = plan(scene(), current, Options(), written)
    assert todo.edits == {"summary": None, "userRating": None, "genre": Cleared(("Agent",))}
    assert set(todo.forget) == {"summary", "studio", "userRating", "genre"}


def test_equal_locked_values_count_as_ours():
    todo = plan(scene(studio="Acme"), plex(studio="Acme", locked={"studio"}), Options())
    assert todo.edits == {} and todo.record == {"studio": "Acme"}
    assert plan(scene(studio="Acme"), plex(studio="Acme"), Options()).record == {}


def test_the_writer_uses_no_private_plexapi_helper():
    for path in (ROOT / "plex").glob("*.py"):
        assert "_tagHelper" not in path.read_text(encoding="utf-8"), path.name


def test_settings_parse_and_reject_unknown_fields_by_name():
    import pytest

    from common.errors import ConfigError
    from validation.config import load_config

    base = {"plex_url": "http://plex:32400", "plex_token": "abcdefghij12"}
    cfg = load_config({**base, "skip_fields": " poster , Title ", "exclude_tags": "TODO, Needs Cover",
                       "tag_collections": "Featured,", "content_rating": " XXX "})
    assert cfg.skipped == {"poster", "title"} and cfg.excluded_tags == {"todo", "needs cover"}
    assert cfg.collection_tags == {"featured"} and cfg.content_rating == "XXX"
    assert (cfg.studio_collections, cfg.group_collections) == (False, False)
    with pytest.raises(ConfigError, match=r"skip_fields: unknown field\(s\) covers, titel; choose from title"):
        load_config({**base, "skip_fields": "Title, covers, titel"})
    with pytest.raises(ConfigError, match="group_collections"):
        load_config({**base, "group_collections": "sometimes"})
