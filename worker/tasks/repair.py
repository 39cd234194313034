"""Repair Plex Drift and Force Full Re-sync.

Repair lists every chosen library once (one request per 500 items) and
re-syncs, with the job's ``force`` flag, only the scenes whose items Plex
changed since PlexSync last saw them (a hand edit, an agent refresh, a new
poster), that vanished (deleted, or re-added with a new ratingKey after a
library rebuild), or that PlexSync wrote since the last repair. The sync
itself decides what to write, so ``preserve_plex_edits`` applies as always.
"""

import logging
from collections import Counter
from typing import Dict, Iterable, List, Set, Tuple

from common import log as plog
from common.errors import PlexNotFound, PlexSyncError, StashUnavailable
from plex.client import plex_errors
from plex.drift import Drift, find_drift, listing_pages
from sync_queue.queue import make_job
from worker.drainer import Drainer
from worker.reshape import queue_every_scene
from worker.tasks.process import drain, waiting_note

log = logging.getLogger("plexsync")

LISTING_SHARE = 0.2  # of the progress bar, for the listing; the rest is re-syncing
FETCH_CHUNK = 50
KINDS = ("changed", "reset", "poster", "vanished", "readded", "unverified")
KIND_LABELS = {"changed": "changed in Plex", "reset": "reset by an agent refresh", "poster": "poster replaced",
               "vanished": "vanished from Plex",
               "readded": "re-added with a new ratingKey", "unverified": "checked for the first time"}


def repair_drift(ctx, paths, conn):
    """List Plex, re-sync what drifted, remember what Plex holds now."""
    drainer = Drainer(ctx, foreground=True)
    with drainer.claimed():
        try:
            by_scene, drift = _scan(ctx.plex)
        except PlexSyncError as exc:
            log.error("[PlexSync] Repair: cannot list Plex: %s", exc)
            return None, str(exc)
        kinds = drift.scenes(by_scene)
        _mark_agent_resets(ctx.plex, kinds, by_scene, drift.changed)
        _mark_replaced_posters(ctx.plex, kinds, by_scene, drift.changed)
        # Taken as seen now: a write by the re-sync drops the row, which tells what it fixed.
        ctx.plex.written.set_seen({rk: drift.listed[rk] for sid in kinds for rk in by_scene[sid]
                                   if rk in drift.listed})
        ctx.queue.put_many(make_job(sid, "repair", {"source": "task", "force": True}) for sid in kinds)
        plog.progress(LISTING_SHARE)
        result, error = drain(ctx, expected=len(kinds), progress_from=LISTING_SHARE, drainer=drainer)
        found, fixed = _settle_seen(ctx, kinds, by_scene)
    summary = _summary(drift, found, fixed, result.counts) + waiting_note(ctx, paths, conn)
    log.info("[PlexSync] %s", summary)
    plog.progress(1.0)
    return summary, error


def _scan(plex) -> Tuple[Dict[int, List[int]], Drift]:
    by_scene = plex.store.all_scene_items()
    synced = {rk for items in by_scene.values() for rk in items}
    sections = [int(s.key) for s in plex.matcher.sections()]
    drift = find_drift(listing_pages(plex.server, sections), synced, plex.written.seen())
    log.info("[PlexSync] Repair: %d synced items listed in %d pages: %d changed in Plex, %d vanished, "
             "%d not checked since PlexSync wrote them", len(drift.listed), drift.pages, len(drift.changed),
             len(drift.vanished), len(drift.unverified))
    return by_scene, drift


def _settle_seen(ctx, kinds: Dict[int, str], before: Dict[int, List[int]]) -> Tuple[Counter, Counter]:
    """Per kind: scenes found drifted and scenes whose re-sync wrote to Plex; re-record updatedAt."""
    plex = ctx.plex
    after = plex.store.all_scene_items()
    seen = plex.written.seen()
    failed = {row["scene_id"] for row in ctx.queue.rows()} | _dead_lettered(ctx, kinds)
    found, fixed, fetch, stale = Counter(), Counter(), set(), set()
    for sid, kind in kinds.items():
        items = after.get(sid, [])
        if kind == "vanished" and items and set(items) != set(before[sid]):
            kind = "readded"
        found[kind] += 1
        if sid in failed:
            stale.update(before[sid])  # not repaired yet: look again next time
            continue
        written = [rk for rk in items if rk not in seen]
        fixed[kind] += bool(written) or kind == "readded"
        fetch.update(written)
    plex.written.unsee(stale)
    plex.written.set_seen(_updated_at(plex.server, fetch))
    return found, fixed


def _mark_agent_resets(plex, kinds: Dict[int, str], by_scene, changed: Set[int]) -> None:
    """Changed items where a field PlexSync wrote is unlocked now: an agent refresh may have reset it.

    PlexSync locks every field it writes, and an edit in Plex locks it too;
    only unlocking (then a refresh or a match) leaves it unlocked. One
    request per 50 changed items.
    """
    scenes = [sid for sid, kind in kinds.items() if kind == "changed"]
    keys = sorted({rk for sid in scenes for rk in by_scene[sid] if rk in changed})
    unlocked = set()
    for start in range(0, len(keys), FETCH_CHUNK):
        for el in _full_items(plex.server, keys[start:start + FETCH_CHUNK]):
            locked = {f.get("name") for f in el.iter("Field") if f.get("locked") == "1"}
            rk = int(el.get("ratingKey"))
            if any(name not in locked for name in plex.written.fields(rk)):
                unlocked.add(rk)
    for sid in scenes:
        if any(rk in unlocked for rk in by_scene[sid]):
            kinds[sid] = "reset"


def _full_items(server, keys: List[int]) -> list:
    """Full items (with their Field locks) in one request; [] when Plex has none of them."""
    try:
        with plex_errors("reading Plex items"):
            data = server.query(f"/library/metadata/{','.join(str(k) for k in keys)}?includeGuids=0")
    except PlexNotFound:
        return []  # gone since the listing: the re-sync matches them again
    return [el for el in data if el.get("ratingKey")] if data is not None else []


def _mark_replaced_posters(plex, kinds: Dict[int, str], by_scene, changed: Set[int]) -> None:
    """Changed items whose selected poster is no longer PlexSync's upload: one request each.

    Forgetting the upload makes the re-sync upload the cover again, unless
    ``preserve_plex_edits`` keeps a poster chosen in Plex (locked ``thumb``).
    """
    for sid in [sid for sid, kind in kinds.items() if kind in ("changed", "reset")]:
        for rk in by_scene[sid]:
            ours = plex.store.poster_sha1(rk) if rk in changed else None
            if ours and not _selected_is(plex.server, rk, ours):
                plex.store.set_poster_sha1(rk, "")  # no upload matches "": the next sync decides anew
                kinds[sid] = "poster"


def _selected_is(server, rating_key: int, sha1: str) -> bool:
    try:
        with plex_errors("reading an item's posters"):
            data = server.query(f"/library/metadata/{int(rating_key)}/posters")
    except PlexNotFound:
        return True  # gone since the listing: the re-sync matches it again
    selected = [el for el in data if el.get("selected") == "1"] if data is not None else []
    # PMS names an uploaded image upload://posters/<sha1 of its bytes>
    return not selected or str(selected[0].get("ratingKey")).endswith(sha1)


def _dead_lettered(ctx, scene_ids: Iterable[int]) -> Set[int]:
    return {sid for sid in scene_ids if ctx.dlq.list(limit=1, scene_id=sid)}


def _updated_at(server, rating_keys: Iterable[int]) -> Dict[int, int]:
    """Plex's updatedAt of each item after PlexSync's write, 50 items per request."""
    keys = sorted(set(rating_keys))
    out: Dict[int, int] = {}
    for start in range(0, len(keys), FETCH_CHUNK):
        for el in _full_items(server, keys[start:start + FETCH_CHUNK]):
            if el.get("updatedAt"):
                out[int(el.get("ratingKey"))] = int(el.get("updatedAt"))
    return out


def _summary(drift: Drift, found: Counter, fixed: Counter, counts: Counter) -> str:
    total = sum(found.values())
    head = (f"Repair complete: {len(drift.listed) + len(drift.vanished)} synced items checked, "
            f"{total} scenes re-synced, {sum(fixed.values())} fixed in Plex, "
            f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0)} failed")
    kinds = "; ".join(f"{KIND_LABELS[k]}: {found[k]} found, {fixed[k]} fixed" for k in KINDS if found[k])
    return f"{head}. {kinds}" if kinds else head


def force_resync(ctx, paths, conn):
    """Queue every scene with ``force`` (no timestamp shortcut), then drain."""
    drainer = Drainer(ctx, foreground=True)
    with drainer.claimed():
        try:
            queued = queue_every_scene(ctx, "sync_all",
                                       lambda seen, total: plog.progress(LISTING_SHARE * seen / max(total, 1)))
        except StashUnavailable as exc:
            log.error("[PlexSync] Stash unavailable while listing scenes: %s", exc)
            return None, str(exc)
        log.info("[PlexSync] Force full re-sync: %d scenes queued", queued)
        result, error = drain(ctx, expected=queued, progress_from=LISTING_SHARE, drainer=drainer)
    counts = result.counts
    summary = (f"Full re-sync complete: {counts.get('synced', 0)} synced, {counts.get('unchanged', 0)} unchanged, "
               f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0)} failed")
    summary += waiting_note(ctx, paths, conn)
    log.info("[PlexSync] %s", summary)
    plog.progress(1.0)
    return summary, error
