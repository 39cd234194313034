"""Shared set-up for end-to-end tests: both emulators plus the plugin runner."""

import time
from pathlib import Path

import pytest

from tests.emulators.plex import PlexEmulator
from tests.emulators.stash import StashEmulator, validate_documents
from tests.runner import PluginRunner, scene_update

PLEX_TOKEN = "plex-e2e-token-0123456789"
STASH_API_KEY = "stash-e2e-apikey-0123456789"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "stash-schema"


class Env:
    """One Plex, one Stash and the installed plugin."""

    def __init__(self, tmp_path: Path, *, settings=None, require_auth=True, host="127.0.0.1", from_zip=None) -> None:
        self.plex = PlexEmulator(token=PLEX_TOKEN).start()
        self.stash = StashEmulator(api_key=STASH_API_KEY, require_auth=require_auth).start()
        self.section = self.plex.add_section("Stash", locations=["/data/stash"])
        base = {"plex_url": self.plex.url, "plex_token": PLEX_TOKEN, "plex_library": "Stash", "poll_interval": 0.3}
        base.update(settings or {})
        self.stash.set_plugin_settings("PlexSync", {k: v for k, v in base.items() if v is not None})
        self.runner = PluginRunner(tmp_path, self.stash, host=host, from_zip=from_zip)

    def settings(self, **changes) -> None:
        current = dict(self.stash.plugin_settings("PlexSync"))
        current.update(changes)
        self.stash.set_plugin_settings("PlexSync", {k: v for k, v in current.items() if v is not None})

    def scene_with_item(self, n: int, **scene):
        path = f"/data/stash/scene_{n}.mp4"
        rk = self.plex.add_item(self.section, f"scene_{n}", [path])
        fields = {"title": f"Title {n}", "details": f"Details {n}", "date": "2024-03-05", "studio": "Acme",
                  "performers": ["Jane Doe"], "tags": ["Outdoor", "HD"], "rating100": 80, "files": [path]}
        fields.update(scene)
        sid = self.stash.add_scene(**fields)
        return sid, rk

    def scenes_with_items(self, n: int, **fields):
        """Scenes 1..n, each with its Plex item: {scene id: rating key}."""
        scenes = dict(self.scene_with_item(i, **fields) for i in range(1, n + 1))
        self.runner.data_dir.mkdir(parents=True, exist_ok=True)
        return scenes

    def hook(self, scene_id: int, ctx=None):
        return self.runner.run_hook(ctx or scene_update(scene_id, title="changed"))

    def settle(self, timeout: float = 60):
        self.runner.wait_idle(timeout)

    def queue(self):
        from sync_queue.queue import JobQueue

        return JobQueue(str(self.runner.data_dir / "queue"))

    def make_retries_due(self) -> int:
        """Fake the passing of time: every waiting retry becomes due now."""
        q = self.queue()
        try:
            return q.shift_due()
        finally:
            q.close()

    def postpone_retries(self, seconds: float) -> int:
        """Fake a longer wait: every waiting retry becomes due ``seconds`` later."""
        q = self.queue()
        try:
            return q.shift_due(-seconds)
        finally:
            q.close()

    def stats(self):
        from sync_queue.queue import JobQueue

        q = JobQueue(str(self.runner.data_dir / "queue"))
        try:
            return q.stats()
        finally:
            q.close()

    def title_at(self, path: str):
        """The title of the Plex item for ``path``, or None while Plex has none."""
        rk = self.plex.find_by_file(path)
        return self.plex.item(rk)["title"] if rk else None

    def queued_scenes(self):
        """The scenes with a job still queued, sorted, whether due, waiting or in a worker's hands
        (a jittered retry may be due already)."""
        q = self.queue()
        try:
            return sorted(row["scene_id"] for row in q.rows())
        finally:
            q.close()

    def dlq(self):
        from sync_queue.dlq import DeadLetterQueue

        return DeadLetterQueue(self.runner.data_dir / "dlq.db").list(limit=1000)

    def close(self) -> None:
        self.runner.kill_workers()
        self.plex.stop()
        self.stash.stop()
        if SCHEMA_DIR.exists():
            errors = validate_documents(self.stash.documents, SCHEMA_DIR)
            assert not errors, f"documents the plugin sent are invalid against Stash's schema: {errors[:3]}"


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def past_latest_update(env, timeout: float = 5) -> None:
    """Wait until the clock is past Stash's newest updated_at second: a sync read
    in that second never counts as current (SyncTimestamps.is_current)."""
    latest = env.stash.latest_stamp()
    wait_for(lambda: time.time() >= latest + 1, timeout, message="the second after Stash's newest updated_at")


def plexapi_server(emu):
    """The real plexapi client on the Plex emulator."""
    from plexapi.server import PlexServer

    return PlexServer(emu.url, emu.token, timeout=5)


def wait_for(predicate, timeout: float = 30, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")
