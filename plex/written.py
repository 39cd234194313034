"""What PlexSync itself wrote to Plex (``written.db``).

Two facts the item alone cannot tell:

* which value of a field PlexSync wrote (``fields``): a field Stash now
  leaves empty is cleared in Plex only while Plex still holds PlexSync's
  value; the agent's or the user's value stays;
* which collections PlexSync created (``collections``): PMS creates a
  collection when an edit names a new one and never deletes one that
  becomes empty, so only the collections recorded here are ever deleted,
  given artwork or a summary. The user's own collections are never touched.

And, for drift repair (``seen``, see ``plex/drift.py``), each item's Plex
``updatedAt`` when Repair Plex Drift last found it as PlexSync wants it; any
write by PlexSync drops the row, so the next repair checks that item again.

Its own file, so a rebuild of the match index never loses it.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from common import sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fields (
    rating_key INTEGER NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (rating_key, field));
CREATE TABLE IF NOT EXISTS collections (
    section_id INTEGER NOT NULL, name_key TEXT NOT NULL, name TEXT NOT NULL,
    art TEXT NOT NULL DEFAULT '', PRIMARY KEY (section_id, name_key));
CREATE TABLE IF NOT EXISTS seen (
    rating_key INTEGER PRIMARY KEY, updated_at INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Created:
    """A collection PlexSync created; ``art`` fingerprints its poster and summary."""

    name: str
    art: str


def name_key(name: str) -> str:
    # PMS shares one tag per name, case-insensitively.
    return name.casefold()


class WrittenStore:
    """One connection to ``written.db``; single-threaded use."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = Path(path)
        self._db = sqlite.connect_private(self.path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def transaction(self):
        return sqlite.transaction(self._db)

    # -- fields ---------------------------------------------------------------

    def fields(self, rating_key: int) -> Dict[str, Any]:
        rows = self._db.execute("SELECT field, value FROM fields WHERE rating_key = ?", (int(rating_key),))
        return {field: json.loads(value) for field, value in rows}

    def record(self, rating_key: int, written: Dict[str, Any], cleared=()) -> None:
        """``written``: field -> value PlexSync just wrote; ``cleared``: fields it emptied."""
        with self.transaction():
            for field, value in written.items():
                self._db.execute("INSERT OR REPLACE INTO fields VALUES (?, ?, ?)",
                                 (int(rating_key), field, json.dumps(value)))
            for field in cleared:
                self._db.execute("DELETE FROM fields WHERE rating_key = ? AND field = ?", (int(rating_key), field))

    # -- collections ----------------------------------------------------------

    def created(self, section_id: int) -> Dict[str, Created]:
        rows = self._db.execute("SELECT name_key, name, art FROM collections WHERE section_id = ?", (section_id,))
        return {key: Created(name, art) for key, name, art in rows}

    def add_created(self, section_id: int, name: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO collections (section_id, name_key, name) VALUES (?, ?, ?)",
                         (section_id, name_key(name), name))

    def set_art(self, section_id: int, name: str, art: str) -> None:
        self._db.execute("UPDATE collections SET art = ? WHERE section_id = ? AND name_key = ?",
                         (art, section_id, name_key(name)))

    def drop_created(self, section_id: int, name: str) -> None:
        self._db.execute("DELETE FROM collections WHERE section_id = ? AND name_key = ?",
                         (section_id, name_key(name)))

    def art(self, section_id: int, name: str) -> Optional[str]:
        row = self._db.execute("SELECT art FROM collections WHERE section_id = ? AND name_key = ?",
                               (section_id, name_key(name))).fetchone()
        return row[0] if row else None

    # -- drift repair: updatedAt last seen (plex/drift.py) ----------------------

    def seen(self) -> Dict[int, int]:
        return dict(self._db.execute("SELECT rating_key, updated_at FROM seen"))

    def set_seen(self, updated: Dict[int, int]) -> None:
        with self.transaction():
            self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?)",
                                 [(int(k), int(v)) for k, v in updated.items()])

    def unsee(self, rating_keys) -> None:
        self._db.executemany("DELETE FROM seen WHERE rating_key = ?", [(int(k),) for k in rating_keys])
