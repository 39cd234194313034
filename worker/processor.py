"""One batch of jobs: fetch scenes, sync them to Plex, settle every job.

Every job ends in exactly one of: done (acked and purged), waiting for a
retry (due later), or the dead-letter queue. Which outcome does what is
decided in worker.policy; this module carries the decision out. The loop
that feeds batches lives in worker.drainer.
"""

import logging
import random
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Set

from common.errors import ConfigError, PlexSyncError, SceneDeleted, SceneHasNoFile, StashUnavailable, TransientError
from validation.scene import SceneData, scene_from_stash
from worker import policy
from worker.policy import Action, Breaker, Rule, Stop

log = logging.getLogger("plexsync.worker")
SCENES_NAMED = 10  # scene ids a grouped retry line names; the rest are counted


class Retry(NamedTuple):
    scene_id: Any
    reason: str
    attempt: int
    most: int
    delay: float


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
    def __init__(self, ctx, rng: Optional[random.Random] = None) -> None:
        self.ctx = ctx  # worker.context.WorkerContext
        self.rng = rng or random.Random()
        self._finished: List[Dict[str, Any]] = []
        self._retries: List[Retry] = []

    # -- settling a job: carries out a policy.Rule -----------------------------------

    def settle(self, raw: Dict[str, Any], rule: Rule, result: BatchResult, error: Optional[BaseException] = None,
               wait: float = 0.0, scene: Optional[SceneData] = None) -> Breaker:
        """Carry out ``rule`` for one job; returns its effect on the breaker."""
        action = rule.action
        if action in (Action.DONE, Action.DROP):
            if error is not None and action is Action.DONE:
                log.warning("[PlexSync Worker] Scene %s: %s; not retried", raw["data"].get("scene_id"), error)
            self._done(raw, result, rule.counts_as)
        elif action is Action.POSTPONE:
            self.ctx.queue.retry_later(raw, rule.wait or wait)
            result.counts[rule.counts_as] += 1
        elif action is Action.DEAD_LETTER:
            self._dead_letter(raw, error, result)
        elif action in (Action.RETRY, Action.SCAN_THEN_RETRY):
            if action is Action.SCAN_THEN_RETRY and scene is not None and not int(raw["data"].get("attempts", 0)):
                self._request_scan(scene)
            self._retry(raw, error, rule, result)
        else:
            raise ValueError(f"{action} does not apply to a queued job")
        if rule.stop is Stop.STASH_DOWN:
            result.stash_down = True
        elif rule.stop is Stop.CONFIG_ERROR:
            result.config_error = True
        return rule.breaker

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

    def _retry(self, raw: Dict[str, Any], error: BaseException, rule: Rule, result: BatchResult) -> None:
        job = raw["data"]
        job["attempts"] = int(job.get("attempts", 0)) + 1
        job["last_error"] = f"{type(error).__name__}: {error}"[:500]
        schedule = rule.retry_policy(self.ctx.config.max_retries)
        if schedule.exhausted(job["attempts"]):
            self.settle(raw, policy.EXHAUSTED, result, error)
            return
        delay = schedule.delay(job["attempts"] - 1, self.rng)
        self.ctx.queue.retry_later(raw, delay)
        result.counts[rule.counts_as] += 1
        self._retries.append(Retry(job.get("scene_id"), str(error), job["attempts"], schedule.max_retries, delay))

    def _log_retries(self) -> None:
        """One warning per reason and batch: an outage retries a whole batch for one reason."""
        retries, self._retries = self._retries, []
        by_reason: Dict[str, List[Retry]] = {}
        for retry in retries:
            by_reason.setdefault(retry.reason, []).append(retry)
        for reason, group in by_reason.items():
            level = logging.WARNING if len(group) == 1 else logging.DEBUG
            for r in group:
                log.log(level, "[PlexSync Worker] Scene %s: %s; retry %d/%d in %.0fs", r.scene_id, reason,
                        r.attempt, r.most, r.delay)
            if len(group) > 1:
                first, last = min(r.attempt for r in group), max(r.attempt for r in group)
                attempts = str(first) if first == last else f"{first}-{last}"
                delays = [r.delay for r in group]
                log.warning("[PlexSync Worker] %d scenes: %s; retry %s/%d in %.0f-%.0fs (scenes %s)", len(group),
                            reason, attempts, group[0].most, min(delays), max(delays),
                            _named([r.scene_id for r in group]))

    # -- the batch -------------------------------------------------------------

    def run(self, raws: List[Dict[str, Any]]) -> BatchResult:
        try:
            return self._run(raws)
        finally:
            finished, self._finished = self._finished, []
            self.ctx.queue.done_many(finished)
            self._log_retries()

    def _run(self, raws: List[Dict[str, Any]]) -> BatchResult:
        result = BatchResult()
        if not raws:
            return result
        if not self.ctx.breaker.allow():
            wait = max(1.0, self.ctx.breaker.seconds_until_retry())
            log.info("[PlexSync Worker] Circuit breaker open: Plex paused for %.0fs", wait)
            for raw in raws:
                self.settle(raw, policy.BREAKER_OPEN, result, wait=wait)
            result.plex_down = True
            return result
        scenes = self._snapshots(raws, result)
        if result.stash_down:
            return result
        todo = [(raw, scene) for raw, scene in scenes if self._needs_plex(raw, scene, result)]
        if todo:
            self._sync(todo, result)
        return result

    def _needs_plex(self, raw: Dict[str, Any], scene: SceneData, result: BatchResult) -> bool:
        job = raw["data"]
        if (job.get("update_type") != "file_change" and not job.get("data", {}).get("force")
                and self.ctx.timestamps.is_current(scene.id, scene.updated_at)):
            log.debug("[PlexSync Worker] Scene %s already synced (unchanged since %s)", scene.id, scene.updated_at)
            self.settle(raw, policy.ALREADY_SYNCED, result)
            return False
        if not scene.files:
            error = SceneHasNoFile(f"scene {scene.id} has no file to match in Plex")
            self.settle(raw, policy.rule_for(error), result, error)
            return False
        return True

    def _snapshots(self, raws: List[Dict[str, Any]], result: BatchResult):
        """The validated scene of every job: stored on the job, or fetched in one request."""
        need = [raw for raw in raws if not raw["data"].get("data", {}).get("snapshot")]
        fetched: Dict[int, Dict[str, Any]] = {}
        if need:
            try:
                fetched = self.ctx.stash.scenes(raw["data"]["scene_id"] for raw in need)
            except StashUnavailable as exc:
                rule = policy.rule_for(exc)
                log.warning("[PlexSync Worker] Stash unavailable (%s); %d job(s) wait %.0fs", exc, len(raws), rule.wait)
                for raw in raws:
                    self.settle(raw, rule, result, exc)
                return []
        out = []
        for raw in raws:
            try:
                out.append((raw, self._snapshot(raw["data"], fetched)))
            except PlexSyncError as exc:
                if isinstance(exc, SceneDeleted):
                    log.debug("[PlexSync Worker] %s; dropping its job", str(exc).capitalize())
                self.settle(raw, policy.rule_for(exc), result, exc)
        return out

    def _snapshot(self, job: Dict[str, Any], fetched: Dict[int, Dict[str, Any]]) -> SceneData:
        payload = job.setdefault("data", {})
        if payload.get("snapshot"):
            return SceneData(**payload["snapshot"])
        found = fetched.get(int(job["scene_id"]))
        if found is None:
            raise SceneDeleted(f"scene {job['scene_id']} no longer exists in Stash")
        scene = scene_from_stash(found, strict=self.ctx.config.strict_mode)
        payload["snapshot"] = scene.model_dump()
        payload["read_at"] = self.ctx.queue.clock()  # see SyncTimestamps.is_current
        return scene

    def _sync(self, todo, result: BatchResult) -> None:
        ctx = self.ctx
        scenes = [scene for _, scene in todo]
        try:
            outcomes = ctx.plex.sync_batch(scenes, lambda scene: ctx.stash.fetch_image(scene.screenshot_url))
        except ConfigError as exc:
            # e.g. plex_library names no library Plex has: nothing can sync.
            log.error("[PlexSync] Configuration error: %s", exc)
            outcomes = {scene.id: exc for scene in scenes}
        except PlexSyncError as exc:
            outcomes = {scene.id: exc for scene in scenes}
        except Exception as exc:  # a bug must not lose the batch
            log.error("[PlexSync Worker] Unexpected error syncing a batch: %s: %s", type(exc).__name__, exc)
            outcomes = {scene.id: exc for scene in scenes}
        effects = {self._settle_outcome(raw, scene, outcomes.get(scene.id), result) for raw, scene in todo}
        self._record_breaker(effects, result)

    def _settle_outcome(self, raw: Dict[str, Any], scene: SceneData, outcome: Any, result: BatchResult) -> Breaker:
        if outcome is None:
            outcome = TransientError(f"no result for scene {scene.id}")
        if isinstance(outcome, BaseException):
            return self.settle(raw, policy.rule_for(outcome), result, outcome, scene=scene)
        self.ctx.timestamps.record(scene.id, scene.updated_at, raw["data"].get("data", {}).get("read_at"))
        synced = getattr(outcome, "status", "synced") == "synced"
        log.debug("[PlexSync Worker] Scene %s %s in Plex (%s)", scene.id, "synced" if synced else "already up to date",
                 ", ".join(str(k) for k in getattr(outcome, "items", [])) or "-")
        return self.settle(raw, policy.SYNCED if synced else policy.UP_TO_DATE, result)

    def _record_breaker(self, effects: Set[Breaker], result: BatchResult) -> None:
        breaker = self.ctx.breaker
        if Breaker.FAILURE in effects:
            result.plex_down = True
            if breaker.record_failure():
                log.warning("[PlexSync Worker] Circuit breaker opened: Plex failed repeatedly; pausing %.0fs",
                            breaker.recovery)
        elif Breaker.SUCCESS in effects:
            breaker.record_success()

    def _request_scan(self, scene: SceneData) -> None:
        try:
            if self.ctx.plex.request_scan(scene):
                log.debug("[PlexSync Worker] Scene %s not in Plex yet: asked Plex to scan its folder", scene.id)
        except PlexSyncError as exc:
            log.warning("[PlexSync Worker] Could not ask Plex to scan for scene %s: %s", scene.id, exc)


def _named(ids: List[Any]) -> str:
    """``1, 2, 3`` or ``1, 2, ... 10 and 40 more``."""
    shown = ", ".join(str(i) for i in ids[:SCENES_NAMED])
    return shown if len(ids) <= SCENES_NAMED else f"{shown} and {len(ids) - SCENES_NAMED} more"
