"""One batch of jobs: fetch scenes, sync them to Plex, settle every job.

Every job ends in exactly one of: done (acked and purged), waiting for a
retry (due later), or the dead-letter queue. Policy (which error does what)
lives here; the loop that feeds batches lives in worker.drainer.
"""

import logging
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List

from common.errors import (
    ConfigError, NotInPlexLibrary, PermanentError, PlexNotFound, PlexSyncError, PlexUnavailable, SceneDeleted,
    SceneHasNoFile, StashUnavailable, TransientError,
)
from validation.scene import SceneData, scene_from_stash
from worker import backoff

log = logging.getLogger("plexsync.worker")

STASH_RETRY_DELAY = 15.0
CONFIG_RETRY_DELAY = 300.0


@dataclass
class BatchResult:
    counts: Counter = field(default_factory=Counter)
    stash_down: bool = False
    plex_down: bool = False
    config_error: bool = False

    @property
    def stop(self) -> bool:
        """Draining on would not help: wait for Stash, or for the user to fix the settings."""
        return self.stash_down or self.config_error

    def add(self, other: "BatchResult") -> None:
        self.counts.update(other.counts)
        self.stash_down = self.stash_down or other.stash_down
        self.plex_down = self.plex_down or other.plex_down
        self.config_error = self.config_error or other.config_error


class Processor:
    def __init__(self, ctx) -> None:
        self.ctx = ctx  # worker.context.WorkerContext
        self._finished: List[Dict[str, Any]] = []

    # -- settling a job -------------------------------------------------------

    def _done(self, raw: Dict[str, Any], result: BatchResult, outcome: str) -> None:
        # Purged with the rest of the batch in one transaction (see run). A
        # crash before that leaves the job unacked: it is resumed and found
        # already synced, at the cost of a re-check.
        self._finished.append(raw)
        result.counts[outcome] += 1

    def _dead_letter(self, raw: Dict[str, Any], error: BaseException, result: BatchResult) -> None:
        job = raw["data"]
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.ctx.dlq.add(job, error, trace)
        self.ctx.queue.done(raw)  # at once: a resumed copy would be dead-lettered twice
        result.counts["failed"] += 1
        log.error("[PlexSync Worker] Scene %s moved to the dead-letter queue: %s: %s",
                  job.get("scene_id"), type(error).__name__, error)

    def _retry(self, raw: Dict[str, Any], error: BaseException, result: BatchResult) -> None:
        job = raw["data"]
        job["attempts"] = int(job.get("attempts", 0)) + 1
        job["last_error"] = f"{type(error).__name__}: {error}"[:500]
        policy = backoff.policy_for(error, self.ctx.config.max_retries)
        if policy.exhausted(job["attempts"]):
            self._dead_letter(raw, error, result)
            return
        delay = policy.delay(job["attempts"] - 1)
        self.ctx.queue.retry_later(raw, delay)
        outcome = "not_found" if isinstance(error, PlexNotFound) else "retrying"
        result.counts[outcome] += 1
        log.warning("[PlexSync Worker] Scene %s: %s; retry %d/%d in %.0fs", job.get("scene_id"), error,
                    job["attempts"], policy.max_retries, delay)

    def _postpone(self, raws: List[Dict[str, Any]], delay: float, result: BatchResult, outcome: str) -> None:
        """Put jobs back without using up a retry (Stash or Plex is down)."""
        for raw in raws:
            self.ctx.queue.retry_later(raw, delay)
            result.counts[outcome] += 1

    # -- the batch -------------------------------------------------------------

    def run(self, raws: List[Dict[str, Any]]) -> BatchResult:
        try:
            return self._run(raws)
        finally:
            finished, self._finished = self._finished, []
            self.ctx.queue.done_many(finished)

    def _run(self, raws: List[Dict[str, Any]]) -> BatchResult:
        result = BatchResult()
        if not raws:
            return result
        ctx = self.ctx
        if not ctx.breaker.allow():
            wait = max(1.0, ctx.breaker.seconds_until_retry())
            log.info("[PlexSync Worker] Circuit breaker open: Plex paused for %.0fs", wait)
            self._postpone(raws, wait, result, "postponed")
            result.plex_down = True
            return result

        scenes = self._snapshots(raws, result)
        if result.stash_down:
            return result
        todo = []
        for raw, scene in scenes:
            job = raw["data"]
            if (job.get("update_type") != "file_change" and not job.get("data", {}).get("force")
                    and ctx.timestamps.is_current(scene.id, scene.updated_at)):
                log.info("[PlexSync Worker] Scene %s already synced (unchanged since %s)", scene.id, scene.updated_at)
                self._done(raw, result, "unchanged")
            elif not scene.files:
                self._dead_letter(raw, SceneHasNoFile(f"scene {scene.id} has no file to match in Plex"), result)
            else:
                todo.append((raw, scene))
        if todo:
            self._sync(todo, result)
        return result

    def _snapshots(self, raws: List[Dict[str, Any]], result: BatchResult):
        """The validated scene of every job: stored on the job, or fetched in one request."""
        ctx = self.ctx
        need = [raw for raw in raws if not raw["data"].get("data", {}).get("snapshot")]
        fetched: Dict[int, Dict[str, Any]] = {}
        if need:
            try:
                fetched = ctx.stash.scenes(raw["data"]["scene_id"] for raw in need)
            except StashUnavailable as exc:
                log.warning("[PlexSync Worker] Stash unavailable (%s); %d job(s) wait %.0fs",
                            exc, len(raws), STASH_RETRY_DELAY)
                self._postpone(raws, STASH_RETRY_DELAY, result, "postponed")
                result.stash_down = True
                return []
        out = []
        for raw in raws:
            job = raw["data"]
            payload = job.setdefault("data", {})
            try:
                if payload.get("snapshot"):
                    scene = SceneData(**payload["snapshot"])
                else:
                    found = fetched.get(int(job["scene_id"]))
                    if found is None:
                        raise SceneDeleted(f"scene {job['scene_id']} no longer exists in Stash")
                    scene = scene_from_stash(found, strict=ctx.config.strict_mode)
                    payload["snapshot"] = scene.model_dump()
            except SceneDeleted as exc:
                log.info("[PlexSync Worker] %s; dropping its job", str(exc).capitalize())
                self._done(raw, result, "deleted")
                continue
            except PermanentError as exc:
                self._dead_letter(raw, exc, result)
                continue
            out.append((raw, scene))
        return out

    def _sync(self, todo, result: BatchResult) -> None:
        ctx = self.ctx
        scenes = [scene for _, scene in todo]
        try:
            outcomes = ctx.plex.sync_batch(scenes, lambda scene: ctx.stash.fetch_image(scene.screenshot_url))
        except ConfigError as exc:
            # e.g. plex_library names no library Plex has: nothing can sync.
            log.error("[PlexSync] Configuration error: %s", exc)
            self._postpone([raw for raw, _ in todo], CONFIG_RETRY_DELAY, result, "postponed")
            result.config_error = True
            return
        except PlexSyncError as exc:
            outcomes = {scene.id: exc for scene in scenes}
        except Exception as exc:  # a bug must not lose the batch
            log.error("[PlexSync Worker] Unexpected error syncing a batch: %s: %s", type(exc).__name__, exc)
            outcomes = {scene.id: exc for scene in scenes}
        plex_ok = plex_failed = False
        for raw, scene in todo:
            outcome = outcomes.get(scene.id)
            if outcome is None:
                outcome = TransientError(f"no result for scene {scene.id}")
            if not isinstance(outcome, BaseException):
                ctx.timestamps.record(scene.id, scene.updated_at)
                status = getattr(outcome, "status", "synced")
                log.info("[PlexSync Worker] Scene %s %s in Plex (%s)", scene.id,
                         "synced" if status == "synced" else "already up to date",
                         ", ".join(str(k) for k in getattr(outcome, "items", [])) or "-")
                self._done(raw, result, "synced" if status == "synced" else "unchanged")
                plex_ok = True
                continue
            if isinstance(outcome, NotInPlexLibrary):
                # Reported once, settled without a timestamp: the next save or Sync All tries again.
                log.warning("[PlexSync Worker] Scene %s: %s; not retried", scene.id, outcome)
                self._done(raw, result, "not_in_library")
                plex_ok = True
            elif isinstance(outcome, PlexNotFound):
                plex_ok = True  # Plex answered; the file just is not there yet
                if int(raw["data"].get("attempts", 0)) == 0:
                    self._request_scan(scene)
                self._retry(raw, outcome, result)
            elif isinstance(outcome, StashUnavailable):
                # Stash went away mid-batch (fetching a cover): wait as when
                # the scenes cannot be fetched, without using a retry.
                self._postpone([raw], STASH_RETRY_DELAY, result, "postponed")
                result.stash_down = True
            elif isinstance(outcome, PlexUnavailable):
                plex_failed = True
                self._retry(raw, outcome, result)
            elif isinstance(outcome, PermanentError):
                self._dead_letter(raw, outcome, result)
            else:
                self._retry(raw, outcome, result)
        if plex_failed:
            result.plex_down = True
            if ctx.breaker.record_failure():
                log.warning("[PlexSync Worker] Circuit breaker opened: Plex failed repeatedly; pausing %.0fs",
                            ctx.breaker.recovery)
        elif plex_ok:
            ctx.breaker.record_success()

    def _request_scan(self, scene: SceneData) -> None:
        try:
            if self.ctx.plex.request_scan(scene):
                log.info("[PlexSync Worker] Scene %s not in Plex yet: asked Plex to scan its folder", scene.id)
        except PlexSyncError as exc:
            log.warning("[PlexSync Worker] Could not ask Plex to scan for scene %s: %s", scene.id, exc)
