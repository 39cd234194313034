"""Small state files shared by the hook, the worker and the tasks (not queue state)."""

import time
from typing import Any, Dict, Optional

from common import defaults
from common.jsonfile import read_json, write_json


class ConfigState:
    """The last config check, cached so the hook need not ask Stash on every save.

    Holds no secrets: {"enabled": bool, "error": str|None, "checked_at": ts}.
    The hook trusts an "enabled and valid" state; anything else makes it ask
    Stash again, so re-enabling or fixing the settings takes effect at once.
    """

    def __init__(self, path) -> None:
        self.path = path

    def read(self) -> Optional[Dict[str, Any]]:
        state = read_json(self.path)
        return state if isinstance(state, dict) else None

    def usable(self) -> bool:
        state = self.read()
        return bool(state and state.get("enabled") and not state.get("error"))

    def write(self, *, enabled: bool, error: Optional[str] = None) -> None:
        write_json(self.path, {"enabled": bool(enabled), "error": error, "checked_at": time.time()})


class SyncTimestamps:
    """scene id -> Stash ``updated_at`` of the last successful sync.

    Written only after Plex confirmed the edit, atomically, and at most every
    ``flush_every`` seconds during a long drain (a lost entry only costs a
    re-check that finds nothing to change).
    """

    def __init__(self, path, flush_every: float = defaults.TIMESTAMP_FLUSH) -> None:
        self.path = path
        self.flush_every = flush_every
        data = read_json(path, {})
        self._data: Dict[str, Any] = data if isinstance(data, dict) else {}
        self._dirty = False
        self._flushed_at = time.monotonic()

    def get(self, scene_id: int) -> Optional[str]:
        return self._data.get(str(scene_id))

    def last_sync_time(self) -> Optional[float]:
        value = self._data.get("_last_success")
        return float(value) if isinstance(value, (int, float)) else None

    def is_current(self, scene_id: int, updated_at: Optional[str]) -> bool:
        return bool(updated_at) and self.get(scene_id) == updated_at

    def record(self, scene_id: int, updated_at: Optional[str]) -> None:
        if updated_at:
            self._data[str(scene_id)] = updated_at
        self._data["_last_success"] = time.time()
        self._dirty = True
        if time.monotonic() - self._flushed_at >= self.flush_every:
            self.flush()

    def forget(self, scene_id: int) -> None:
        if self._data.pop(str(scene_id), None) is not None:
            self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            write_json(self.path, self._data)
            self._dirty = False
        self._flushed_at = time.monotonic()
