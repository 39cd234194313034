"""Sync All and Sync Recent: list Stash, queue what changed, then drain."""

import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional, Tuple

from common import defaults
from common import log as plog
from common.errors import PlexSyncError, SceneHasNoFile, StashUnavailable
from sync_queue.queue import make_job
from validation.scene import scene_from_stash
from worker import policy
from worker.drainer import Drainer
from worker.policy import Action
from worker.tasks.process import drain, not_in_library_note, waiting_note

log = logging.getLogger("plexsync")

TZ_SLACK_HOURS = 14  # the largest UTC offset of any time zone
LISTING_SHARE = 0.1  # of the progress bar, for listing scenes; the rest is syncing


def sync_all(ctx, paths, conn, updated_after: Optional[str] = None, label: str = "all",
             cutoff: Optional[datetime] = None) -> Tuple[Any, Optional[str]]:
    """Page through Stash, queue scenes changed since their last sync, then drain.

    Memory stays flat: one page of scenes at a time; the jobs wait on disk.
    ``cutoff`` keeps only scenes updated after it (Sync Recent).
    """
    drainer = Drainer(ctx, foreground=True)
    # Claim the queue before listing: a background worker yields at once, so
    # the jobs queued below are synced (and counted) by this task, not by it.
    with drainer.claimed():
        try:
            listed = _queue_changed(ctx, updated_after, cutoff)
        except StashUnavailable as exc:
            log.error("[PlexSync] Stash unavailable while listing scenes: %s", exc)
            return None, str(exc)
        no_file = listed["no_file"]
        log.info("[PlexSync] Sync %s: %d scenes checked, %d queued, %d unchanged since their last sync%s",
                 label, listed["checked"], listed["queued"], listed["unchanged"],
                 f", {no_file} without a file skipped" if no_file else "")
        result, error = drain(ctx, expected=listed["queued"], progress_from=LISTING_SHARE, drainer=drainer)
    counts = result.counts
    summary = (f"Sync complete: {counts.get('synced', 0)} synced, "
               f"{listed['unchanged'] + counts.get('unchanged', 0)} unchanged, "
               f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0) + listed['failed']} failed")
    if no_file:
        summary += f", {no_file} without a file"
    summary += not_in_library_note(counts)
    summary += waiting_note(ctx, paths, conn)
    log.info("[PlexSync] %s", summary)
    plog.progress(1.0)
    return summary, error


def _queue_changed(ctx, updated_after: Optional[str], cutoff: Optional[datetime]) -> Counter:
    """List every page; queue the scenes that need a sync. Returns the counts."""
    counts: Counter = Counter()
    page, seen = 1, 0
    while True:
        total, scenes = ctx.stash.scene_page(page, defaults.STASH_PAGE_SIZE, updated_after)
        jobs = []
        for raw in scenes:
            seen += 1
            if cutoff is not None and not _updated_after(raw.get("updated_at"), cutoff):
                continue
            counts["checked"] += 1
            job = _job_for(ctx, raw, counts)
            if job is not None:
                jobs.append(job)
        counts["queued"] += ctx.queue.put_many(jobs)
        plog.progress(LISTING_SHARE * seen / max(total or 1, 1))
        if not scenes or seen >= (total or 0):
            return counts
        page += 1


def _job_for(ctx, raw: Dict[str, Any], counts: Counter) -> Optional[Dict[str, Any]]:
    """The job for one listed scene, or None (unchanged, or settled by the policy table)."""
    try:
        scene = scene_from_stash(raw, strict=ctx.config.strict_mode)
        if ctx.timestamps.is_current(scene.id, scene.updated_at):
            counts["unchanged"] += 1
            return None
        if not scene.files:
            raise SceneHasNoFile(f"scene {scene.id} has no file to match in Plex")
    except PlexSyncError as exc:
        _settle_listed(ctx, raw, exc, counts)
        return None
    return make_job(scene.id, "sync_all", {"source": "task", "snapshot": scene.model_dump(),
                                                "read_at": ctx.queue.clock()})


def _settle_listed(ctx, raw: Dict[str, Any], error: PlexSyncError, counts: Counter) -> None:
    rule = policy.listed_rule_for(error)
    if rule.action is Action.SKIP:
        counts[rule.counts_as] += 1
        return
    if rule.action is not Action.DEAD_LETTER:
        raise ValueError(f"{rule} does not apply to a listed scene")
    counts["failed"] += 1
    raw_id = str(raw.get("id", ""))
    if not raw_id.isdigit():  # no scene to requeue later: the log is the record
        log.error("[PlexSync] A listed scene cannot be synced: %s: %s", type(error).__name__, error)
        return
    ctx.dlq.add(make_job(int(raw_id), "sync_all", {"source": "task"}), error)
    log.error("[PlexSync Worker] Scene %s moved to the dead-letter queue: %s: %s",
              raw_id, type(error).__name__, error)


def sync_recent(ctx, paths, conn):
    cutoff = datetime.now(timezone.utc) - timedelta(hours=defaults.RECENT_HOURS)
    # Stash compares updated_at as text in its own time zone, so a UTC bound
    # is off by the server's UTC offset: ask for a window wider by the largest
    # offset there is, then keep exactly the last RECENT_HOURS here.
    wider = (cutoff - timedelta(hours=TZ_SLACK_HOURS)).isoformat(timespec="seconds")
    return sync_all(ctx, paths, conn, updated_after=wider, label="recent", cutoff=cutoff)


def _updated_after(value: Any, cutoff: datetime) -> bool:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return True  # cannot tell: sync it
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when > cutoff
