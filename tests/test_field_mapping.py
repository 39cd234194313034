"""The Stash -> Plex field table and the diff logic, without a server."""

from datetime import datetime

import pytest

from plex.writer import FIELD_MAP, desired, plan_edits
from tests.planning import make_scene, make_snapshot

FILE = "/data/stash/My_Scene.Name.mp4"


def scene(**fields):
    return make_scene(FILE, **fields)


def plex(**values):
    return make_snapshot(FILE, **values)


def test_the_table_is_the_whole_mapping():
    assert [(f.stash, f.plex) for f in FIELD_MAP] == [
        ("title", "title"),
        ("details", "summary"),
        ("date", "originallyAvailableAt"),
        ("studio", "studio"),
        ("performers", "actor"),
        ("tags", "genre"),
        ("rating", "userRating"),
        ("", "contentRating"),  # from the content_rating setting
        ("", "collection"),     # from studios, groups and tag_collections
    ]


def test_everything_new_is_written():
    edits = plan_edits(scene(title="T", details="D", date="2024-01-02", studio="S",
                             performers=["P"], tags=["G"], rating=7.0), plex())
    assert edits == {"title": "T", "summary": "D", "originallyAvailableAt": "2024-01-02", "studio": "S",
                     "actor": ["P"], "genre": ["G"], "userRating": 7.0}


def test_equal_values_give_no_edit():
    current = plex(title="T", summary="D", originallyAvailableAt="2024-01-02", studio="S",
                   actor=["P"], genre=["G", "H"], userRating=7.0)
    assert plan_edits(scene(title="T", details="D", date="2024-01-02", studio="S",
                            performers=["P"], tags=["h", "G"], rating=7.04), current) == {}


def test_only_differences_are_written():
    current = plex(title="T", summary="old", studio="S")
    assert plan_edits(scene(title="T", details="new", studio="S"), current) == {"summary": "new"}


@pytest.mark.parametrize("empty", [dict(title=None), dict(details=""), dict(details="   "), dict(studio=None),
                                   dict(performers=[]), dict(tags=[]), dict(rating=None), dict(rating=0.0),
                                   dict(date=None), dict(date="not a date")])
def test_empty_stash_values_never_clear_plex(empty):
    current = plex(title="Plex", summary="Plex", studio="Plex", actor=["A"], genre=["G"],
                   userRating=5.0, originallyAvailableAt="2020-01-01")
    assert plan_edits(scene(**empty), current) == {}


def test_tag_lists_are_exact_and_deduplicated():
    edits = plan_edits(scene(tags=["A", "B"], performers=["X", "x", "Y"]), plex(genre=["A", "Z"], actor=["X"]))
    assert edits == {"genre": ["A", "B"], "actor": ["X", "Y"]}


def test_dates_in_any_stash_form():
    assert desired(scene(date="2024"))["originallyAvailableAt"] == "2024-01-01"
    assert desired(scene(date="2024-06"))["originallyAvailableAt"] == "2024-06-01"
    assert plan_edits(scene(date="2024-06-01"), plex(originallyAvailableAt="2024-06-01")) == {}


def test_plex_dates_may_be_datetimes():
    assert plan_edits(scene(date="2024-06-01"), plex(originallyAvailableAt=datetime(2024, 6, 1))) == {}


def test_ratings_are_rounded_and_capped():
    assert desired(scene(rating=7.26))["userRating"] == 7.3
    assert plan_edits(scene(rating=9.0), plex(userRating=8.0)) == {"userRating": 9.0}


def test_text_is_compared_trimmed_with_unix_newlines():
    assert plan_edits(scene(details="a\nb"), plex(summary="a\r\nb")) == {}


class TestPreservePlexEdits:
    def test_fills_empty_fields_only(self):
        current = plex(title="Mine", summary="Mine", genre=["Mine"])
        edits = plan_edits(scene(title="T", details="D", studio="S", tags=["G"], rating=6.0), current, True)
        assert edits == {"studio": "S", "userRating": 6.0}

    @pytest.mark.parametrize("plex_title", ["My_Scene.Name", "My Scene Name"])
    def test_a_file_name_title_counts_as_empty(self, plex_title):
        assert plan_edits(scene(title="Real"), plex(title=plex_title), True) == {"title": "Real"}

    def test_never_clears(self):
        assert plan_edits(scene(), plex(summary="x"), True) == {}
