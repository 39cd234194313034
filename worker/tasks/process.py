"""Process Queue and Retry Failed Jobs: drain the queue in the foreground."""

import logging
from typing import Optional, Tuple

from common import log as plog
from worker.drainer import Drainer, left_queued
from worker.launch import ensure_worker
from worker.processor import BatchResult

log = logging.getLogger("plexsync")


def process_queue(ctx, paths, conn):
    stats = ctx.queue.stats()
    # Rows left in progress by a killed drainer (a cancelled task) are resumed
    # by whoever takes the drain lock next: they are work too.
    todo = stats["ready"] + stats["in_progress"]
    if not todo:
        msg = f"Nothing to process: 0 due jobs, {stats['waiting_retry']} waiting to retry"
        if stats["waiting_retry"]:
            ensure_worker(paths, conn)
        log.info("[PlexSync] %s", msg)
        return msg, None
    result, error = drain(ctx, expected=todo, progress_from=0.0)
    counts = result.counts
    msg = (f"Queue processed: {counts.get('synced', 0)} synced, {counts.get('unchanged', 0)} unchanged, "
           f"{counts.get('not_found', 0)} not found, {counts.get('failed', 0)} failed")
    msg += not_in_library_note(counts)
    msg += waiting_note(ctx, paths, conn)
    log.info("[PlexSync] %s", msg)
    plog.progress(1.0)
    return msg, error


def retry_dlq(ctx, paths, conn):
    moved = ctx.dlq.requeue(ctx.queue)
    log.info("[PlexSync] Moved %d dead-letter entries back to the queue", moved)
    if not moved:
        return "Dead-letter queue is empty", None
    out, err = process_queue(ctx, paths, conn)
    return f"Requeued {moved}. {out}", err


def not_in_library_note(counts) -> str:
    n = counts.get("not_in_library", 0)
    return f", {n} not in any Plex library" if n else ""


def waiting_note(ctx, paths, conn) -> str:
    """Jobs the drain left queued: say so, and leave a background worker to run them."""
    stats = ctx.queue.stats()
    waiting = left_queued(stats["waiting_retry"], stats["ready"])
    if not waiting:
        return ""
    ensure_worker(paths, conn)
    return f" ({waiting} waiting to retry)"


def drain(ctx, expected: int, progress_from: float, drainer: Optional[Drainer] = None
          ) -> Tuple[BatchResult, Optional[str]]:
    """Drain in the foreground with progress; returns (BatchResult, error message or None)."""
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
