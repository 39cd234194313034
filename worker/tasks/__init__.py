"""Stash tasks (the Tasks page), run in the foreground in Stash's job queue.

One module per kind of task: ``sync`` (Sync All, Sync Recent), ``process``
(Process Queue, Retry Failed Jobs) and ``offline`` (Queue Status and the
dead-letter tasks, which need neither Plex nor valid settings).

Logs and progress go to stderr for Stash; the returned output is the
one-line summary. When Stash cancels a task it kills this process: jobs
are queued before they are processed and acked only after Plex confirmed,
so the next drainer picks up where this one stopped.
"""

import logging
from typing import Any, Callable, Dict, Optional, Tuple

from common.errors import ConfigError, StashUnavailable
from common.state import StashSession
from history.run import import_task
from worker import settings as plugin_settings  # the one configuration entry point
from worker.context import build_context
from worker.reshape import queue_if_changed
from worker.tasks.offline import clear_dlq, purge_dlq, queue_status
from worker.tasks.process import process_queue, retry_dlq
from worker.tasks.repair import force_resync, repair_drift
from worker.tasks.sync import sync_all, sync_recent

log = logging.getLogger("plexsync")

TASKS: Dict[str, Callable] = {
    "sync_all": sync_all,
    "sync_recent": sync_recent,
    "process_queue": process_queue,
    "queue_status": queue_status,
    "retry_dlq": retry_dlq,
    "clear_dlq": clear_dlq,
    "purge_dlq": purge_dlq,
    "import_watch_history": import_task,  # Plex -> Stash plays and resume points (history/)
    "repair_drift": repair_drift,  # repair: Plex items that drifted from what PlexSync wrote
    "force_resync": force_resync,  # repair: every scene, ignoring the timestamp shortcut
}
# Need no Plex connection (and so no valid Plex settings).
OFFLINE_TASKS = {"queue_status", "clear_dlq", "purge_dlq"}
# Drain the queue: they also queue every scene when settings that shape what is written changed (worker.reshape).
DRAINING_TASKS = {"sync_all", "sync_recent", "process_queue", "retry_dlq", "repair_drift", "force_resync"}


def run_task(payload: Dict[str, Any], paths) -> Tuple[Any, Optional[str]]:
    args = payload.get("args") or {}
    mode = str(args.get("mode") or "")
    handler = TASKS.get(mode)
    if handler is None:
        log.error("[PlexSync] Unknown task mode %r (expected one of: %s)", mode[:40], ", ".join(TASKS))
        return None, f"unknown mode {mode[:40]!r}"
    conn = payload.get("server_connection") or {}
    if mode in OFFLINE_TASKS:  # they only read, or delete dead-letter entries: no file written
        return handler(None, paths, conn)
    StashSession(paths.ensure().stash_session).offer(conn)  # a running worker takes up a renewed session
    try:
        config = plugin_settings.load(conn, paths)
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
        if mode in DRAINING_TASKS:
            queue_if_changed(ctx)  # drained with the task's own jobs
        return handler(ctx, paths, conn)
    finally:
        ctx.close()


__all__ = ["run_task", "TASKS", "OFFLINE_TASKS"]
