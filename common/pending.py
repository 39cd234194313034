"""Saves the hook could not queue, kept as files until a worker or task queues them.

Two cases: the packages are not installed yet (the queue is persist-queue,
one of them, and a save must not wait for pip), or the queue did not take
the job within ``defaults.HOOK_QUEUE_WAIT`` (a burst of saves on a slow
disk, a disk error). The hook keeps the hook context in ``data/pending/``
(stdlib only) and returns; once it can, the worker (at start and between
batches) or a task moves each file into the real queue and deletes it. The
Stash session cookie is never written: the worker gets it on stdin.
"""

import contextlib
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


def replay(paths, queue=None) -> int:
    """Queue every kept save (oldest first), then delete its file; how many scenes were queued.

    Into ``queue`` when given (a running drainer's), else into one opened here.
    A file is deleted only after its jobs are in the queue: a crash in
    between, or two processes replaying at once, queues a scene twice, which
    merges into one pending job (sync_queue.queue).
    """
    try:
        names = sorted(name for name in os.listdir(folder(paths)) if name.endswith(".json"))
    except OSError:
        return 0
    if not names:
        return 0  # the usual case: one listdir, nothing imported
    from common.jsonfile import read_json
    from hooks.handler import HookInputError, hook_jobs, scene_events
    from sync_queue.queue import open_queue

    queued = 0
    own = queue is None
    queue = open_queue(paths) if own else queue
    try:
        for name in names:
            path = os.path.join(folder(paths), name)
            data = read_json(path)
            if data is None and not os.path.exists(path):
                continue  # another process replayed it first
            try:
                events = scene_events((data or {}).get("hookContext") if isinstance(data, dict) else None)
            except HookInputError:
                log.warning("[PlexSync] Dropped an unreadable kept save (%s)", name)
                events = []
            queued += queue.put_many(hook_jobs(events))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        if own:
            queue.close()
    log.info("[PlexSync] Queued %d scene(s) from saves kept in pending/", queued)
    return queued
