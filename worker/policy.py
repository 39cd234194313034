"""What happens to a job: the one table that decides.

Every outcome of a job, a sync result or an error, maps to one ``Rule``:
the action (done, retry on a named schedule, scan then retry, postpone
without using a retry, dead-letter, drop), what it counts as in the task
summaries, its effect on the circuit breaker, and whether the batch stops.
The processor and Sync All settle jobs only through ``rule_for`` and the
named rules below; an error type the table does not know gets ``UNKNOWN``,
a row of its own, never a silent fall-through.
"""

import enum
from dataclasses import dataclass
from typing import Optional, Tuple, Type

from common import defaults
from common.errors import (
    ConfigError, InvalidSceneData, NotInPlexLibrary, PermanentError, PlexNotFound, PlexUnavailable, SceneDeleted,
    SceneHasNoFile, StashUnavailable, TransientError,
)
from worker import backoff


class Action(enum.Enum):
    DONE = "done"                        # acked and purged
    RETRY = "retry"                      # uses a retry; due after the schedule's delay
    SCAN_THEN_RETRY = "scan_then_retry"  # ask Plex to scan the folder (first attempt), then RETRY
    POSTPONE = "postpone"                # back in the queue after ``wait`` s, no retry used
    DEAD_LETTER = "dead_letter"          # to the DLQ with the reason
    DROP = "drop"                        # acked: there is nothing left to sync
    SKIP = "skip"                        # Sync All only: not queued, only counted


class Breaker(enum.Enum):
    NONE = "none"        # says nothing about Plex
    SUCCESS = "success"  # Plex answered
    FAILURE = "failure"  # Plex is down: counts toward opening the breaker


class Stop(enum.Enum):
    NONE = "none"
    STASH_DOWN = "stash_down"      # wait for Stash before taking more jobs
    CONFIG_ERROR = "config_error"  # wait for the user to fix the settings


# Named retry schedules (see worker.backoff); "plex" takes max_retries from the settings.
SCHEDULES = ("plex", "not_in_plex")


@dataclass(frozen=True)
class Rule:
    action: Action
    counts_as: str
    breaker: Breaker = Breaker.NONE
    schedule: Optional[str] = None
    wait: float = 0.0  # POSTPONE only; 0 = the caller says how long (breaker open)
    stop: Stop = Stop.NONE

    def __post_init__(self) -> None:
        retries = self.action in (Action.RETRY, Action.SCAN_THEN_RETRY)
        if retries != (self.schedule in SCHEDULES) or (self.wait and self.action is not Action.POSTPONE):
            raise ValueError(f"inconsistent rule {self}")

    def retry_policy(self, max_retries: int) -> backoff.RetryPolicy:
        return backoff.NOT_FOUND if self.schedule == "not_in_plex" else backoff.standard(max_retries)


# -- outcomes that are not errors ------------------------------------------------

SYNCED = Rule(Action.DONE, "synced", Breaker.SUCCESS)
UP_TO_DATE = Rule(Action.DONE, "unchanged", Breaker.SUCCESS)  # Plex compared: nothing to write
ALREADY_SYNCED = Rule(Action.DONE, "unchanged")  # updated_at unchanged since the last sync: Plex not asked
BREAKER_OPEN = Rule(Action.POSTPONE, "postponed")  # wait until the breaker's trial

# -- errors, most specific first ------------------------------------------------------

ERRORS: Tuple[Tuple[Type[BaseException], Rule], ...] = (
    (SceneDeleted, Rule(Action.DROP, "deleted")),
    # Outside every library folder: reported once, settled without a sync
    # timestamp, so the next save or Sync All tries again once Plex covers it.
    (NotInPlexLibrary, Rule(Action.DONE, "not_in_library", Breaker.SUCCESS)),
    (ConfigError, Rule(Action.POSTPONE, "postponed", wait=defaults.CONFIG_RETRY_DELAY, stop=Stop.CONFIG_ERROR)),
    (StashUnavailable, Rule(Action.POSTPONE, "postponed", wait=defaults.STASH_RETRY_DELAY, stop=Stop.STASH_DOWN)),
    (PlexNotFound, Rule(Action.SCAN_THEN_RETRY, "not_found", Breaker.SUCCESS, schedule="not_in_plex")),
    (PlexUnavailable, Rule(Action.RETRY, "retrying", Breaker.FAILURE, schedule="plex")),
    (TransientError, Rule(Action.RETRY, "retrying", schedule="plex")),
    (PermanentError, Rule(Action.DEAD_LETTER, "failed")),
)
# A bug or an error this table does not name: retried like an outage (a bug
# fixed by an update then syncs), but not counted against Plex.
UNKNOWN = Rule(Action.RETRY, "retrying", schedule="plex")
# Retries used up: the job goes to the DLQ with its last error.
EXHAUSTED = Rule(Action.DEAD_LETTER, "failed")

# -- Sync All, deciding per listed scene whether to queue it --------------------------

LISTED: Tuple[Tuple[Type[BaseException], Rule], ...] = (
    # Nothing to match in Plex; queuing it would add a DLQ row on every run.
    (SceneHasNoFile, Rule(Action.SKIP, "no_file")),
    (InvalidSceneData, Rule(Action.DEAD_LETTER, "failed")),
)


def rule_for(error: BaseException) -> Rule:
    """The rule for a job that ended in ``error`` (UNKNOWN if no row names its type)."""
    return _first(ERRORS, error) or UNKNOWN


def listed_rule_for(error: BaseException) -> Rule:
    """The rule for a scene Sync All listed but cannot queue."""
    return _first(LISTED, error) or rule_for(error)


def _first(table, error: BaseException) -> Optional[Rule]:
    for kind, rule in table:
        if isinstance(error, kind):
            return rule
    return None
