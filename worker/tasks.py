"""Stash tasks (the Tasks page), run in the foreground in Stash's job queue.

Logs and progress go to stderr for Stash; the returned output is the
one-line summary. When Stash cancels a task it kills this process: jobs
are queued before they are processed and acked only after Plex confirmed,
so the next drainer picks up where this one stopped.
"""

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Optional, Tuple

from common import log as plog
from common.errors import ConfigError, InvalidSceneData, StashUnavailable
from history.run import import_task
from sync_queue.queue import make_job
from validation.scene import scene_from_stash

log = logging.getLogger("plexsync")

PAGE_SIZE = 250  # scenes per findScenes request: bounded, never per_page -1
RECENT_HOURS = 24
TZ_SLACK_HOURS = 14  # the largest UTC offset of any time zone
LISTING_SHARE = 0.1  # of the progress bar, for listing scenes; the rest is syncing


def run_task(payload: Dict[str, Any], paths) -> Tuple[Any, Optional[str]]:
    from worker.context import build_context, read_config

    args = payload.get("args") or {}
    mode = str(args.get("mode") or "")
    handler = TASKS.get(mode)
    if handler is None:
        log.error("[PlexSync] Unknown task mode %r (expected one of: %s)", mode[:40], ", ".join(TASKS))
        return None, f"unknown mode {mode[:40]!r}"
    conn = payload.get("server_connection") or {}
    if mode in OFFLINE_TASKS:
        return handler(None, paths, conn)
    try:
        config = read_config(conn, paths)
    except ConfigError as exc:
        log.error("[PlexSync] Configuration error: %s", exc)
        return None, f"Configuration error: {exc}"
    except StashUnavailable as exc:
        log.error("[PlexSync] Cannot read the plugin settings from Stash: %s", exc)
        return None, str(exc)
    if not config.enabled:
        log.info("[PlexSync] Plugin is disabled via configuration")
        return "disabled", None
    ctx = build_context(config, paths, conn)
    try:
        return handler(ctx, paths, conn)
    finally:
        ctx.close()


# -- syncing ------------------------------------------------------------------

def sync_all(ctx, paths, conn, updated_after: Optional[str] = None, label: str = "all",
             cutoff: Optional[datetime] = None) -> Tuple[Any, Optional[str]]:
    """Page through Stash, queue scenes changed since their last sync, then drain.

    Memory stays flat: one page of scenes at a time; the jobs wait on disk.
    ``cutoff`` keeps only scenes updated after it (Sync Recent).
    """
    from worker.drainer import Drainer

    drainer = Drainer(ctx, foreground=True)
    # Claim the queue before listing: a background worker yields at once, so
    # the jobs queued below are synced (and counted) by this task, not by it.
    drainer.task_lock.acquire()
    try:
        return _sync_listed(ctx, paths, conn, drainer, updated_after, label, cutoff)
    finally:
        drainer.task_lock.release()


def _sync_listed(ctx, paths, conn, drainer, updated_after, label, cutoff) -> Tuple[Any, Optional[str]]:
    queued = unchanged = invalid = no_file = checked = 0
    page, seen, total = 1, 0, None
    while True:
        try:
            total, scenes = ctx.stash.scene_page(page, PAGE_SIZE, updated_after)
        except StashUnavailable as exc:
            log.error("[PlexSync] Stash unavailable while listing scenes: %s", exc)
            return None, str(exc)
        jobs = []
        for raw in scenes:
            seen += 1
            if cutoff is not None and not _updated_after(raw.get("updated_at"), cutoff):
                continue
            checked += 1
            try:
                scene = scene_from_stash(raw, strict=ctx.config.strict_mode)
            except InvalidSceneData as exc:
                raw_id = str(raw.get("id", ""))
                ctx.dlq.add(make_job(int(raw_id) if raw_id.isdigit() else 0, "sync_all", {"source": "task"}), exc)
                invalid += 1
                continue
            if ctx.timestamps.is_current(scene.id, scene.updated_at):
                unchanged += 1
                continue
            if not scene.files:
                # Nothing to match in Plex; queuing it would add a DLQ row on every run.
                no_file += 1
                continue
            jobs.append(make_job(scene.id, "sync_all", {"source": "task", "snapshot": scene.model_dump()}))
        queued += ctx.queue.put_many(jobs)
        plog.progress(LISTING_SHARE * seen / max(total or 1, 1))
        if not scenes or seen >= (total or 0):
            break
        page += 1
    log.info("[PlexSync] Sync %s: %d scenes checked, %d queued, %d unchanged since their last sync%s",
             label, checked, queued, unchanged, f", {no_file} without a file skipped" if no_file else "")
    result, error = _drain(ctx, expected=queued, progress_from=LISTING_SHARE, drainer=drainer)
    counts = result.counts
    summary = (f"Sync complete: {counts.get('synced', 0)} synced, {unchanged + counts.get('unchanged', 0)} unchanged, "
               f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0) + invalid} failed")
    if no_file:
        summary += f", {no_file} without a file"
    summary += _waiting_note(ctx, paths, conn)
    log.info("[PlexSync] %s", summary)
    plog.progress(1.0)
    return summary, error


def sync_recent(ctx, paths, conn):
    cutoff = datetime.now(timezone.utc) - timedelta(hours=RECENT_HOURS)
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


def process_queue(ctx, paths, conn):
    stats = ctx.queue.stats()
    # Rows left in progress by a killed drainer (a cancelled task) are resumed
    # by whoever takes the drain lock next: they are work too.
    todo = stats["ready"] + stats["in_progress"]
    if not todo:
        msg = f"Nothing to process: 0 due jobs, {stats['waiting_retry']} waiting to retry"
        if stats["waiting_retry"]:
            _start_worker_for_retries(paths, conn)
        log.info("[PlexSync] %s", msg)
        return msg, None
    result, error = _drain(ctx, expected=todo, progress_from=0.0)
    counts = result.counts
    msg = (f"Queue processed: {counts.get('synced', 0)} synced, {counts.get('unchanged', 0)} unchanged, "
           f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0)} failed")
    msg += _waiting_note(ctx, paths, conn)
    log.info("[PlexSync] %s", msg)
    plog.progress(1.0)
    return msg, error


def _waiting_note(ctx, paths, conn) -> str:
    """Retries not due yet: say so, and leave a background worker to run them."""
    waiting = ctx.queue.stats()["waiting_retry"]
    if not waiting:
        return ""
    _start_worker_for_retries(paths, conn)
    return f" ({waiting} waiting to retry)"


def retry_dlq(ctx, paths, conn):
    moved = ctx.dlq.requeue(ctx.queue)
    log.info("[PlexSync] Moved %d dead-letter entries back to the queue", moved)
    if not moved:
        return "Dead-letter queue is empty", None
    out, err = process_queue(ctx, paths, conn)
    return f"Requeued {moved}. {out}", err


def _drain(ctx, expected: int, progress_from: float, drainer=None):
    """Drain in the foreground; returns (BatchResult, error message or None)."""
    from worker.drainer import Drainer

    drainer = drainer or Drainer(ctx, foreground=True)
    done = [0]

    def on_batch(result) -> None:
        done[0] += sum(result.counts.values())
        if expected:
            plog.progress(progress_from + (1 - progress_from) * min(1.0, done[0] / expected))

    try:
        return drainer.drain_foreground(on_batch), None
    except BlockingIOError as exc:
        log.error("[PlexSync] Cannot process the queue now: %s; the jobs stay queued", exc)
        return drainer.total, f"Cannot process the queue now: {exc}"


def _start_worker_for_retries(paths, conn) -> None:
    from worker.launch import ensure_worker

    ensure_worker(paths, conn)


# -- status and dead-letter management (no Plex needed) -------------------------

def status_report(paths) -> Dict[str, Any]:
    """Queue/DLQ/breaker figures; shared by the Queue Status task and the CLI."""
    from sync_queue.dlq import DeadLetterQueue
    from sync_queue.queue import open_queue
    from sync_queue.state import SyncTimestamps
    from worker.breaker import CircuitBreaker
    from worker.launch import worker_running

    queue = open_queue(paths)
    try:
        stats = queue.stats()
    finally:
        queue.close()
    dlq = DeadLetterQueue(paths.dlq_db)
    breaker = CircuitBreaker(paths.queue_db).status()
    last = SyncTimestamps(paths.timestamps).last_sync_time()
    return {
        "pending": stats["ready"],
        "waiting_retry": stats["waiting_retry"],
        "in_progress": stats["in_progress"],
        "next_retry_at": stats["next_retry_at"],
        "dlq": dlq.count(),
        "dlq_top_errors": dlq.top_errors(),
        "circuit_breaker": breaker["state_effective"],
        "circuit_retry_at": breaker["retry_at"],
        "last_success": last,
        "worker_running": worker_running(paths),
        "data_dir": str(paths.root),
    }


def format_status(report: Dict[str, Any]) -> str:
    def when(ts: Optional[float]) -> str:
        return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "never"

    top = ", ".join(f"{e['error_type']} ({e['count']})" for e in report["dlq_top_errors"]) or "none"
    waiting = f"{report['waiting_retry']} waiting to retry"
    if report["next_retry_at"]:
        waiting += f" (next at {when(report['next_retry_at'])})"
    breaker = report["circuit_breaker"]
    if report["circuit_retry_at"] and breaker == "open":
        breaker += f" (Plex paused until {when(report['circuit_retry_at'])})"
    return (f"Queue: {report['pending']} pending, {waiting}, "
            f"{report['in_progress']} in progress; DLQ: {report['dlq']} (top errors: {top}); "
            f"circuit breaker: {breaker}; last successful sync: {when(report['last_success'])}; "
            f"background worker: {'running' if report['worker_running'] else 'not running'}")


def queue_status(_ctx, paths, _conn):
    paths.ensure()
    text = format_status(status_report(paths))
    log.info("[PlexSync] %s", text)
    return text, None


def clear_dlq(_ctx, paths, _conn):
    from sync_queue.dlq import DeadLetterQueue

    paths.ensure()
    n = DeadLetterQueue(paths.dlq_db).clear()
    log.info("[PlexSync] Cleared %d dead-letter entries", n)
    return f"Cleared {n} dead-letter entries", None


def purge_dlq(_ctx, paths, conn):
    from sync_queue.dlq import DeadLetterQueue

    paths.ensure()
    days = _retention_days(conn, paths)
    n = DeadLetterQueue(paths.dlq_db).purge_older_than(days)
    log.info("[PlexSync] Purged %d dead-letter entries older than %d days", n, days)
    return f"Purged {n} dead-letter entries older than {days} days", None


def _retention_days(conn, paths) -> int:
    """The configured DLQ retention; the default when the settings are unusable
    (purging needs neither Plex nor valid Plex settings)."""
    from validation.config import PlexSyncConfig
    from worker.context import read_config

    try:
        return read_config(conn, paths).dlq_retention_days
    except (ConfigError, StashUnavailable) as exc:
        days = PlexSyncConfig.model_fields["dlq_retention_days"].default
        log.warning("[PlexSync] Using the default DLQ retention (%d days): %s", days, exc)
        return days


TASKS: Dict[str, Callable] = {
    "sync_all": sync_all,
    "sync_recent": sync_recent,
    "process_queue": process_queue,
    "queue_status": queue_status,
    "retry_dlq": retry_dlq,
    "clear_dlq": clear_dlq,
    "purge_dlq": purge_dlq,
    "import_watch_history": import_task,  # Plex -> Stash plays and resume points (history/)
}
# Need no Plex connection (and so no valid Plex settings).
OFFLINE_TASKS = {"queue_status", "clear_dlq", "purge_dlq"}

__all__ = ["run_task", "status_report", "format_status", "TASKS"]
