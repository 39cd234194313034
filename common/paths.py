"""Where PlexSync keeps its files: one place, so no module guesses a path."""

import os
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent.parent
DATA_ENV = "STASH_PLUGIN_DATA"


class DataPaths:
    """Files under the data dir (``$STASH_PLUGIN_DATA`` or ``<plugin>/data``)."""

    def __init__(self, root: "str | os.PathLike[str] | None" = None) -> None:
        if root is None:
            root = os.environ.get(DATA_ENV) or PLUGIN_DIR / "data"
        self.root = Path(root)
        self.queue_dir = self.root / "queue"
        self.dlq_db = self.root / "dlq.db"
        self.timestamps = self.root / "sync_timestamps.json"
        self.device_id = self.root / "device_id.json"
        self.config_state = self.root / "config_state.json"
        self.match_index = self.root / "match_index.db"
        self.worker_lock = self.root / "worker.lock"
        self.drain_lock = self.root / "drain.lock"
        self.task_lock = self.root / "task.lock"
        self.worker_log = self.root / "worker.log"

    def ensure(self) -> "DataPaths":
        """Create the data folders, owner-only on POSIX (they hold job data)."""
        for folder in (self.root, self.queue_dir):
            folder.mkdir(parents=True, exist_ok=True)
            if os.name == "posix":
                os.chmod(folder, 0o700)
        return self
