"""Emulator self-tests for what drift repair relies on, through the real plexapi.

* Every listing row carries ``updatedAt``, the same as the full item: plexapi
  reads it in ``Video._loadData`` from any element (plexapi/video.py), and its
  own test sorts a partial listing by it (tests/test_library.py,
  ``movies.search(sort="updatedAt")``).
* PMS raises ``updatedAt`` on every edit, poster upload and agent refresh.
* An uploaded poster is listed as ``upload://posters/<sha1 of the bytes>``
  (plexapi/media.py special-cases the ``upload://`` ratingKey; its tests in
  tests/test_mixins.py find an upload by ``ratingKey.endswith(<sha1>)``).
"""

import hashlib

from tests.e2e import plexapi_server as connect


ROOT = LIBRARY_ROOT = "/data/stash"  # conftest.emu adds the library


def listed_updated_at(server, rk) -> int:
    rows = server.library.section("Stash").search(container_size=500)
    row = next(r for r in rows if int(r.ratingKey) == rk)
    assert row.isPartialObject()
    return int(row.updatedAt.timestamp())


def test_listing_rows_carry_updated_at_and_every_change_raises_it(emu, tmp_path):
    rk = emu.add_item(emu.section_key, "One", [f"{ROOT}/one.mp4"], updatedAt=1_700_000_000)
    server = connect(emu)
    assert listed_updated_at(server, rk) == 1_700_000_000 == int(server.fetchItem(rk).updatedAt.timestamp())
    seen = [1_700_000_000]
    item = server.fetchItem(rk)
    poster = tmp_path / "p.jpg"
    poster.write_bytes(b"\xff\xd8 own poster")
    for change in (lambda: item.editTitle("Edited"), lambda: item.uploadPoster(filepath=str(poster)),
                   lambda: item.refresh()):
        change()
        now = listed_updated_at(server, rk)
        assert now > seen[-1]
        seen.append(now)
    selected = [p for p in server.fetchItem(rk).posters() if p.selected]
    assert selected[0].ratingKey == "upload://posters/" + hashlib.sha1(poster.read_bytes()).hexdigest()
