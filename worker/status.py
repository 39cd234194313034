"""The status report: queue, dead-letter queue, breaker, last sync, worker.

Shared by the Queue Status task and ``process_queue.py --stats-only``; it
needs neither Plex nor valid settings.
"""

from datetime import datetime
from typing import Any, Dict, Optional

from common.state import SyncTimestamps
from sync_queue.dlq import DeadLetterQueue
from sync_queue.queue import open_queue
from worker.breaker import CircuitBreaker
from worker.launch import worker_running


def status_report(paths) -> Dict[str, Any]:
    """Queue/DLQ/breaker figures."""
    queue = open_queue(paths)
    try:
        stats = queue.stats()
    finally:
        queue.close()
    dlq = DeadLetterQueue(paths.dlq_db)
    breaker = CircuitBreaker(paths.queue_db).status()
    return {
        "pending": stats["ready"],
        "waiting_retry": stats["waiting_retry"],
        "in_progress": stats["in_progress"],
        "next_retry_at": stats["next_retry_at"],
        "dlq": dlq.count(),
        "dlq_top_errors": dlq.top_errors(),
        "circuit_breaker": breaker["state_effective"],
        "circuit_retry_at": breaker["retry_at"],
        "last_success": SyncTimestamps(paths.timestamps).last_sync_time(),
        "worker_running": worker_running(paths),
        "data_dir": str(paths.root),
    }


def _when(ts: Optional[float]) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "never"


def format_status(report: Dict[str, Any]) -> str:
    top = ", ".join(f"{e['error_type']} ({e['count']})" for e in report["dlq_top_errors"]) or "none"
    waiting = f"{report['waiting_retry']} waiting to retry"
    if report["next_retry_at"]:
        waiting += f" (next at {_when(report['next_retry_at'])})"
    breaker = report["circuit_breaker"]
    if report["circuit_retry_at"] and breaker == "open":
        breaker += f" (Plex paused until {_when(report['circuit_retry_at'])})"
    return (f"Queue: {report['pending']} pending, {waiting}, "
            f"{report['in_progress']} in progress; DLQ: {report['dlq']} (top errors: {top}); "
            f"circuit breaker: {breaker}; last successful sync: {_when(report['last_success'])}; "
            f"background worker: {'running' if report['worker_running'] else 'not running'}")
