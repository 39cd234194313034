"""The drain loop, and the detached background worker that runs it.

Locks (all flock/msvcrt, released by the OS if the holder dies):
* ``worker.lock``: a background worker exists. The hook spawns one only when
  this is free and no other start is claimed (see ``worker.launch``), so
  there is never more than one.
* ``drain.lock``: the right to take jobs. Whoever takes it first resumes
  jobs a dead drainer left unacked; nobody else ever does.
* ``task.lock``: a foreground task (or the CLI) wants to drain. The
  background worker yields ``drain.lock`` between batches while it is held.
"""

import contextlib
import logging
import os
import threading
import time
from typing import Callable, Iterator, Optional

from common import defaults, pending
from common import log as plog
from common.errors import ConfigError, StashUnavailable
from common.locking import FileLock
from history.run import maybe_import
from worker import settings as plugin_settings
from worker.context import build_context
from worker.launch import release_claim
from worker.processor import BatchResult, Processor
from worker.reshape import queue_if_changed
from worker.settings import SettingsWatch

log = logging.getLogger("plexsync.worker")

BATCH_SIZE = defaults.BATCH_SIZE
POLL = defaults.POLL
LOCK_WAIT = defaults.LOCK_WAIT  # see _acquire_briefly


class Drainer:
    """Takes due jobs in batches and hands them to the Processor."""

    def __init__(self, ctx, *, foreground: bool = False, watch: Optional[SettingsWatch] = None) -> None:
        self.ctx = ctx
        self.foreground = foreground
        self.watch = watch  # the background worker's look at the settings before each batch
        self.settings_stop = False  # the settings say: do not sync (disabled or invalid)
        self.processor = Processor(ctx)
        self.drain_lock = FileLock(ctx.paths.drain_lock)
        self.task_lock = FileLock(ctx.paths.task_lock)
        self.stop = threading.Event()
        self.total = BatchResult()

    def _take_drain_lock(self, wait: float) -> bool:
        if self.drain_lock.held:
            return True
        deadline = time.monotonic() + wait
        while not self.drain_lock.acquire():
            if self.stop.is_set() or time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        # Only the holder resumes, and on every (re)take: a drainer settles
        # its batch before it lets the lock go, so rows still unacked belong
        # to one that died holding it (e.g. a task Stash killed while this
        # worker waited for it).
        self.ctx.queue.resume_unack_tasks()
        return True

    def run_once(self, due_by: Optional[float] = None) -> Optional[BatchResult]:
        """Process one batch if one is due (by ``due_by``, default now); None when nothing is."""
        batch = self.ctx.queue.take(BATCH_SIZE, due_by)
        if not batch:
            return None
        if self.watch is not None:
            if not self.watch.check():
                for raw in batch:  # untouched: they wait for the settings to allow syncing
                    self.ctx.queue.retry_later(raw, 0)
                self.settings_stop = True
                return BatchResult(config_error=True)
            queue_if_changed(self.ctx)  # collections, skip_fields, ... changed: every scene again
        result = self.processor.run(batch)
        self.total.add(result)
        # One line per batch at info; each scene's line is at debug (failures excepted).
        log.info("[PlexSync Worker] Batch of %d jobs: %s", len(batch), batch_summary(result.counts))
        return result

    @contextlib.contextmanager
    def claimed(self) -> Iterator[bool]:
        """Hold task.lock until the block ends (a task that lists before it drains).

        A background worker yields at once, so the jobs queued inside the block
        are synced, and counted, by this drainer. If another task holds the
        lock, the block runs unclaimed and ``drain_foreground`` reports it busy.
        """
        got = _acquire_briefly(self.task_lock)
        try:
            yield got
        finally:
            if got:
                self.task_lock.release()

    def drain_foreground(self, on_batch: Optional[Callable[[BatchResult], None]] = None,
                         wait_for_lock: float = defaults.TASK_LOCK_WAIT) -> BatchResult:
        """Drain until nothing is due (waiting retries stay queued)."""
        claimed = self.task_lock.held  # inside claimed(): the block releases it
        # The background worker probes task.lock between batches: retry past a probe.
        if not _acquire_briefly(self.task_lock):
            raise BlockingIOError("another PlexSync task is already processing the queue")
        try:
            if not self._take_drain_lock(wait_for_lock):
                raise BlockingIOError("the background worker did not hand over the queue")
            # Only what is due now: a retry this drain schedules waits for the
            # background worker, however short its random delay.
            started = self.ctx.queue.clock()
            try:
                while not self.stop.is_set():
                    result = self.run_once(due_by=started)
                    if result is None:
                        break
                    if on_batch:
                        on_batch(result)
                    if result.stop:
                        break
                    if result.plex_down and self.ctx.breaker.is_open():
                        break
            finally:
                self.ctx.timestamps.flush()
                self.drain_lock.release()
        finally:
            if not claimed:
                self.task_lock.release()
        return self.total

    def drain_background(self, idle: float) -> None:
        """Drain while work is due or waiting; exit after ``idle`` s with none."""
        idle_since = time.monotonic()
        stash_failures = 0
        while not self.stop.is_set():
            if self.task_lock.is_locked_elsewhere():
                self.drain_lock.release()  # a foreground task takes over
                time.sleep(POLL)
                idle_since = time.monotonic()
                continue
            if not self._take_drain_lock(0):
                time.sleep(POLL)
                continue
            pending.replay(self.ctx.paths, self.ctx.queue)  # saves a hook could not queue (one listdir)
            result = self.run_once()
            if result is not None:
                idle_since = time.monotonic()
                if result.config_error:
                    break
                stash_failures = stash_failures + 1 if result.stash_down else 0
                if stash_failures >= defaults.STASH_FAILURES_TO_EXIT:
                    # Most likely our session cookie expired; the next hook
                    # starts a worker with a fresh one. Jobs stay queued.
                    log.warning("[PlexSync Worker] Stash unreachable 3 times in a row; exiting until the next change")
                    break
                continue
            self.drain_lock.release()
            self.ctx.timestamps.flush()
            stats = self.ctx.queue.stats()
            if stats["waiting_retry"] == 0 and stats["in_progress"] == 0 and time.monotonic() - idle_since >= idle:
                break
            wait = POLL
            if stats["next_retry_at"]:
                wait = max(0.05, min(POLL, stats["next_retry_at"] - self.ctx.queue.clock()))
            self.stop.wait(wait)
        self.drain_lock.release()
        self.ctx.timestamps.flush()


def run_background(payload, paths) -> int:
    """Entry of ``PlexSync.py --worker`` (detached; logs to worker.log)."""
    paths.ensure()
    plog.setup(log_file=paths.worker_log)
    worker_lock = FileLock(paths.worker_lock)
    got_lock = _acquire_briefly(worker_lock)
    # Either way a worker now holds the lock: hooks need the claim no longer.
    release_claim(paths.spawn_claim, (payload or {}).get("spawn_token"))
    if not got_lock:
        return 0
    conn = (payload or {}).get("server_connection") or {}
    try:
        settings = plugin_settings.fetch(conn)
        config = plugin_settings.load(conn, paths, settings)
    except (ConfigError, StashUnavailable) as exc:
        log.error("[PlexSync] %s%s; queued jobs are kept",
                  "Configuration error: " if isinstance(exc, ConfigError) else "", exc)
        worker_lock.release()
        return 0
    if not config.enabled:
        log.info("[PlexSync] Plugin is disabled via configuration")
        worker_lock.release()
        return 0
    # The drain runs on a daemon thread; everything it opens (SQLite
    # connections included) is created, used and closed on that thread.
    thread = threading.Thread(target=_background, args=(config, settings, paths, conn, worker_lock),
                              name="plexsync-worker", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(1.0)
    return 0


def _background(config, settings, paths, conn, worker_lock: FileLock) -> None:
    ctx = build_context(config, paths, conn)
    watch = SettingsWatch(ctx, settings)
    log.info("[PlexSync Worker] Background worker started (pid %d)", os.getpid())
    try:
        while True:
            maybe_import(ctx, time.time())  # Plex watch history, when enabled (history/run.py)
            drainer = Drainer(ctx, watch=watch)
            drainer.drain_background(ctx.config.poll_interval)
            counts = dict(drainer.total.counts)
            if counts:
                log.info("[PlexSync Worker] Drained: %s", _summary(counts))
            # No lost wake-up: a hook that queued (or kept a save in pending/)
            # after our last look either sees the lock free (and spawns a
            # worker) or is seen here.
            worker_lock.release()
            waiting = ctx.queue.stats()["ready"] or pending.count(paths)
            if not drainer.settings_stop and waiting and _acquire_briefly(worker_lock):
                continue
            break
    except Exception:
        log.exception("[PlexSync Worker] Background worker failed; queued jobs are kept")
    finally:
        ctx.close()
        worker_lock.release()
        log.info("[PlexSync Worker] Background worker exiting")


def _acquire_briefly(lock: FileLock, wait: float = LOCK_WAIT) -> bool:
    """Take ``lock``, retrying for ``wait`` s.

    ``is_locked_elsewhere`` probes (a hook deciding whether to spawn, Queue
    Status, the CLI, the worker watching task.lock) hold a lock for an
    instant; giving up on the first try would let a probe make a new worker
    exit while a job waits, or fail a task. A real holder keeps the lock, so
    a genuine loser gives up after ``wait``.
    """
    deadline = time.monotonic() + wait
    while not lock.acquire():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def left_queued(waiting_retry: int, ready: int) -> int:
    """Jobs a foreground drain left for the background worker: its retries, due or not.

    ``drain_foreground`` takes only what was due when it started, and a
    full-jitter delay can be a fraction of a second: such a retry is due
    (``ready``) by the time the drain ends, yet it waits for a worker all the same.
    """
    return waiting_retry + ready


WAITING = ("not_found", "retrying", "postponed")  # policy counts_as names of jobs left queued


def batch_summary(counts) -> str:
    """``N synced, N unchanged, N waiting, N failed``, then any other outcome (policy counts_as names)."""
    waiting = sum(counts.get(k, 0) for k in WAITING)
    text = f"{counts.get('synced', 0)} synced, {counts.get('unchanged', 0)} unchanged, {waiting} waiting, " \
           f"{counts.get('failed', 0)} failed"
    others = sorted(k for k in counts if counts[k] and k not in WAITING + ("synced", "unchanged", "failed"))
    return text + "".join(f", {counts[k]} {k.replace('_', ' ')}" for k in others)


def _summary(counts) -> str:
    order = ("synced", "unchanged", "not_found", "not_in_library", "retrying", "failed", "deleted", "postponed")
    return ", ".join(f"{counts.get(k, 0)} {k.replace('_', ' ')}" for k in order if counts.get(k))

