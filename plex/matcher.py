"""Scene file -> Plex item(s), from a local path index.

Lookup order for one file:
  1. the index, by the mapped full path, then by file name (the same file
     seen through different mounts); several hits are checked against Plex
     (one request) and those that no longer hold the file are dropped;
  2. NotInPlexLibrary if the mapped path lies outside every folder of the
     chosen libraries (their locations are re-read at most once per batch);
  3. the items this scene matched before (one request): a renamed or moved
     file whose item Plex kept;
  4. what changed in Plex since the index last looked (one listing request
     per library, ``updatedAt>>=``, usually a single page): new items, so a
     file that Plex re-added under its new name;
  5. one index rebuild, only if the index predates this run;
  6. PlexNotFound (the worker may call ``request_scan`` and retry later).

The index (see ``store.py``) is built by paging the libraries' listings once
and reused across runs, so a normal sync makes no Plex request to match.
"""

import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from plexapi.server import PlexServer

from common.errors import AmbiguousMatch, ConfigError, NotInPlexLibrary, PlexNotFound, SceneHasNoFile
from plex.client import plex_errors, section_pages
from plex.pathnorm import basename_key, is_under, map_path, parent_folder, path_key
from plex.store import MatchStore, Row

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")

CHECK_LIMIT = 50  # candidates checked against Plex in one request
# Overlap of the changes listing, in seconds: Plex's updatedAt has whole
# seconds and ``>>=`` is strict, so an item changed in the same second as the
# newest one seen last time is listed again rather than missed.
CHANGES_OVERLAP = 1


@dataclass(frozen=True)
class FileMatch:
    """One Stash file and the Plex item holding it."""

    file: str
    rating_key: int
    section_id: int


class Matcher:
    """Finds the Plex items of a scene; owns the index's refresh policy."""

    def __init__(self, config, store: MatchStore, server: Callable[[], PlexServer], run_started: Optional[float] = None) -> None:
        self.config = config
        self.store = store
        self._server = server
        self.run_started = time.time() if run_started is None else run_started
        self._sections = None
        self._locations: Optional[Dict[int, List[str]]] = None
        self._locations_fresh = False
        self._changes_listed = False
        self._remembered: Dict[int, List[Tuple[int, int]]] = {}  # written by flush()
        self._refreshed = False
        self.scope = ",".join(sorted(name.casefold() for name in config.libraries)) or "*"

    # -- public -------------------------------------------------------------

    def begin_batch(self) -> None:
        """A new batch: Plex's changes and library folders may be read again (once each)."""
        self.flush()
        self._locations_fresh = self._changes_listed = False

    def flush(self) -> None:
        """Store which items the scenes matched, in one transaction (a hint: losing it is harmless)."""
        if self._remembered:
            pending, self._remembered = self._remembered, {}
            self.store.remember_scenes(pending)

    def match(self, scene) -> List[FileMatch]:
        """Every Plex item of the scene's files (files Plex lacks are skipped
        while at least one is found)."""
        if not scene.files:
            raise SceneHasNoFile(f"scene {scene.id} has no file")
        found: Dict[int, FileMatch] = {}
        missing: List[Exception] = []
        for file in scene.files:
            try:
                hit = self.match_file(file, scene_id=scene.id)
            except (PlexNotFound, NotInPlexLibrary) as exc:
                missing.append(exc)
                continue
            found.setdefault(hit.rating_key, hit)
        if not found:
            # Retry while any file may still show up; outside every library none will.
            raise next((e for e in missing if isinstance(e, PlexNotFound)), missing[0])
        for exc in missing:
            log.debug("[PlexSync Matcher] scene %s: %s; syncing its other files", scene.id, exc)
        self._remembered[scene.id] = [(m.rating_key, m.section_id) for m in found.values()]
        return list(found.values())

    def match_file(self, file: str, scene_id: Optional[int] = None) -> FileMatch:
        """The Plex item holding ``file`` (a Stash path)."""
        mapped = map_path(file, self.config.path_mappings)
        key, base = path_key(mapped), basename_key(file)
        self._ensure_index()
        candidates = self._current(key, base) or self._moved(scene_id, key, base) or self._changed(key, base)
        if not candidates and not self._covered(mapped):
            raise NotInPlexLibrary(f"'{file}' is not in any Plex library (no library folder holds '{mapped}')")
        if not candidates and self._may_refresh():
            log.info("[PlexSync Matcher] '%s' is not in the index; refreshing it once for this run", file)
            self.refresh()
            candidates = self._current(key, base)
        if not candidates:
            raise PlexNotFound(f"'{file}' is not in Plex (yet)")
        return self._choose(file, candidates)

    def forget(self, rating_key: int) -> None:
        """Drop a ratingKey Plex no longer has, so the next lookup finds the new one."""
        log.debug("[PlexSync Matcher] dropping stale rating key %s", rating_key)
        self.flush()
        self.store.forget(rating_key)

    def request_scan(self, file_path: str) -> bool:
        """Ask Plex for a partial scan of the file's folder; False if no library holds it."""
        mapped = map_path(file_path, self.config.path_mappings)
        folder = parent_folder(mapped)
        for section in self.sections():
            if any(is_under(mapped, location) for location in section.locations):
                log.debug("[PlexSync Matcher] asking Plex library '%s' to scan %s", section.title, folder)
                with plex_errors("requesting a library scan"):
                    section.update(path=folder)
                return True
        log.warning("[PlexSync Matcher] no Plex library folder contains '%s'; check path_map", mapped)
        return False

    def refresh(self) -> bool:
        """Rebuild the index from Plex; False if another process is already doing it."""
        self._refreshed = self._changes_listed = True
        if not self.store.begin_rebuild():
            log.info("[PlexSync Matcher] another process is rebuilding the index; using the current one")
            return False
        started, count, newest = time.time(), 0, [0]
        try:
            for rows in self._listing_pages(newest=newest):
                self.store.add_build_rows(rows)
                count += len(rows)
        except BaseException:
            self.store.abort_rebuild()
            raise
        self.store.finish_rebuild(self.scope, built_at=started, changes_since=newest[0])
        log.info("[PlexSync Matcher] indexed %d Plex files in %.1fs", count, time.time() - started)
        return True

    def sections(self) -> list:
        """The library sections PlexSync matches against (fetched once per run)."""
        if self._sections is None:
            with plex_errors("listing Plex libraries"):
                everything = self._server().library.sections()
            self._sections = self._pick_sections(everything)
        return self._sections

    # -- lookup steps -------------------------------------------------------

    def _lookup(self, key: str, base: str) -> List[Tuple[int, int]]:
        return self.store.by_path(key) or self.store.by_basename(base)

    def _current(self, key: str, base: str) -> List[Tuple[int, int]]:
        """The index's candidates; several are checked against Plex first."""
        candidates = self._lookup(key, base)
        return self._still_holding(candidates, key, base) if len(candidates) > 1 else candidates

    def _still_holding(self, candidates, key: str, base: str) -> List[Tuple[int, int]]:
        """The candidates Plex still has with this file, in one request; the rest are forgotten.

        Without this, a duplicate the user deleted in Plex would keep the
        match ambiguous forever.
        """
        if len(candidates) > CHECK_LIMIT:
            return candidates  # ambiguous whichever of them are stale
        kept = self._holding(self._items([rk for rk, _ in candidates]), key, base)
        for rk, _ in candidates:
            if rk not in {k for k, _ in kept}:
                self.forget(rk)
        return kept

    def _moved(self, scene_id: Optional[int], key: str, base: str) -> List[Tuple[int, int]]:
        """The scene's earlier items, if Plex kept one under the file's new name."""
        if scene_id is None:
            return []
        known = self._remembered.get(scene_id) or self.store.scene_items(scene_id)
        if not known:
            return []
        return self._holding(self._items([rk for rk, _ in known]), key, base)

    def _changed(self, key: str, base: str) -> List[Tuple[int, int]]:
        """Index what Plex changed since the index last looked (once per batch), then look again."""
        if self._changes_listed:
            return []
        self._changes_listed = True
        since = self.store.changes_since()
        newest = [since]
        for rows in self._listing_pages(since=max(0, since - CHANGES_OVERLAP), newest=newest):
            if rows:
                self.store.add(rows)
        if newest[0] > since:
            self.store.set_changes_since(newest[0])
        return self._current(key, base)

    def _holding(self, elements, key: str, base: str) -> List[Tuple[int, int]]:
        """(rating key, section) of the items holding this file, exact path first; indexes them."""
        wanted = {int(s.key) for s in self.sections()}
        exact, by_name, rows = [], [], []
        for el, section_id in elements:
            files = [p.get("file") for p in el.iter("Part") if p.get("file")]
            if section_id not in wanted or not any(basename_key(f) == base for f in files):
                continue
            hit = (int(el.get("ratingKey")), section_id)
            (exact if any(path_key(f) == key for f in files) else by_name).append(hit)
            rows.extend((path_key(f), basename_key(f), hit[0], section_id) for f in files)
        if rows:
            self.store.add(rows)
        return exact or by_name

    def _items(self, rating_keys: List[int]) -> List[Tuple[object, int]]:
        """(Video element, section id) of the keys Plex still has, in one request."""
        data = None
        try:
            with plex_errors("fetching Plex items"):
                data = self._server().query(f"/library/metadata/{','.join(str(k) for k in sorted(rating_keys))}")
        except PlexNotFound:
            pass  # none of them exists any more
        if data is None:
            return []
        default = data.get("librarySectionID")
        return [(el, int(el.get("librarySectionID") or default or 0)) for el in data if el.get("ratingKey")]

    def _covered(self, mapped: str) -> bool:
        """Whether a folder of the chosen libraries holds ``mapped`` (re-read once per batch if not)."""
        if self._locations is None:
            self._locations = {int(s.key): list(s.locations) for s in self.sections()}
            self._locations_fresh = True
        if self._holds_path(mapped):
            return True
        if not self._locations_fresh:
            self._locations = self._read_locations()
            self._locations_fresh = True
        return self._holds_path(mapped)

    def _holds_path(self, mapped: str) -> bool:
        return any(is_under(mapped, loc) for locs in self._locations.values() for loc in locs)

    def _read_locations(self) -> Dict[int, List[str]]:
        """The chosen libraries' folders as Plex lists them now (plexapi caches sections)."""
        wanted = {int(s.key) for s in self.sections()}
        with plex_errors("listing Plex libraries"):
            data = self._server().query("/library/sections")
        return {int(d.get("key")): [loc.get("path") for loc in d.iter("Location") if loc.get("path")]
                for d in (data if data is not None else []) if d.get("key") and int(d.get("key")) in wanted}

    def _choose(self, file: str, candidates: List[Tuple[int, int]]) -> FileMatch:
        if len(candidates) > 1:
            log.warning("[PlexSync Matcher] LOW confidence match for '%s': %d candidates found", file, len(candidates))
            if self.config.strict_matching:
                raise AmbiguousMatch(
                    f"'{file}' matches {len(candidates)} Plex items (rating keys "
                    f"{', '.join(str(rk) for rk, _ in candidates[:5])}); strict_matching is on"
                )
            log.warning("[PlexSync Matcher] using the first candidate (rating key %s) for '%s'", candidates[0][0], file)
        rating_key, section_id = candidates[0]
        return FileMatch(file=file, rating_key=rating_key, section_id=section_id)

    # -- index --------------------------------------------------------------

    def _ensure_index(self) -> None:
        if self.store.built_at(self.scope) is None:
            log.info("[PlexSync Matcher] building the Plex file index")
            self.refresh()

    def _may_refresh(self) -> bool:
        if self._refreshed:
            return False
        built = self.store.built_at(self.scope)
        return built is not None and built < self.run_started

    def _listing_pages(self, since: Optional[int] = None, newest: Optional[List[int]] = None) -> Iterator[List[Row]]:
        """Index rows, one listing page at a time (raw XML, no plexapi objects).

        With ``since``, only items Plex changed after that ``updatedAt``
        (PMS's ``updatedAt>>=`` filter). ``newest[0]`` is raised to the newest
        ``updatedAt`` seen.
        """
        server = self._server()
        changed = "" if since is None else f"&updatedAt%3E%3E={int(since)}"
        for section in self.sections():
            section_id = int(section.key)
            for videos in section_pages(server, section_id, changed):
                if newest is not None:
                    newest[0] = max([newest[0]] + [int(el.get("updatedAt") or 0) for el in videos])
                yield _rows(videos, section_id)

    def _pick_sections(self, everything: list) -> list:
        wanted = self.config.libraries
        if not wanted:
            movies = [s for s in everything if s.type == "movie"]
            log.info("[PlexSync Matcher] Searching all %d libraries (set plex_library to speed up)", len(movies))
            return movies
        by_title: Dict[str, list] = {}
        for section in everything:
            by_title.setdefault(section.title.strip().casefold(), []).append(section)
        chosen, unknown = [], []
        for name in wanted:
            sections = by_title.get(name.casefold())
            if not sections:
                unknown.append(name)
                continue
            for section in sections:
                if section.type != "movie":
                    log.warning("[PlexSync Matcher] Plex library '%s' is a %s library; only movie/video libraries are synced", section.title, section.type)
                elif section not in chosen:
                    chosen.append(section)
        if unknown:
            names = ", ".join(repr(s.title) for s in everything) or "none"
            raise ConfigError(f"plex_library: no Plex library named {', '.join(map(repr, unknown))} (libraries: {names})")
        if not chosen:
            raise ConfigError("plex_library: none of the configured Plex libraries is a movie/video library")
        return chosen


def _rows(videos: Iterable, section_id: int) -> List[Row]:
    return [
        (path_key(f), basename_key(f), int(el.get("ratingKey")), section_id)
        for el in videos
        for f in (part.get("file") for part in el.iter("Part"))
        if f
    ]
