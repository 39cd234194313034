"""Running the import from a task, the background worker or the CLI."""

import logging
from typing import Optional, Tuple

from common import defaults
from common.errors import PlexSyncError
from history.importer import ImportBusy, Summary, import_history
from history.state import HistoryState

log = logging.getLogger("plexsync.history")



def run_import(ctx) -> Tuple[Optional[Summary], Optional[Exception]]:
    """One import with the worker context; (summary, None) or (None, the error that stopped it)."""
    try:
        summary = import_history(ctx.config, ctx.paths, ctx.plex.server, ctx.plex.store, ctx.stash)
    except ImportBusy as exc:
        log.info("[PlexSync] Watch history not imported: %s", exc)
        return None, exc
    except PlexSyncError as exc:
        log.error("[PlexSync] Watch history import stopped (%s); nothing was lost, the next run resumes",
                  exc)
        return None, exc
    return summary, None


def import_task(ctx, _paths, _conn):
    """The Import Plex Watch History task."""
    summary, error = run_import(ctx)
    return (summary.text() if summary else None), (str(error) if error else None)


def maybe_import(ctx, now: float) -> None:
    """The background worker's import: when enabled and the last is old enough."""
    if not ctx.config.import_watch_history:
        return
    last = HistoryState(ctx.paths.history_state).last_run
    if last is not None and now - last < defaults.HISTORY_EVERY:
        return
    try:
        run_import(ctx)
    except Exception:  # noqa: BLE001 - an import bug must not stop the worker's syncing
        log.exception("[PlexSync] Watch history import failed; the worker carries on syncing")
