"""The local SQLite file behind matching and poster uploads (``match_index.db``).

Tables:
  items(path, base, rating_key, section_id)  one row per Plex media part:
      ``path`` is the part's path key, ``base`` its case-folded file name.
  meta(key, value)                          ``built_at`` (epoch seconds),
      ``scope`` (which libraries the index covers) and ``changes_since``
      (the newest Plex ``updatedAt`` the index has seen, Plex's clock).
  scene_items(scene_id, rating_key, section_id)  the items a scene last
      matched: a renamed file whose item Plex kept is found through them.
  posters(rating_key, sha1, uploaded_at)    the last image PlexSync uploaded.

A rebuild fills ``items_build`` page by page (small transactions, so memory
and lock time stay flat), then swaps it in with one short transaction.
Readers never see a half index: until the swap they read the old table, and
in WAL mode a reader mid-query keeps its snapshot. A file lock lets only one
process build at a time; a builder that dies leaves ``items_build`` behind,
which the next lock holder drops.
"""

import os
import time
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from common import sqlite
from common.locking import FileLock

Row = Tuple[str, str, int, int]  # path key, basename key, rating key, section id

_ITEMS = """CREATE TABLE {name} (path TEXT NOT NULL, base TEXT NOT NULL,
    rating_key INTEGER NOT NULL, section_id INTEGER NOT NULL)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scene_items (
    scene_id INTEGER NOT NULL, rating_key INTEGER NOT NULL, section_id INTEGER NOT NULL,
    PRIMARY KEY (scene_id, rating_key));
CREATE INDEX IF NOT EXISTS scene_items_rk ON scene_items (rating_key);
CREATE TABLE IF NOT EXISTS posters (
    rating_key INTEGER PRIMARY KEY, sha1 TEXT NOT NULL, uploaded_at REAL NOT NULL);
"""


class MatchStore:
    """One connection to ``match_index.db``; single-threaded use."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = Path(path)
        self._db = sqlite.connect_private(self.path)
        self._db.executescript(_SCHEMA)
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items'").fetchone():
            with self._transaction():
                self._db.execute(_ITEMS.format(name="items"))
                self._create_indexes("items")
        elif not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items' "
                                  "AND name LIKE 'items_rk_%'").fetchone():
            with self._transaction():  # an index built before there was one on rating_key
                self._db.execute(f"CREATE INDEX items_rk_{uuid.uuid4().hex[:8]} ON items (rating_key)")
        self._lock = FileLock(str(self.path) + ".lock")

    def close(self) -> None:
        self._lock.release()
        self._db.close()

    # -- index metadata ---------------------------------------------------

    def built_at(self, scope: str) -> Optional[float]:
        """When the index for ``scope`` was built; None if it must be (re)built."""
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        if meta.get("scope") != scope or "built_at" not in meta:
            return None
        return float(meta["built_at"])

    def changes_since(self) -> int:
        """The newest Plex ``updatedAt`` already in the index (0: unknown)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'changes_since'").fetchone()
        return int(float(row[0])) if row else 0

    def set_changes_since(self, updated_at: int) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('changes_since', ?)", (str(int(updated_at)),))

    # -- lookups ------------------------------------------------------------

    def by_path(self, key: str) -> List[Tuple[int, int]]:
        return self._select("path", key)

    def by_basename(self, base: str) -> List[Tuple[int, int]]:
        return self._select("base", base)

    def _select(self, column: str, value: str) -> List[Tuple[int, int]]:
        rows = self._db.execute(
            f"SELECT rating_key, section_id FROM items WHERE {column} = ? ORDER BY rowid", (value,)
        )
        seen, out = set(), []
        for rk, section in rows:
            if rk not in seen:
                seen.add(rk)
                out.append((rk, section))
        return out

    def parts(self, rating_key: int) -> List[Tuple[str, str]]:
        """(path key, basename key) of each media part of one item (the history import)."""
        return list(self._db.execute("SELECT path, base FROM items WHERE rating_key = ?", (rating_key,)))

    def add(self, rows: Iterable[Row]) -> None:
        """Record items found outside a rebuild (title search hits)."""
        rows = list(rows)
        with self._transaction():
            self._db.executemany("DELETE FROM items WHERE rating_key = ?", [(rk,) for rk in {r[2] for r in rows}])
            self._db.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", rows)

    def scene_items(self, scene_id: int) -> List[Tuple[int, int]]:
        rows = self._db.execute(
            "SELECT rating_key, section_id FROM scene_items WHERE scene_id = ? ORDER BY rating_key", (scene_id,)
        )
        return [tuple(r) for r in rows]

    def remember_scenes(self, items_by_scene: Dict[int, Iterable[Tuple[int, int]]]) -> None:
        """Record the items each scene matched, in one transaction for those that changed."""
        changed = {}
        for scene_id, items in items_by_scene.items():
            items = sorted(set(items))
            if items != self.scene_items(scene_id):
                changed[scene_id] = items
        if not changed:
            return
        with self._transaction():
            for scene_id, items in changed.items():
                self._db.execute("DELETE FROM scene_items WHERE scene_id = ?", (scene_id,))
                self._db.executemany("INSERT INTO scene_items VALUES (?, ?, ?)",
                                     [(scene_id, rk, s) for rk, s in items])

    def all_scene_items(self) -> Dict[int, List[int]]:
        """Scene id -> the rating keys it matched (drift repair reads them all)."""
        out: Dict[int, List[int]] = {}
        for scene_id, rk in self._db.execute("SELECT scene_id, rating_key FROM scene_items"):
            out.setdefault(scene_id, []).append(rk)
        return out

    def forget(self, rating_key: int) -> None:
        """Drop a ratingKey Plex no longer knows (deleted or re-added item)."""
        with self._transaction():
            self._db.execute("DELETE FROM items WHERE rating_key = ?", (rating_key,))
            self._db.execute("DELETE FROM scene_items WHERE rating_key = ?", (rating_key,))
            self._db.execute("DELETE FROM posters WHERE rating_key = ?", (rating_key,))

    # -- rebuild ------------------------------------------------------------

    def begin_rebuild(self) -> bool:
        """Take the build lock; False when another process is building."""
        if not self._lock.acquire():
            return False
        self._db.execute("DROP TABLE IF EXISTS items_build")
        self._db.execute(_ITEMS.format(name="items_build"))
        return True

    def add_build_rows(self, rows: List[Row]) -> None:
        with self._transaction():
            self._db.executemany("INSERT INTO items_build VALUES (?, ?, ?, ?)", rows)

    def finish_rebuild(self, scope: str, built_at: Optional[float] = None, changes_since: int = 0) -> None:
        """Index the new rows, then swap them in atomically."""
        try:
            self._create_indexes("items_build")
            with self._transaction():
                self._db.execute("DROP TABLE items")
                self._db.execute("ALTER TABLE items_build RENAME TO items")
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [("built_at", repr(built_at if built_at is not None else time.time())), ("scope", scope),
                     ("changes_since", str(int(changes_since)))],
                )
        finally:
            self._lock.release()

    def abort_rebuild(self) -> None:
        try:
            self._db.execute("DROP TABLE IF EXISTS items_build")
        finally:
            self._lock.release()

    # -- posters ------------------------------------------------------------

    def poster_sha1(self, rating_key: int) -> Optional[str]:
        row = self._db.execute("SELECT sha1 FROM posters WHERE rating_key = ?", (rating_key,)).fetchone()
        return row[0] if row else None

    def set_poster_sha1(self, rating_key: int, sha1: str) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO posters VALUES (?, ?, ?)", (rating_key, sha1, time.time())
            )

    # -- helpers ------------------------------------------------------------

    def _create_indexes(self, table: str) -> None:
        # Index names are global and survive a table rename, so each
        # generation gets its own; the old ones go with DROP TABLE.
        tag = uuid.uuid4().hex[:8]
        self._db.execute(f"CREATE INDEX items_path_{tag} ON {table} (path)")
        self._db.execute(f"CREATE INDEX items_base_{tag} ON {table} (base)")
        self._db.execute(f"CREATE INDEX items_rk_{tag} ON {table} (rating_key)")  # add, forget, parts

    def _transaction(self):
        return sqlite.transaction(self._db)
