"""Stash tasks (the Tasks page), run in the foreground in Stash's job queue.

Logs and progress go to stderr for Stash; the returned output is the
one-line summary. When Stash cancels a task it kills this process: jobs
are queued before they are processed and acked only after Plex confirmed,
so the next drainer picks up where this one stopped.
"""

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Optional, Tuple

from common import log as plog
from common.errors import ConfigError, InvalidSceneData, StashUnavailable
from sync_queue.queue import make_job
from validation.scene import scene_from_stash

log = logging.getLogger("plexsync")

PAGE_SIZE = 250
RECENT_HOURS = 24


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

def sync_all(ctx, paths, conn, updated_after: Optional[str] = None, label: str = "all") -> Tuple[Any, Optional[str]]:
    """Page through Stash, queue scenes changed since their last sync, then drain."""
    queued = unchanged = invalid = 0
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
            try:
                scene = scene_from_stash(raw, strict=ctx.config.strict_mode)
            except InvalidSceneData as exc:
                job = make_job(int(str(raw.get("id", 0)) or 0) if str(raw.get("id", "")).isdigit() else 0,
                               "sync_all", {"source": "task"})
                ctx.dlq.add(job, exc)
                invalid += 1
                continue
            if ctx.timestamps.is_current(scene.id, scene.updated_at):
                unchanged += 1
                continue
            jobs.append(make_job(scene.id, "sync_all", {"source": "task", "snapshot": scene.model_dump()}))
        queued += ctx.queue.put_many(jobs)
        plog.progress(0.1 * seen / max(total or 1, 1))
        if not scenes or seen >= (total or 0):
            break
        page += 1
    log.info("[PlexSync] Sync %s: %d scenes checked, %d queued, %d unchanged since their last sync",
             label, seen, queued, unchanged)
    result = _drain(ctx, expected=queued, progress_from=0.1)
    counts = result.counts
    summary = (f"Sync complete: {counts.get('synced', 0)} synced, {unchanged + counts.get('unchanged', 0)} unchanged, "
               f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0) + invalid} failed")
    waiting = ctx.queue.stats()["waiting_retry"]
    if waiting:
        summary += f" ({waiting} waiting to retry)"
        _start_worker_for_retries(paths, conn)
    log.info("[PlexSync] %s", summary)
    plog.progress(1.0)
    return summary, None


def sync_recent(ctx, paths, conn):
    since = (datetime.now(timezone.utc) - timedelta(hours=RECENT_HOURS)).isoformat(timespec="seconds")
    return sync_all(ctx, paths, conn, updated_after=since, label="recent")


def process_queue(ctx, paths, conn):
    stats = ctx.queue.stats()
    if not stats["ready"]:
        msg = f"Nothing to process: 0 due jobs, {stats['waiting_retry']} waiting to retry"
        log.info("[PlexSync] %s", msg)
        return msg, None
    result = _drain(ctx, expected=stats["ready"], progress_from=0.0)
    counts = result.counts
    msg = (f"Queue processed: {counts.get('synced', 0)} synced, {counts.get('unchanged', 0)} unchanged, "
           f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0)} failed")
    waiting = ctx.queue.stats()["waiting_retry"]
    if waiting:
        msg += f" ({waiting} waiting to retry)"
        _start_worker_for_retries(paths, conn)
    log.info("[PlexSync] %s", msg)
    return msg, None


def retry_dlq(ctx, paths, conn):
    moved = ctx.dlq.requeue(ctx.queue)
    log.info("[PlexSync] Moved %d dead-letter entries back to the queue", moved)
    if not moved:
        return "Dead-letter queue is empty", None
    out, err = process_queue(ctx, paths, conn)
    return f"Requeued {moved}. {out}", err


def _drain(ctx, expected: int, progress_from: float):
    from worker.drainer import Drainer

    drainer = Drainer(ctx, foreground=True)
    done = [0]

    def on_batch(result) -> None:
        done[0] += sum(result.counts.values())
        if expected:
            plog.progress(progress_from + (1 - progress_from) * min(1.0, done[0] / expected))

    try:
        return drainer.drain_foreground(on_batch)
    except BlockingIOError as exc:
        log.error("[PlexSync] %s", exc)
        return drainer.total


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
    return (f"Queue: {report['pending']} pending, {report['waiting_retry']} waiting to retry, "
            f"{report['in_progress']} in progress; DLQ: {report['dlq']} (top errors: {top}); "
            f"circuit breaker: {report['circuit_breaker']}; last successful sync: {when(report['last_success'])}; "
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


def purge_dlq(ctx, paths, _conn):
    from sync_queue.dlq import DeadLetterQueue

    days = ctx.config.dlq_retention_days
    n = DeadLetterQueue(paths.dlq_db).purge_older_than(days)
    log.info("[PlexSync] Purged %d dead-letter entries older than %d days", n, days)
    return f"Purged {n} dead-letter entries older than {days} days", None


TASKS: Dict[str, Callable] = {
    "sync_all": sync_all,
    "sync_recent": sync_recent,
    "process_queue": process_queue,
    "queue_status": queue_status,
    "retry_dlq": retry_dlq,
    "clear_dlq": clear_dlq,
    "purge_dlq": purge_dlq,
}
OFFLINE_TASKS = {"queue_status", "clear_dlq"}

__all__ = ["run_task", "status_report", "format_status", "TASKS", "time"]
