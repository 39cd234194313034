"""Import Plex plays and resume points into Stash.

One run: read the plays since the watermark (one Plex request per page of
100), find each item's Stash scene (the match index plus, for items not
linked yet, one pass over Stash's scene files), read those scenes' play
history, then write at most one ``sceneAddPlay`` per scene with new plays
and one ``sceneSaveActivity`` per changed resume point. The watermark and
the record of what Plex said are saved only after every write went
through: a Plex or Stash failure mid-run loses nothing, the next run does
it again, and Stash's play history keeps a play from being added twice.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from common import defaults
from common.locking import FileLock
from history import plex_side, stash_side
from history.state import HistoryState
from plex.pathnorm import basename_key, map_path, path_key

log = logging.getLogger("plexsync.history")

OWNER_ID = 1  # the server owner's account id on every Plex server
SKIP_REASONS = ("unmatched", "deleted", "unknown_account", "bad_time")


@dataclass
class Summary:
    plays_added: int = 0
    scenes_played: int = 0
    already_in_stash: int = 0
    resume_set: int = 0
    entries: int = 0
    skipped: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))

    def counts(self) -> Dict[str, object]:
        return {"entries": self.entries, "plays_added": self.plays_added, "scenes": self.scenes_played,
                "already_in_stash": self.already_in_stash, "resume_points": self.resume_set,
                "skipped": dict(self.skipped)}

    def text(self) -> str:
        skipped = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.skipped.items() if n) or "none"
        return (f"Watch history imported: {self.plays_added} plays added to {self.scenes_played} scenes, "
                f"{self.resume_set} resume points set, {self.already_in_stash} plays already in Stash "
                f"({self.entries} history entries read; skipped: {skipped})")


class ImportBusy(Exception):
    """Another process is importing the watch history right now."""


def import_history(config, paths, server, store, stash, now: Optional[Callable[[], float]] = None) -> Summary:
    """Run one import; raises PlexSyncError subclasses (Plex/Stash down) with nothing saved."""
    lock = FileLock(paths.history_lock)
    if not lock.acquire():
        raise ImportBusy("another watch-history import is running")
    try:
        state = HistoryState(paths.history_state)
        summary = Summary()
        plays = _read_plays(config, server, state, summary, (now or time.time)())
        resume_now = plex_side.resume_points(server)
        resume = {rk: off for rk, off in resume_now.items() if state.resume.get(rk) != off}
        # A finished item leaves Continue Watching and gets a play: its resume point is gone.
        resume.update({rk: 0 for rk in state.resume if rk not in resume_now and rk in plays})
        links = _links(set(plays) | set(resume), state, store, stash, config.path_mappings)
        _write(stash, plays, resume, links, state, summary)
        state.resume = resume_now
        state.save()
        log.info("[PlexSync] %s", summary.text())
        return summary
    finally:
        lock.release()


# -- Plex side -------------------------------------------------------------------

def _read_plays(config, server, state: HistoryState, summary: Summary, now: float) -> Dict[int, Set[int]]:
    """ratingKey -> play times of the chosen accounts; moves the watermark in ``state``
    (saved by the caller only once Stash took the writes)."""
    wanted, known = _accounts(config, server)
    ask_for = next(iter(wanted)) if wanted is not None and len(wanted) == 1 else None
    since = state.watermark
    top, edge = since or 0, set(state.edge) if since else set()
    plays: Dict[int, Set[int]] = {}
    for page in plex_side.history_pages(server, since, account_id=ask_for):
        for play in page:
            who = (play.rating_key or 0, play.account_id or 0)
            if since is not None and play.viewed_at == since and who in state.edge:
                continue  # the watermark's own second, read by the last run already
            summary.entries += 1
            reason = _skip_reason(play, wanted, known, now)
            if reason != "bad_time":
                if play.viewed_at > top:
                    top, edge = play.viewed_at, set()
                if play.viewed_at == top:
                    edge.add(who)
            if reason == "other_account":
                continue
            if reason:
                summary.skipped[reason] += 1
                continue
            plays.setdefault(play.rating_key, set()).add(play.viewed_at)
    state.watermark, state.edge = (top or None), edge
    return plays


def _skip_reason(play, wanted: Optional[Set[int]], known: Set[int], now: float) -> Optional[str]:
    if play.viewed_at is None or play.viewed_at <= 0 or play.viewed_at > now + defaults.HISTORY_FUTURE_SLACK:
        return "bad_time"
    if play.account_id not in known:
        return "unknown_account"
    if wanted is not None and play.account_id not in wanted:
        return "other_account"
    if play.rating_key is None:
        return "deleted"
    return None


def _accounts(config, server) -> Tuple[Optional[Set[int]], Set[int]]:
    """(the account ids to import, None for all; every id the server knows)."""
    choice = [n.strip() for n in (config.history_accounts or "").split(",") if n.strip()]
    if not choice:
        return {OWNER_ID}, {OWNER_ID}
    names = plex_side.accounts(server)
    known = set(names) | {OWNER_ID}
    if any(n.casefold() == "all" for n in choice):
        return None, known
    by_name = {name.casefold(): aid for aid, name in names.items() if name}
    wanted = {by_name[n.casefold()] for n in choice if n.casefold() in by_name}
    unknown = [n for n in choice if n.casefold() not in by_name]
    if unknown:
        log.warning("[PlexSync] history_accounts: Plex has no account named %s", ", ".join(unknown))
    return wanted, known


# -- ratingKey -> scene ------------------------------------------------------------

def _links(rating_keys: Iterable[int], state: HistoryState, store, stash, mappings) -> Dict[int, int]:
    """ratingKey -> Stash scene id for the items PlexSync matched (by file path)."""
    links = {rk: state.links[rk] for rk in rating_keys if rk in state.links}
    parts = {rk: store.parts(rk) for rk in rating_keys if rk not in links}
    parts = {rk: p for rk, p in parts.items() if p}
    if parts:
        found = _find_scenes(parts, stash, mappings)
        links.update(found)
        state.links.update(found)
    return links


def _find_scenes(parts: Dict[int, List[Tuple[str, str]]], stash, mappings) -> Dict[int, int]:
    """One pass over Stash's scene files: the full path first, else a unique file name."""
    by_path: Dict[str, Set[int]] = {}
    by_base: Dict[str, Set[int]] = {}
    for rk, rows in parts.items():
        for path, base in rows:
            by_path.setdefault(path, set()).add(rk)
            by_base.setdefault(base, set()).add(rk)
    path_hits: Dict[int, Set[int]] = {}
    base_hits: Dict[int, Set[int]] = {}
    for scene_id, files in stash_side.scene_files(stash):
        for file in files:
            for rk in by_path.get(path_key(map_path(file, mappings)), ()):
                path_hits.setdefault(rk, set()).add(scene_id)
            for rk in by_base.get(basename_key(file), ()):
                base_hits.setdefault(rk, set()).add(scene_id)
    out = {}
    for rk in parts:
        hits = path_hits.get(rk) or base_hits.get(rk) or set()
        if len(hits) == 1:
            out[rk] = next(iter(hits))
    return out


# -- Stash side --------------------------------------------------------------------

def _write(stash, plays, resume, links, state: HistoryState, summary: Summary) -> None:
    per_scene: Dict[int, Set[int]] = {}
    for rk, times in plays.items():
        if rk in links:
            per_scene.setdefault(links[rk], set()).update(times)
        else:
            summary.skipped["unmatched"] += len(times)
    current = stash_side.activity(stash, set(per_scene) | {links[rk] for rk in resume if rk in links})
    for rk, sid in list(links.items()):
        if sid not in current:  # the scene was deleted in Stash
            state.links.pop(rk, None)
            summary.skipped["deleted"] += len(plays.get(rk, ()))
    for sid, times in sorted(per_scene.items()):
        if sid not in current:
            continue
        new = sorted(times - current[sid][0])
        summary.already_in_stash += len(times) - len(new)
        if new:
            stash_side.add_plays(stash, sid, new)
            summary.plays_added += len(new)
            summary.scenes_played += 1
    for rk, offset in sorted(resume.items()):
        sid = links.get(rk)
        if sid in current and abs(current[sid][1] - offset / 1000.0) > 0.5:
            stash_side.save_resume(stash, sid, offset / 1000.0)
            summary.resume_set += 1
