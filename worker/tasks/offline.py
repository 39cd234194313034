"""Tasks that need neither Plex nor valid settings: Queue Status and the dead-letter tasks."""

import logging

from validation.config import setting_default
from common.errors import ConfigError, StashUnavailable
from sync_queue.dlq import DeadLetterQueue
from worker import settings as plugin_settings  # the one configuration entry point
from worker.status import format_status, status_report

log = logging.getLogger("plexsync")


def queue_status(_ctx, paths, _conn):
    # Read-only, like --stats-only: a data folder not there yet is reported empty, not created.
    text = format_status(status_report(paths))
    for line in text.splitlines():  # each line of Stash's log says whose it is
        log.info("[PlexSync] %s", line)
    return text, None


def clear_dlq(_ctx, paths, _conn):
    paths.ensure()
    n = DeadLetterQueue(paths.dlq_db).clear()
    log.info("[PlexSync] Cleared %d dead-letter entries", n)
    return f"Cleared {n} dead-letter entries", None


def purge_dlq(_ctx, paths, conn):
    paths.ensure()
    days = _retention_days(conn, paths)
    n = DeadLetterQueue(paths.dlq_db).purge_older_than(days)
    log.info("[PlexSync] Purged %d dead-letter entries older than %d days", n, days)
    return f"Purged {n} dead-letter entries older than {days} days", None


def _retention_days(conn, paths) -> int:
    """The configured DLQ retention; the default when the settings are unusable
    (purging needs neither Plex nor valid Plex settings)."""
    try:
        return plugin_settings.load(conn, paths).dlq_retention_days
    except (ConfigError, StashUnavailable) as exc:
        days = setting_default("dlq_retention_days")
        log.warning("[PlexSync] Using the default DLQ retention (%d days): %s", days, exc)
        return days
