"""Settings that shape what is written: when they change, every scene is compared with Plex again.

Collections (``studio_collections``, ``group_collections``, ``tag_collections``),
``content_rating``, ``skip_fields`` and ``exclude_tags`` decide what each Plex
item should hold, for scenes that did not change in Stash too. So the first
background worker batch or syncing task that sees them changed queues every
scene with a file with the job's ``force`` flag, as Force Full Re-sync does:
turning a collection setting on puts every scene in its collections, turning
it off takes them out (and the emptied collections PlexSync made go). Only
values that differ are written.

``preserve_plex_edits`` is left out on purpose: turning it off must not
overwrite every hand edit in Plex at once; it applies as scenes sync.

What was applied last is kept in ``written_options.json``, recorded after the
scenes are queued (a crash in between queues them again, harmlessly). The
first run records it and queues nothing: nothing was written under other
settings that it could know of.
"""

import logging
from dataclasses import asdict
from typing import Any, Callable, Dict, Optional

from common import defaults
from common.errors import StashUnavailable
from common.jsonfile import read_json, write_json
from plex.writer import Options
from sync_queue.queue import make_job

log = logging.getLogger("plexsync.worker")

# Options field -> the setting users know it by.
SETTING_NAMES = {"skipped": "skip_fields", "excluded_tags": "exclude_tags", "content_rating": "content_rating",
                 "studio_collections": "studio_collections", "group_collections": "group_collections",
                 "collection_tags": "tag_collections"}


def shaping(config) -> Dict[str, Any]:
    """The settings that shape what is written, JSON-ready (sets sorted)."""
    options = asdict(Options.from_config(config))
    return {name: sorted(options[name]) if isinstance(options[name], frozenset) else options[name]
            for name in SETTING_NAMES}


def queue_if_changed(ctx) -> int:
    """Queue every scene with ``force`` if the shaping settings changed since they were last applied."""
    now = shaping(ctx.config)
    before = read_json(ctx.paths.written_options)
    if before == now:
        return 0
    queued = 0
    if isinstance(before, dict):
        changed = [SETTING_NAMES[name] for name in SETTING_NAMES if before.get(name) != now[name]]
        try:
            queued = queue_every_scene(ctx, "reshape")
        except StashUnavailable as exc:
            log.warning("[PlexSync] Settings that shape what is written changed, but Stash did not list the "
                        "scenes (%s); trying again with the next batch", exc)
            return 0
        log.info("[PlexSync] Settings that shape what is written changed (%s): %d scenes queued to compare "
                 "with Plex", ", ".join(changed), queued)
    write_json(ctx.paths.written_options, now)
    return queued


def queue_every_scene(ctx, update_type: str, on_page: Optional[Callable[[int, int], None]] = None) -> int:
    """Every scene with a file, as a ``force`` job (no timestamp shortcut); how many were queued."""
    page, seen, queued = 1, 0, 0
    while True:
        total, scenes = ctx.stash.scene_page(page, defaults.STASH_PAGE_SIZE, None)
        ids = [int(raw["id"]) for raw in scenes if _has_file(raw)]
        seen += len(scenes)
        queued += ctx.queue.put_many(make_job(sid, update_type, {"source": "task", "force": True}) for sid in ids)
        if on_page:
            on_page(seen, total or 0)
        if not scenes or seen >= (total or 0):
            return queued
        page += 1


def _has_file(raw) -> bool:
    """Scenes without a file are left out, as Sync All skips them."""
    return str(raw.get("id", "")).isdigit() and bool(raw.get("files"))
