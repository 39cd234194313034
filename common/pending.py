"""Saves that arrived before PlexSync's packages were installed.

The hook cannot queue them (the queue is persist-queue, one of the missing
packages), and a save must not wait for pip. So the hook keeps the hook
context in ``data/pending/`` (stdlib only) and returns; once the packages
are in, the worker or a task moves each file into the real queue and
deletes it. The Stash session cookie is never written: the worker gets it
on stdin.
"""

import json
import logging
import os
import time

log = logging.getLogger("plexsync.pending")


def folder(paths) -> str:
    return paths.pending_dir


def keep(paths, hook_context) -> str:
    """Write one hook context to the pending folder; its path."""
    from common.jsonfile import write_json

    target = folder(paths.ensure())
    os.makedirs(target, exist_ok=True)
    path = os.path.join(target, f"{time.time_ns()}-{os.getpid()}.json")
    write_json(path, {"hookContext": hook_context})
    return path


def count(paths) -> int:
    try:
        return sum(1 for name in os.listdir(folder(paths)) if name.endswith(".json"))
    except OSError:
        return 0


def replay(paths) -> int:
    """Queue every kept save (oldest first), then delete its file; how many scenes were queued.

    A file is deleted only after its jobs are in the queue: a crash in
    between queues a scene twice, which syncs it twice, harmlessly.
    """
    from common.jsonfile import read_json
    from hooks.handler import HookInputError, scene_events
    from sync_queue.queue import make_job, open_queue

    try:
        names = sorted(name for name in os.listdir(folder(paths)) if name.endswith(".json"))
    except OSError:
        return 0
    queued = 0
    queue = open_queue(paths)
    try:
        for name in names:
            path = os.path.join(folder(paths), name)
            hook = (read_json(path) or {}).get("hookContext")
            try:
                events = scene_events(hook)
            except HookInputError:
                events = []
            for scene_id, update_type, fields in events:
                queue.put(make_job(scene_id, update_type, {"input_fields": fields, "source": "hook"}))
                queued += 1
            os.unlink(path)
    finally:
        queue.close()
    if names:
        log.info("[PlexSync] Queued %d scene(s) saved while the packages were being installed", queued)
    return queued
