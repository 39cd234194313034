"""Scene file -> Plex item(s), from a local path index.

Lookup order for one file:
  1. the index, by the mapped full path;
  2. the index, by file name (the same file seen through different mounts);
  3. a title search in Plex for the file's name, verified against Part@file;
  4. one index refresh, only if the index predates this run;
  5. PlexNotFound (the worker may call ``request_scan`` and retry later).

The index (see ``store.py``) is built by paging the libraries' listings once
and reused across runs, so a normal sync makes no Plex request to match.
"""

import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from plexapi.server import PlexServer

from common.errors import AmbiguousMatch, ConfigError, PlexNotFound, SceneHasNoFile
from plex.client import plex_errors
from plex.pathnorm import basename_key, is_under, map_path, parent_folder, path_key, title_from_filename
from plex.store import MatchStore, Row

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")

PAGE_SIZE = 500
SEARCH_LIMIT = 100  # title-search hits checked per section
_TOKEN = re.compile(r"[^\W_]+")


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
        self._refreshed = False
        self.scope = ",".join(sorted(name.casefold() for name in config.libraries)) or "*"

    # -- public -------------------------------------------------------------

    def match(self, scene) -> List[FileMatch]:
        """Every Plex item of the scene's files (files Plex lacks are skipped
        while at least one is found)."""
        if not scene.files:
            raise SceneHasNoFile(f"scene {scene.id} has no file")
        found: Dict[int, FileMatch] = {}
        missing: List[PlexNotFound] = []
        for file in scene.files:
            try:
                hit = self.match_file(file)
            except PlexNotFound as exc:
                missing.append(exc)
                continue
            found.setdefault(hit.rating_key, hit)
        if not found:
            raise missing[0]
        for exc in missing:
            log.info("[PlexSync Matcher] scene %s: %s; syncing its other files", scene.id, exc)
        return list(found.values())

    def match_file(self, file: str) -> FileMatch:
        """The Plex item holding ``file`` (a Stash path)."""
        mapped = map_path(file, self.config.path_mappings)
        key, base = path_key(mapped), basename_key(file)
        self._ensure_index()
        candidates = self._lookup(key, base) or self._search_title(file, key, base)
        if not candidates and self._may_refresh():
            log.info("[PlexSync Matcher] '%s' is not in the index; refreshing it once for this run", file)
            self.refresh()
            candidates = self._lookup(key, base)
        if not candidates:
            raise PlexNotFound(f"'{file}' is not in Plex (yet)")
        return self._choose(file, candidates)

    def forget(self, rating_key: int) -> None:
        """Drop a ratingKey Plex no longer has, so the next lookup finds the new one."""
        log.debug("[PlexSync Matcher] dropping stale rating key %s", rating_key)
        self.store.forget(rating_key)

    def request_scan(self, file_path: str) -> bool:
        """Ask Plex for a partial scan of the file's folder; False if no library holds it."""
        mapped = map_path(file_path, self.config.path_mappings)
        folder = parent_folder(mapped)
        for section in self.sections():
            if any(is_under(mapped, location) for location in section.locations):
                log.info("[PlexSync Matcher] asking Plex library '%s' to scan %s", section.title, folder)
                with plex_errors("requesting a library scan"):
                    section.update(path=folder)
                return True
        log.warning("[PlexSync Matcher] no Plex library folder contains '%s'; check path_map", mapped)
        return False

    def refresh(self) -> bool:
        """Rebuild the index from Plex; False if another process is already doing it."""
        self._refreshed = True
        if not self.store.begin_rebuild():
            log.info("[PlexSync Matcher] another process is rebuilding the index; using the current one")
            return False
        started, count = time.time(), 0
        try:
            for rows in self._listing_pages():
                self.store.add_build_rows(rows)
                count += len(rows)
        except BaseException:
            self.store.abort_rebuild()
            raise
        self.store.finish_rebuild(self.scope, built_at=started)
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

    def _search_title(self, file: str, key: str, base: str) -> List[Tuple[int, int]]:
        """Ask Plex by title and keep only items whose Part has this file name.

        The search term is the longest word of the file name: Plex's title
        filter is a substring match, and scanners may or may not turn ``.``/
        ``_`` into spaces, so one word matches either spelling.
        """
        term = _search_term(file)
        if not term:
            return []
        exact: List[Tuple[int, int]] = []
        by_name: List[Tuple[int, int]] = []
        rows: List[Row] = []
        for section in self.sections():
            with plex_errors("searching Plex by title"):
                results = section.search(title=term, libtype="movie", includeGuids=False, maxresults=SEARCH_LIMIT)
                for item in results:
                    item._autoReload = False  # partial listing items: never reload per item
                    parts = [p for p in item.locations if p]
                    if not any(basename_key(p) == base for p in parts):
                        continue
                    hit = (int(item.ratingKey), int(section.key))
                    (exact if any(path_key(p) == key for p in parts) else by_name).append(hit)
                    rows.extend((path_key(p), basename_key(p), hit[0], hit[1]) for p in parts)
        if rows:
            self.store.add(rows)
            log.debug("[PlexSync Matcher] found '%s' by title search", file)
        return exact or by_name

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

    def _listing_pages(self) -> Iterator[List[Row]]:
        """Index rows, one listing page at a time (raw XML, no plexapi objects)."""
        server = self._server()
        for section in self.sections():
            section_id = int(section.key)
            key = f"/library/sections/{section_id}/all?includeGuids=0&type=1"
            start = 0
            while True:
                headers = {"X-Plex-Container-Start": str(start), "X-Plex-Container-Size": str(PAGE_SIZE)}
                with plex_errors("listing a Plex library"):
                    data = server.query(key, headers=headers)
                if data is None:
                    break
                videos = [el for el in data if el.get("ratingKey")]
                yield [
                    (path_key(f), basename_key(f), int(el.get("ratingKey")), section_id)
                    for el in videos
                    for f in (part.get("file") for part in el.iter("Part"))
                    if f
                ]
                start += len(videos)
                total = data.get("totalSize")
                if not videos or (start >= int(total) if total else len(videos) < PAGE_SIZE):
                    break

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


def _search_term(file: str) -> str:
    words = _TOKEN.findall(title_from_filename(file))
    return max(words, key=len) if words else ""
