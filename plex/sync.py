"""The one entry point the worker calls: push a batch of scenes into Plex.

Requests per batch: matching is local (index in SQLite); ONE
``/library/metadata/k1,k2,...`` fetch per 50 matched items; at most one edit
PUT per item that needs changes (collection membership included); at most
one poster upload per item whose image changed. Collections PlexSync manages
cost at most two listings per section per batch, and only in a batch that
creates, empties or re-illustrates one (see ``plex.collections``). Connecting (``GET /``) and the section list happen once per
``PlexSync``.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Union

import requests
from plexapi.server import PlexServer

from common.errors import ConfigError, PlexAuthError, PlexNotFound, PlexSyncError, PlexUnavailable, SceneHasNoFile
from plex.client import connect, load_device_id, plex_errors, plex_session
from plex.matcher import FileMatch, Matcher
from plex.pathnorm import basename_key, map_path, parent_folder, path_key
from plex.collections import CollectionKeeper
from plex.store import MatchStore
from plex.writer import Cleared, Options, apply_edits, plan, snapshot, upload_poster, wanted_collections
from plex.written import WrittenStore

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")

FETCH_CHUNK = 50
# Failures of Plex as a whole, not of one scene.
PLEX_WIDE = (PlexUnavailable, PlexAuthError, ConfigError)


@dataclass(frozen=True)
class Outcome:
    """What happened to one scene that reached Plex."""

    status: str  # "synced" | "unchanged"
    items: List[int] = field(default_factory=list)
    edited: bool = False
    poster_uploaded: bool = False


Result = Union[Outcome, PlexSyncError]


class PlexSync:
    """Matches scenes to Plex items and writes their metadata. Not thread-safe."""

    def __init__(self, config, paths, device_id: Optional[str] = None) -> None:
        self.config = config
        self.paths = paths
        self._device_id = device_id
        self._server: Optional[PlexServer] = None
        self._session: Optional[requests.Session] = None
        self._store: Optional[MatchStore] = None
        self._matcher: Optional[Matcher] = None
        self._written: Optional[WrittenStore] = None
        self.run_started = time.time()

    # -- lazily opened resources -------------------------------------------

    @property
    def server(self) -> PlexServer:
        if self._server is None:
            device_id = self._device_id or load_device_id(self.paths)
            self._session = self._session or plex_session(self.config.plex_url)
            self._server = connect(self.config, device_id, session=self._session)
        return self._server

    @property
    def store(self) -> MatchStore:
        if self._store is None:
            self._store = MatchStore(self.paths.match_index)
        return self._store

    @property
    def written(self) -> WrittenStore:
        if self._written is None:
            self._written = WrittenStore(self.paths.written)
        return self._written

    @property
    def matcher(self) -> Matcher:
        if self._matcher is None:
            self._matcher = Matcher(self.config, self.store, lambda: self.server, run_started=self.run_started)
        return self._matcher

    # -- public -------------------------------------------------------------

    def sync_batch(self, scenes: List, fetch_image: Callable[[object], Optional[bytes]]) -> Dict[int, Result]:
        """Scene id -> Outcome, or the PlexSyncError that stopped that scene.

        Raises PlexUnavailable / PlexAuthError / ConfigError when Plex as a
        whole fails while matching or fetching (nothing was written yet).
        Once writing has started, such a failure is returned for the scene it
        hit and for every scene not yet written, and no further request is made.
        """
        results: Dict[int, Result] = {}
        matches: Dict[int, List[FileMatch]] = {}
        self.matcher.begin_batch()  # matcher: Plex's changes are read at most once per batch
        for scene in scenes:
            self._match(scene, matches, results)
        items = self._fetch({m.rating_key for ms in matches.values() for m in ms})
        self._replace_stale(scenes, matches, items, results)

        outage: Optional[PlexSyncError] = None
        keeper = CollectionKeeper(lambda: self.server, self.written, lambda url: fetch_image(_ImageRef(url)))
        for scene in scenes:
            if scene.id in results or scene.id not in matches:
                continue
            if outage is not None:
                results[scene.id] = outage
                continue
            try:
                pairs = [(m, items[m.rating_key]) for m in matches[scene.id]]
                results[scene.id] = self._write(scene, pairs, fetch_image, keeper)
            except PLEX_WIDE as exc:
                outage = results[scene.id] = exc
            except PlexSyncError as exc:
                results[scene.id] = exc
        self.matcher.flush()  # matcher: one write for the scenes' matched items
        if outage is None:
            self._finish_collections(keeper)
        return results

    def request_scan(self, scene) -> bool:
        """Ask Plex to scan the folders of the scene's files (partial scans).

        Returns whether any scan was requested (False: no library holds them).
        """
        if not scene.files:
            raise SceneHasNoFile(f"scene {scene.id} has no file")
        seen = set()
        requested = False
        for file in scene.files:
            folder = path_key(parent_folder(map_path(file, self.config.path_mappings)))
            if folder not in seen:
                seen.add(folder)
                requested = self.matcher.request_scan(file) or requested
        return requested

    def close(self) -> None:
        if self._matcher is not None:
            self._matcher.flush()  # matcher
        if self._written is not None:
            self._written.close()
            self._written = None
        if self._store is not None:
            self._store.close()
            self._store = self._matcher = None
        if self._session is not None:
            self._session.close()
            self._session = self._server = None

    def __enter__(self) -> "PlexSync":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- steps --------------------------------------------------------------

    def _fetch(self, rating_keys: Iterable[int]) -> Dict[int, object]:
        """Full items (all tags, Field locks) in requests of up to 50 keys."""
        keys = sorted(set(rating_keys))
        out: Dict[int, object] = {}
        for start in range(0, len(keys), FETCH_CHUNK):
            for item in self._fetch_chunk(keys[start:start + FETCH_CHUNK]):
                # These items count as "partial" to plexapi; reading an empty
                # attribute would reload each one. They are complete: never reload.
                item._autoReload = False
                out[int(item.ratingKey)] = item
        return out

    def _fetch_chunk(self, keys: List[int]) -> list:
        try:
            with plex_errors("fetching Plex items"):
                return list(self.server.fetchItems(keys))
        except PlexNotFound:
            if len(keys) == 1:
                return []
        # Plex answered 404 for the whole list: find out which keys still exist.
        found = []
        for key in keys:
            found.extend(self._fetch_chunk([key]))
        return found

    def _replace_stale(self, scenes, matches, items, results) -> None:
        """Drop rating keys Plex no longer has (or that now hold another file), match again."""
        again = []
        for scene in scenes:
            stale = [m for m in matches.get(scene.id, ()) if not _holds(items.get(m.rating_key), m)]
            for m in stale:
                self.matcher.forget(m.rating_key)
            if stale:
                again.append(scene)
        for scene in again:
            self._match(scene, matches, results)
        items.update(self._fetch({m.rating_key for s in again if s.id in matches for m in matches[s.id]} - set(items)))
        for scene in again:
            if scene.id in matches and not all(_holds(items.get(m.rating_key), m) for m in matches[scene.id]):
                del matches[scene.id]
                results[scene.id] = PlexNotFound(f"scene {scene.id}: its Plex item changed while syncing; retry later")

    def _match(self, scene, matches: Dict[int, List[FileMatch]], results: Dict[int, Result]) -> None:
        """Match ``scene`` into ``matches``, or record why not in ``results``.

        Plex-wide failures (outage, bad token) propagate: they concern the batch.
        """
        try:
            matches[scene.id] = self.matcher.match(scene)
        except PLEX_WIDE:
            raise
        except PlexSyncError as exc:
            matches.pop(scene.id, None)
            results[scene.id] = exc

    def _write(self, scene, pairs, fetch_image, keeper: CollectionKeeper) -> Outcome:
        edited = uploaded = False
        locked = {}
        options = Options.from_config(self.config)
        for match, item in pairs:
            # matcher: edit through the library the item was matched in (_holds checked it is still there)
            item.librarySectionID = match.section_id
            current = snapshot(item)
            locked[match.rating_key] = current["locked"]
            edited = self._write_item(scene, item, current, options, keeper) or edited
        if scene.screenshot_url and "poster" not in options.skipped:
            image = fetch_image(scene)
            for match, item in pairs:
                with plex_errors("uploading a poster"):
                    uploaded = upload_poster(item, image, self.store,
                                             preserve_plex_edits=self.config.preserve_plex_edits,
                                             locked=locked[match.rating_key]) or uploaded
        if edited or uploaded:  # drift: Plex's updatedAt moved; the next repair looks again
            self.written.unsee(m.rating_key for m, _ in pairs)
        return Outcome(
            status="synced" if edited or uploaded else "unchanged",
            items=[m.rating_key for m, _ in pairs],
            edited=edited,
            poster_uploaded=uploaded,
        )

    def _write_item(self, scene, item, current, options: Options, keeper: CollectionKeeper) -> bool:
        """One item's edit, and what PlexSync remembers about it. Returns whether Plex was edited."""
        rating_key, section_id = int(item.ratingKey), int(item.librarySectionID)
        todo = plan(scene, current, options, self.written.fields(rating_key))
        change = todo.edits.get("collection")
        have = current.get("collection") or []
        made: list = []
        if change is not None:
            new = list(change.keep) if isinstance(change, Cleared) else change
            made = keeper.to_create(section_id, have, new)
        if todo.edits:
            with plex_errors("editing a Plex item"):
                apply_edits(item, todo.edits, current)
        if todo.record or todo.forget:
            self.written.record(rating_key, todo.record, todo.forget)
        if change is not None:
            keep = {n.casefold() for n in new}
            keeper.edited(section_id, made, [n for n in have if n.casefold() not in keep])
        if "collections" not in options.skipped:
            wanted = {n.casefold() for n in wanted_collections(scene, options)}
            keeper.want_art(section_id, [s for s in (*scene.studios, *scene.groups) if s.name.casefold() in wanted])
        return bool(todo.edits)

    def _finish_collections(self, keeper: CollectionKeeper) -> None:
        """Collection artwork and clean-up; a failure here fails no scene (the next batch retries)."""
        try:
            keeper.finish()
        except PlexSyncError as exc:
            log.warning("[PlexSync Collections] could not update collections: %s", exc)


@dataclass(frozen=True)
class _ImageRef:
    """What ``fetch_image`` reads from a scene, for a studio's or group's image."""

    screenshot_url: str


def _holds(item, match: FileMatch) -> bool:
    """Whether the fetched item still has the matched file (by name: mounts differ),
    in the library where it was matched."""
    if item is None:
        return False
    # matcher: an item moved to another library is matched again, never edited there
    if item.librarySectionID is not None and int(item.librarySectionID) != match.section_id:
        return False
    name = basename_key(match.file)
    return any(basename_key(p) == name for p in item.locations if p)
