"""Hook input parsing (pure): every shape Stash sends, and hostile ones."""

import pytest

from hooks.handler import HookInputError, scene_events
from tests.runner import bulk_update, scan_update, scene_update, scenes_update


def test_scene_update_with_synced_field():
    assert scene_events(scene_update(5, title="T")) == [(5, "metadata", ["title"])]


def test_scene_update_without_synced_field_is_filtered():
    assert scene_events(scene_update(5, play_count=3, organized=True)) == []


def test_scenes_update_array_uses_own_fields():
    ctx = scenes_update(2, [{"id": "1", "title": "a"}, {"id": "2", "o_counter": 1}])
    assert scene_events(ctx) == []
    ctx = scenes_update(1, [{"id": "1", "tag_ids": ["3"]}, {"id": "2", "o_counter": 1}])
    assert scene_events(ctx) == [(1, "metadata", ["tag_ids"])]


def test_bulk_update():
    assert scene_events(bulk_update(3, [3, 4], performer_ids={"ids": ["1"], "mode": "ADD"})) == [
        (3, "metadata", ["performer_ids"])]


def test_scan_means_file_change():
    assert scene_events(scan_update(9)) == [(9, "file_change", [])]


@pytest.mark.parametrize("bad", [{}, {"id": None}, {"id": "abc"}, {"id": -1}, {"id": True}, "x", {"id": "1e9x"}])
def test_bad_ids_rejected(bad):
    with pytest.raises(HookInputError):
        scene_events(bad)


def test_slow_handler_warns(paths, caplog, monkeypatch):
    """The every-save path warns when it exceeds its 100 ms target."""
    import logging

    import hooks.handler as handler
    from common.locking import FileLock
    from common.state import ConfigState

    ConfigState(paths.config_state).write(enabled=True)
    worker = FileLock(paths.worker_lock)
    assert worker.acquire()  # a worker "runs": nothing is spawned
    import itertools

    ticks = itertools.chain([10.0], itertools.repeat(10.25))
    monkeypatch.setattr(handler.time, "perf_counter", lambda: next(ticks))
    logger = logging.getLogger("plexsync.hook")
    logger.addHandler(caplog.handler)
    try:
        output, error = handler.handle({"args": {"hookContext": scene_update(3, title="t")}}, paths)
    finally:
        logger.removeHandler(caplog.handler)
        worker.release()
    assert (output, error) == ("queued scene 3", None)
    assert "Hook handler exceeded 100ms target (250ms)" in caplog.text

