"""Where PlexSync keeps its files: one place, so no module guesses a path.

Plain strings and os.path, not pathlib: the hook imports this on every
Stash save, and pathlib alone costs several milliseconds of import time.
"""

import os

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ENV = "STASH_PLUGIN_DATA"


class DataPaths:
    """Files under the data dir (``$STASH_PLUGIN_DATA`` or ``<plugin>/data``)."""

    def __init__(self, root: "str | os.PathLike[str] | None" = None) -> None:
        if root is None:
            root = os.environ.get(DATA_ENV) or os.path.join(PLUGIN_DIR, "data")
        self.root = os.path.abspath(os.fspath(root))
        join = lambda name: os.path.join(self.root, name)  # noqa: E731
        self.queue_dir = join("queue")
        self.queue_db = os.path.join(self.queue_dir, "data.db")  # jobs + circuit breaker
        self.dlq_db = join("dlq.db")
        self.timestamps = join("sync_timestamps.json")
        self.device_id = join("device_id.json")
        self.config_state = join("config_state.json")
        self.stash_session = join("stash_session.json")  # a credential: the newest Stash cookie (0600)
        self.match_index = join("match_index.db")
        self.match_index_lock = self.match_index + ".lock"  # one index builder at a time (plex.store)
        self.written = join("written.db")  # what PlexSync wrote, collections it created
        self.written_options = join("written_options.json")  # settings that shaped it (worker.reshape)
        self.worker_lock = join("worker.lock")
        self.spawn_claim = join("worker.spawning")  # a worker started, lock not yet taken
        self.drain_lock = join("drain.lock")
        self.task_lock = join("task.lock")
        self.worker_log = join("worker.log")
        # Plex -> Stash watch-history import: watermark, what Plex said, links.
        self.history_state = join("history_state.json")
        self.history_lock = join("history.lock")
        self.pending_dir = join("pending")  # saves the hook could not queue (common.pending)
        self.settings_defaults = join("settings_defaults.json")  # defaults stored on the settings page once

    def ensure(self) -> "DataPaths":
        """Create the data folders, owner-only on POSIX (they hold job data)."""
        for folder in (self.root, self.queue_dir):
            os.makedirs(folder, exist_ok=True)
            if os.name == "posix":
                os.chmod(folder, 0o700)
        return self
