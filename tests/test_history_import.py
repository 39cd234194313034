"""history/importer.py in-process: real plexapi and stashapi against the emulators."""

import json
import logging

import pytest

from common.errors import StashUnavailable
from common.locking import FileLock
from common.paths import DataPaths
from history.importer import ImportBusy, import_history
from plex.client import connect
from plex.matcher import Matcher
from plex.store import MatchStore
from tests.emulators.plex import PlexEmulator
from tests.emulators.stash import StashEmulator
from validation.config import load_config
from validation.scene import SceneData
from worker.stash import StashClient

TOKEN = "plex-unit-token-0123456789"
T0 = 1_700_000_000


class Rig:
    def __init__(self, tmp_path, n=3, **settings):
        self.plex = PlexEmulator(token=TOKEN).start()
        self.stash = StashEmulator().start()
        section = self.plex.add_section("Stash", locations=["/data/stash"])
        self.pairs = {}
        for i in range(1, n + 1):
            path = f"/data/stash/s{i}.mp4"
            self.pairs[self.stash.add_scene(title=f"S{i}", files=[path])] = self.plex.add_item(section, f"s{i}", [path])
        self.config = load_config({"plex_url": self.plex.url, "plex_token": TOKEN, "plex_library": "Stash", **settings})
        self.paths = DataPaths(tmp_path / "data").ensure()
        self.server = connect(self.config, "6f1c1f8e-6a43-4d3c-9d55-1b1f7a0e2c13")
        self.store = MatchStore(self.paths.match_index)
        Matcher(self.config, self.store, lambda: self.server).match(SceneData(id=1, files=["/data/stash/s1.mp4"]))
        self.client = StashClient(self.stash.server_connection())

    def run(self):
        return import_history(self.config, self.paths, self.server, self.store, self.client)

    def plays(self, sid):
        return [int(t.timestamp()) for t in self.stash.play_history(sid)]

    def close(self):
        self.store.close()
        self.plex.stop()
        self.stash.stop()


@pytest.fixture
def make(tmp_path):
    rigs = []

    def build(**kw):
        rigs.append(Rig(tmp_path, **kw))
        return rigs[-1]

    yield build
    for r in rigs:
        r.close()


def test_all_accounts_and_unknown_ones(make):
    rig = make(history_accounts="all")
    rig.plex.add_account(2, "alice")
    (s1, r1), *_ = rig.pairs.items()
    rig.plex.add_play(r1, T0, account_id=1)
    rig.plex.add_play(r1, T0 + 1, account_id=2)
    rig.plex.add_play(r1, T0 + 2, account_id=77)
    summary = rig.run()
    assert (summary.plays_added, summary.skipped["unknown_account"]) == (2, 1)
    assert rig.plays(s1) == [T0 + 1, T0]


def test_an_unknown_account_name_is_a_warning(make, caplog):
    rig = make(history_accounts="nobody")
    (s1, r1), *_ = rig.pairs.items()
    rig.plex.add_play(r1, T0)
    with caplog.at_level(logging.WARNING, logger="plexsync"):
        summary = rig.run()
    assert summary.plays_added == 0
    assert any("no account named nobody" in r.getMessage() for r in caplog.records)


def test_a_deleted_scene_is_skipped_and_forgotten(make):
    rig = make()
    (s1, r1), (s2, r2), _ = rig.pairs.items()
    rig.plex.add_play(r1, T0)
    assert rig.run().plays_added == 1  # r1 is linked to s1 now
    rig.stash.delete_scene(s1)
    rig.plex.add_play(r1, T0 + 5)
    rig.plex.add_play(r2, T0 + 6)
    summary = rig.run()
    assert summary.skipped["deleted"] == 1 and summary.plays_added == 1
    state = json.loads(open(rig.paths.history_state).read())
    assert str(r1) not in state["links"] and state["links"][str(r2)] == s2


def test_a_finished_item_resets_the_resume_point(make):
    rig = make()
    (s1, r1), *_ = rig.pairs.items()
    rig.plex.set_progress(r1, 40_000)
    assert rig.run().resume_set == 1
    assert rig.stash._activity_view(s1)["resume_time"] == 40.0
    rig.plex.add_play(r1, T0)  # played to the end: Plex clears viewOffset
    summary = rig.run()
    assert (summary.plays_added, summary.resume_set) == (1, 1)
    assert rig.stash._activity_view(s1)["resume_time"] == 0.0


def test_a_corrupt_state_file_means_a_fresh_start(make):
    rig = make()
    (s1, r1), *_ = rig.pairs.items()
    rig.plex.add_play(r1, T0)
    with open(rig.paths.history_state, "w") as fh:
        fh.write("{not json")
    assert rig.run().plays_added == 1
    assert rig.run().plays_added == 0


def test_one_import_at_a_time(make):
    rig = make()
    lock = FileLock(rig.paths.history_lock)
    assert lock.acquire()
    try:
        with pytest.raises(ImportBusy):
            rig.run()
    finally:
        lock.release()


def test_stash_down_raises_and_saves_nothing(make):
    rig = make()
    (s1, r1), *_ = rig.pairs.items()
    rig.plex.add_play(r1, T0)
    rig.stash.fault(status=503)
    with pytest.raises(StashUnavailable):
        rig.run()
    rig.stash.clear_faults()
    assert rig.run().plays_added == 1


def test_odd_times_are_skipped(make):
    rig = make()
    (s1, r1), *_ = rig.pairs.items()
    for when in (None, 0, -5, 4_102_444_800):  # missing, the epoch, before it, year 2100
        rig.plex.add_play(r1, when)
    rig.plex.add_play(r1, T0)
    summary = rig.run()
    assert (summary.plays_added, summary.skipped["bad_time"]) == (1, 4)
    assert rig.plays(s1) == [T0]
