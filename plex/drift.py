"""Drift: which synced Plex items changed since PlexSync last saw them.

One raw listing page per 500 items of each chosen library (no plexapi
objects: only ``ratingKey`` and ``updatedAt`` of each row are read). PMS
raises an item's ``updatedAt`` on every edit, poster change and agent
refresh, and every listing row carries it, so an item whose ``updatedAt``
is the one recorded after PlexSync's last look (``written.db``, table
``seen``) has not changed and costs no further request.
"""

from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Set, Tuple

from plex.client import section_pages



@dataclass
class Drift:
    """What the listing showed, per synced item."""

    changed: Set[int] = field(default_factory=set)     # updatedAt differs from the one seen
    unverified: Set[int] = field(default_factory=set)  # never seen after PlexSync's last write
    vanished: Set[int] = field(default_factory=set)    # no longer in any chosen library
    listed: Dict[int, int] = field(default_factory=dict)  # rating key -> updatedAt, synced items only
    pages: int = 0

    def scenes(self, items_by_scene: Dict[int, List[int]]) -> Dict[int, str]:
        """Scene id -> the kind of drift that makes it need a re-sync."""
        out: Dict[int, str] = {}
        for kind in ("unverified", "changed", "vanished"):  # the last kind found wins
            keys = getattr(self, kind)
            for scene_id, items in items_by_scene.items():
                if any(rk in keys for rk in items):
                    out[scene_id] = kind
        return out


def listing_pages(server, section_ids: Iterable[int]) -> Iterator[List[Tuple[int, int]]]:
    """(rating key, updatedAt) of every movie item, one page of 500 at a time."""
    for section_id in section_ids:
        for videos in section_pages(server, section_id):
            yield [(int(el.get("ratingKey")), int(el.get("updatedAt") or 0)) for el in videos]


def find_drift(pages: Iterable[List[Tuple[int, int]]], synced: Set[int], seen: Dict[int, int]) -> Drift:
    """Compare the listing with what was seen; ``synced``: the items scenes matched."""
    drift = Drift()
    for rows in pages:
        drift.pages += 1
        for rating_key, updated_at in rows:
            if rating_key not in synced:
                continue
            drift.listed[rating_key] = updated_at
            before = seen.get(rating_key)
            if before is None:
                drift.unverified.add(rating_key)
            elif before != updated_at:
                drift.changed.add(rating_key)
    drift.vanished = synced - drift.listed.keys()
    return drift
