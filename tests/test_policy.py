"""The policy table: every error PlexSync raises has a row; unknown errors get theirs."""

import inspect

import pytest

from common import errors
from worker import backoff, policy
from worker.policy import Action, Breaker, Rule, Stop


def _our_errors():
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.PlexSyncError) and cls is not errors.PlexSyncError]


@pytest.mark.parametrize("cls", _our_errors(), ids=lambda c: c.__name__)
def test_every_error_of_ours_has_an_explicit_row(cls):
    assert policy.rule_for(cls("x")) is not policy.UNKNOWN


def test_an_unknown_error_gets_the_unknown_row():
    rule = policy.rule_for(KeyError("bug"))
    assert rule is policy.UNKNOWN
    assert rule.action is Action.RETRY and rule.breaker is Breaker.NONE


@pytest.mark.parametrize("error, action, breaker, stop", [
    (errors.PlexUnavailable("x"), Action.RETRY, Breaker.FAILURE, Stop.NONE),
    (errors.PlexNotFound("x"), Action.SCAN_THEN_RETRY, Breaker.SUCCESS, Stop.NONE),
    (errors.StashUnavailable("x"), Action.POSTPONE, Breaker.NONE, Stop.STASH_DOWN),
    (errors.PlexTLSError("x"), Action.POSTPONE, Breaker.NONE, Stop.CONFIG_ERROR),
    (errors.PlexAuthError("x"), Action.DEAD_LETTER, Breaker.NONE, Stop.NONE),
    (errors.SceneHasNoFile("x"), Action.DEAD_LETTER, Breaker.NONE, Stop.NONE),
    (errors.SceneDeleted("x"), Action.DROP, Breaker.NONE, Stop.NONE),
])
def test_rows(error, action, breaker, stop):
    rule = policy.rule_for(error)
    assert (rule.action, rule.breaker, rule.stop) == (action, breaker, stop)


def test_schedules_are_named():
    assert policy.rule_for(errors.PlexNotFound("x")).retry_policy(5) is backoff.NOT_FOUND
    assert policy.rule_for(errors.PlexUnavailable("x")).retry_policy(3) == backoff.standard(3)


def test_sync_all_skips_file_less_scenes_and_dead_letters_invalid_ones():
    assert policy.listed_rule_for(errors.SceneHasNoFile("x")).action is Action.SKIP
    assert policy.listed_rule_for(errors.InvalidSceneData("x")).action is Action.DEAD_LETTER


def test_inconsistent_rules_are_refused():
    with pytest.raises(ValueError):
        Rule(Action.RETRY, "retrying")  # no schedule
    with pytest.raises(ValueError):
        Rule(Action.DONE, "synced", wait=5)
