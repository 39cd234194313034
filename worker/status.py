"""The status report: queue, dead-letter queue, breaker, last sync, worker.

Shared by the Queue Status task and ``process_queue.py --stats-only``; it
needs neither Plex nor valid settings.
"""

import os
from datetime import datetime
from typing import Any, Dict, Optional

from common import pending
from common.state import SyncTimestamps
from sync_queue.dlq import DeadLetterQueue
from sync_queue.queue import open_queue
from worker.breaker import CircuitBreaker
from worker.launch import worker_running


NO_QUEUE = {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}


def status_report(paths) -> Dict[str, Any]:
    """Queue/DLQ/breaker figures. Creates no file: a file not there yet counts as empty."""
    queue_stats, breaker = dict(NO_QUEUE), {"state_effective": "closed", "retry_at": None}
    if os.path.exists(paths.queue_db):
        queue = open_queue(paths)
        try:
            queue_stats = queue.stats()
        finally:
            queue.close()
        breaker = CircuitBreaker(paths.queue_db).status()
    dlq = DeadLetterQueue(paths.dlq_db) if os.path.exists(paths.dlq_db) else None
    return {
        "pending": queue_stats["ready"],
        "kept_saves": pending.count(paths),  # saves the hook could not queue yet (common.pending)
        "waiting_retry": queue_stats["waiting_retry"],
        "in_progress": queue_stats["in_progress"],
        "next_retry_at": queue_stats["next_retry_at"],
        "dlq": dlq.count() if dlq else 0,
        "dlq_top_errors": dlq.top_errors() if dlq else [],
        "circuit_breaker": breaker["state_effective"],
        "circuit_retry_at": breaker["retry_at"],
        "last_success": SyncTimestamps(paths.timestamps).last_sync_time(),
        # A worker holds worker.lock, so without the file none runs.
        "worker_running": os.path.exists(paths.worker_lock) and worker_running(paths),
        "data_dir": str(paths.root),
        "worker_log": str(paths.worker_log),
    }


def _when(ts: Optional[float]) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "never"


def format_status(report: Dict[str, Any]) -> str:
    """A few readable lines: the queue, the DLQ, the breaker, the last sync, the worker and where things are."""
    top = ", ".join(f"{e['error_type']} ({e['count']})" for e in report["dlq_top_errors"]) or "none"
    waiting = f"{report['waiting_retry']} waiting to retry"
    if report["next_retry_at"]:
        waiting += f" (next at {_when(report['next_retry_at'])})"
    breaker = report["circuit_breaker"]
    if report["circuit_retry_at"] and breaker == "open":
        breaker += f" (Plex paused until {_when(report['circuit_retry_at'])})"
    kept = f" (+{report['kept_saves']} kept in pending/)" if report.get("kept_saves") else ""
    return "\n".join((
        f"Queue: {report['pending']} pending{kept}, {waiting}, {report['in_progress']} in progress",
        f"DLQ: {report['dlq']} (top errors: {top})",
        f"Circuit breaker: {breaker}",
        f"Last successful sync: {_when(report['last_success'])}",
        f"Background worker: {'running' if report['worker_running'] else 'not running'}",
        f"Data folder: {report['data_dir']}",
        f"Worker log: {report['worker_log']}",
    ))
