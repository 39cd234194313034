"""The collections PlexSync manages: which it created, their artwork, removing emptied ones.

Membership travels in each item's one edit (``plex.writer``). This module
does the rest, per batch and per library section:

* before an edit adds a name PlexSync has not created, it lists the
  section's collections once (``GET /library/sections/{id}/collections``):
  a name already there is the user's and is never touched again;
* after the batch, only when a collection PlexSync created lost members or
  its Stash image or text changed, it lists the section once more, deletes
  the created collections that are now empty and uploads the poster /
  edits the summary of those whose Stash source changed (at most one upload
  and one edit per collection per change).

A batch in which nothing changed makes no request here.
"""

import hashlib
import json
import logging
from typing import Callable, Dict, Iterable, List, Optional, Set

from plex.client import plex_errors
from plex.written import Created, WrittenStore, name_key

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")


def art_key(source) -> str:
    """Fingerprint of a collection's Stash image URL (Stash changes it with the image) and text."""
    summary = hashlib.sha1(source.summary.encode()).hexdigest() if source.summary else None
    return json.dumps({"image": source.image_url, "summary": summary}, sort_keys=True)


def _art(text: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


class CollectionKeeper:
    """One batch's collection work. ``fetch_url`` downloads a Stash image (or None)."""

    def __init__(self, server: Callable[[], object], written: WrittenStore,
                 fetch_url: Callable[[str], Optional[bytes]]) -> None:
        self._server = server
        self._written = written
        self._fetch_url = fetch_url
        self._existing: Dict[int, Set[str]] = {}   # section -> names that existed before our edits
        self._created: Dict[int, dict] = {}        # section -> name key -> Created
        self._art: Dict[int, dict] = {}            # section -> name key -> source whose art changed
        self._check: Set[int] = set()              # sections to list after the batch

    def created(self, section_id: int) -> dict:
        if section_id not in self._created:
            self._created[section_id] = self._written.created(section_id)
        return self._created[section_id]

    def to_create(self, section_id: int, have: Iterable[str], new: Iterable[str]) -> List[str]:
        """Names the edit adds that no collection of the section has yet (PMS will create them)."""
        have_keys = {name_key(n) for n in have}
        unknown = [n for n in new if name_key(n) not in have_keys and name_key(n) not in self.created(section_id)]
        if not unknown:
            return []
        if section_id not in self._existing:
            self._existing[section_id] = {name_key(c.title) for c in self._list(section_id)}
        return [n for n in unknown if name_key(n) not in self._existing[section_id]]

    def edited(self, section_id: int, made: Iterable[str], removed: Iterable[str]) -> None:
        """Record what one item's edit did to collections."""
        created = self.created(section_id)
        for name in made:
            self._written.add_created(section_id, name)
            created[name_key(name)] = Created(name, "")
            self._existing.setdefault(section_id, set()).add(name_key(name))
        if any(name_key(n) in created for n in removed):
            self._check.add(section_id)

    def want_art(self, section_id: int, sources: Iterable) -> None:
        """The Stash studios/groups behind the collections a scene is in."""
        created = self.created(section_id)
        for source in sources:
            entry = created.get(name_key(source.name))
            if entry is None or _art(entry.art) == _art(art_key(source)):
                continue
            if not entry.art and not source.image_url and not source.summary:
                continue
            self._art.setdefault(section_id, {})[name_key(source.name)] = source
            self._check.add(section_id)

    def finish(self) -> None:
        for section_id in sorted(self._check):
            created = self.created(section_id)
            for coll in self._list(section_id):
                key = name_key(coll.title)
                if key not in created:
                    continue  # the user's own
                if not coll.childCount:
                    with plex_errors("deleting an empty collection"):
                        coll.delete()
                    self._written.drop_created(section_id, coll.title)
                    log.info("[PlexSync Collections] removed the empty collection %r", coll.title)
                elif key in self._art.get(section_id, {}):
                    self._apply_art(section_id, coll, created[key].art, self._art[section_id][key])
        self._check.clear()
        self._art.clear()

    def _apply_art(self, section_id: int, coll, old: str, source) -> None:
        before, after = _art(old), _art(art_key(source))
        if source.image_url and before.get("image") != after["image"]:
            image = self._fetch_url(source.image_url)
            if image:
                with plex_errors("uploading a collection poster"):
                    coll.uploadPoster(filepath=image)
        if before.get("summary") != after["summary"]:
            with plex_errors("editing a collection summary"):
                coll.editSummary(source.summary or "", locked=bool(source.summary))
        self._written.set_art(section_id, coll.title, art_key(source))

    def _list(self, section_id: int) -> list:
        with plex_errors("listing Plex collections"):
            return list(self._server().fetchItems(f"/library/sections/{section_id}/collections"))
