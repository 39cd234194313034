"""Scene.Update.Post: validate the event, enqueue a job, make sure a worker runs.

Stash waits for this process on every save, once per scene, in sequence, so
it does the least possible work: no Stash or Plex request, no heavy import.
The worker fetches and validates the scene later, in batches.
"""

import logging
import time
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger("plexsync.hook")

HOOK_TYPE = "Scene.Update.Post"
TARGET_MS = 100
MAX_SCENE_ID = 2**31 - 1  # Stash's GraphQL Int: a larger id could never be fetched

# Input keys of SceneUpdateInput / BulkSceneUpdateInput that change what we
# sync. Anything else (play counts, o-counter, organized, urls, ...) is ignored.
SYNCED_FIELDS = frozenset({
    "title", "details", "date", "rating100", "studio_id", "performer_ids",
    "tag_ids", "cover_image", "primary_file_id",
    "groups", "movies", "group_ids", "movie_ids",  # group collections (the *_ids: bulk updates)
})


class HookInputError(ValueError):
    """The hook context is not something Stash would send."""


def scene_events(hook: Dict[str, Any]) -> List[Tuple[int, str, List[str]]]:
    """(scene_id, update_type, synced input fields) for one hook context.

    * sceneUpdate: ``input`` is a SceneUpdateInput (every key present);
    * scenesUpdate: ``input`` is the whole array, ``inputFields`` this scene's keys;
    * bulkSceneUpdate: ``input`` is a BulkSceneUpdateInput;
    * scan (file moved, renamed or modified): ``input`` is null, no inputFields.
    """
    if not isinstance(hook, dict):
        raise HookInputError("hookContext is not an object")
    raw_id = hook.get("id")
    if isinstance(raw_id, bool) or raw_id is None:
        raise HookInputError("hookContext has no scene id")
    try:
        scene_id = int(str(raw_id).strip())
    except ValueError:
        raise HookInputError(f"scene id {str(raw_id)[:40]!r} is not a number") from None
    if not 0 < scene_id <= MAX_SCENE_ID:
        raise HookInputError(f"scene id {str(scene_id)[:40]} is not valid")
    if hook.get("input") is None:
        return [(scene_id, "file_change", [])]
    fields = hook.get("inputFields")
    if not isinstance(fields, list):
        # No field list: trust nothing, sync everything.
        return [(scene_id, "metadata", sorted(SYNCED_FIELDS))]
    synced = sorted({f for f in fields if isinstance(f, str)} & SYNCED_FIELDS)
    return [(scene_id, "metadata", synced)] if synced else []


def handle(payload: Dict[str, Any], paths) -> Tuple[Any, Optional[str]]:
    """Returns (output, error) for Stash."""
    started = time.perf_counter()
    hook = (payload.get("args") or {}).get("hookContext") or {}
    if not isinstance(hook, dict):
        log.error("[PlexSync Hook] Invalid hook input: hookContext is not an object")
        return None, "Invalid hook input: hookContext is not an object"
    if hook.get("type") != HOOK_TYPE:
        return f"ignored hook {str(hook.get('type'))[:60]}", None
    try:
        events = scene_events(hook)
    except HookInputError as exc:
        log.error("[PlexSync Hook] Invalid hook input: %s", exc)
        return None, f"Invalid hook input: {exc}"
    if not events:
        log.debug("[PlexSync Hook] Scene %s: no synced field changed, nothing to do", hook.get("id"))
        return "no synced field changed", None

    # here: a save that changed no synced field stops above
    from common.state import ConfigState, StashSession, config_file_stamp

    conn = payload.get("server_connection") or {}
    if not ConfigState(paths.config_state).usable(config_file_stamp(conn)):
        # One-off (first run, settings just saved, disabled or invalid): not counted
        # against the handler's target, which is about the every-save path.
        checked = time.perf_counter()
        verdict = _check_config(conn, paths)
        if verdict is not None:
            return verdict
        started += time.perf_counter() - checked

    from worker.launch import ensure_worker

    output = _queue_or_keep(events, hook, paths)
    StashSession(paths.stash_session).offer(conn)  # a running worker takes up a renewed session
    ensure_worker(paths, conn)  # after the job or file is written: no lost wake-up
    elapsed_ms = (time.perf_counter() - started) * 1000
    if elapsed_ms > TARGET_MS:
        log.warning("[PlexSync Hook] Hook handler exceeded %dms target (%.0fms)", TARGET_MS, elapsed_ms)
    log.debug("[PlexSync Hook] %s (%.1fms)", output, elapsed_ms)
    return output, None


def _queue_or_keep(events: List[Tuple[int, str, List[str]]], hook: Dict[str, Any], paths) -> str:
    """Queue one job per event, waiting at most HOOK_QUEUE_WAIT s; else keep the save in pending/."""
    import sqlite3  # loaded by persist-queue anyway

    from common import defaults, pending
    from sync_queue.queue import open_queue  # persist-queue: only for events that queue a job

    scene_id = events[0][0]
    try:
        queue = open_queue(paths, timeout=defaults.HOOK_QUEUE_WAIT)
        try:
            queue.put_many(hook_jobs(events))
        finally:
            queue.close()
    except sqlite3.Error as exc:
        # Busy past HOOK_QUEUE_WAIT (a burst of saves on a slow disk) or a disk
        # error: Stash must not wait longer, and the save must not be lost.
        # The worker queues kept saves while it runs (worker.drainer).
        pending.keep(paths, hook)
        log.warning("[PlexSync Hook] Scene %s: the queue did not take this save (%s: %s); "
                    "kept in pending/ for the worker", scene_id, type(exc).__name__, exc)
        return f"kept scene {scene_id}: queue busy"
    return f"queued scene {scene_id}"


def hook_jobs(events: List[Tuple[int, str, List[str]]]) -> List[Dict[str, Any]]:
    """The queue job of each event (the hook's, or a kept save's, see common.pending)."""
    from sync_queue.queue import make_job

    return [make_job(sid, update_type, {"input_fields": fields, "source": "hook"})
            for sid, update_type, fields in events]


def _check_config(conn: Dict[str, Any], paths) -> Optional[Tuple[Any, Optional[str]]]:
    """Slow path: no cached verdict, or it says disabled or invalid, or Stash's config.yml changed.

    Returns a result to give Stash when the event must not be queued, or
    None to go on and queue it.
    """
    # pydantic and the settings query cost ~0.3 s: only on this rare path.
    from common.errors import ConfigError, StashUnavailable
    from worker import settings as plugin_settings
    from worker.plugin_settings import once as show_defaults

    show_defaults(paths, conn)  # first contact: the settings page shows the defaults in force
    try:
        config = plugin_settings.load(conn, paths)
    except StashUnavailable as exc:
        # Cannot tell: queue it; the worker checks the settings before syncing.
        log.warning("[PlexSync Hook] Could not read settings (%s); queuing anyway", exc)
        return None
    except ConfigError as exc:
        log.error("[PlexSync] Configuration error: %s", exc)
        return None, f"Configuration error: {exc}"
    if not config.enabled:
        log.info("[PlexSync] Plugin is disabled via configuration")
        return "disabled", None
    return None
