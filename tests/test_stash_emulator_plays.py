"""Self-tests of the Stash emulator's plays and resume points, through stashapi."""

import pytest
from stashapi.stashapp import StashInterface

from tests.emulators.stash import StashEmulator

ADD = "mutation($id: ID!, $times: [Timestamp!]) { sceneAddPlay(id: $id, times: $times) { count history } }"
SAVE = "mutation($id: ID!, $t: Float) { sceneSaveActivity(id: $id, resume_time: $t) }"
READ = "query($id: ID) { findScene(id: $id) { play_count play_history last_played_at resume_time updated_at } }"


@pytest.fixture
def emu():
    with StashEmulator() as e:
        yield e


def connect(emu):
    return StashInterface({"scheme": "http", "host": emu.host, "port": emu.port})


def test_add_play_stores_seconds_and_never_deduplicates(emu):
    sid = emu.add_scene(title="A", files=["/data/a.mp4"])
    stash = connect(emu)
    before = stash.call_GQL(READ, {"id": str(sid)})["findScene"]
    out = stash.call_GQL(ADD, {"id": str(sid), "times": ["2024-01-01T10:00:00.700Z", "2024-01-01T10:00:00Z"]})
    assert out["sceneAddPlay"]["count"] == 2
    scene = stash.call_GQL(READ, {"id": str(sid)})["findScene"]
    assert scene["play_count"] == 2
    assert scene["play_history"] == ["2024-01-01T12:00:00+02:00", "2024-01-01T12:00:00+02:00"]
    assert scene["last_played_at"] == "2024-01-01T12:00:00+02:00"
    assert scene["updated_at"] == before["updated_at"]  # plays do not touch updated_at


def test_add_play_without_times_adds_now(emu):
    sid = emu.add_scene(title="A")
    out = connect(emu).call_GQL(ADD, {"id": str(sid)})
    assert out["sceneAddPlay"]["count"] == 1


def test_add_play_to_unknown_scene_fails(emu):
    with pytest.raises(Exception):
        connect(emu).call_GQL(ADD, {"id": "999", "times": ["2024-01-01T10:00:00Z"]})


def test_save_activity_sets_resume_time_only(emu):
    sid = emu.add_scene(title="A")
    stash = connect(emu)
    before = stash.call_GQL(READ, {"id": str(sid)})["findScene"]
    assert stash.call_GQL(SAVE, {"id": str(sid), "t": 65.5})["sceneSaveActivity"] is True
    scene = stash.call_GQL(READ, {"id": str(sid)})["findScene"]
    assert scene["resume_time"] == 65.5 and scene["play_count"] == 0
    assert scene["updated_at"] == before["updated_at"]
    with pytest.raises(Exception):
        stash.call_GQL(SAVE, {"id": "999", "t": 1.0})
