"""Small state files shared by the hook, the worker and the tasks (not queue state)."""

import os
import time
from datetime import datetime
from typing import Any, Dict, Optional

from common import defaults
from common.jsonfile import read_json, write_json


class ConfigState:
    """The last config check, cached so the hook need not ask Stash on every save.

    Holds no secrets: {"enabled", "error", "checked_at", "stamp"}. ``stamp``
    is the size and modification time of Stash's ``config.yml`` (where Stash
    keeps plugin settings; ``server_connection.Dir`` is its folder) when the
    check was made. The hook trusts an "enabled and valid" state only while
    that file is unchanged: saving the plugin's settings rewrites it, so the
    next save asks Stash again (one stat per save, no request).
    """

    def __init__(self, path) -> None:
        self.path = path

    def read(self) -> Optional[Dict[str, Any]]:
        state = read_json(self.path)
        return state if isinstance(state, dict) else None

    def usable(self, stamp: Optional[list] = None) -> bool:
        state = self.read()
        return bool(state and state.get("enabled") and not state.get("error") and state.get("stamp") == stamp)

    def write(self, *, enabled: bool, error: Optional[str] = None, stamp: Optional[list] = None) -> None:
        write_json(self.path, {"enabled": bool(enabled), "error": error, "checked_at": time.time(), "stamp": stamp})


def config_file_stamp(conn: Dict[str, Any]) -> Optional[list]:
    """[mtime_ns, size] of Stash's config.yml, or None when Stash gave no folder or it has none."""
    folder = (conn or {}).get("Dir") if isinstance(conn, dict) else None
    if not folder or not isinstance(folder, str):
        return None
    try:
        st = os.stat(os.path.join(folder, "config.yml"))
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


class StashSession:
    """The newest Stash session cookie a hook or task was handed, for a running worker.

    A credential, so owner-only (write_json's temp file is created 0600); never
    logged. Written only when the cookie changed, so a save costs one small read.
    """

    def __init__(self, path) -> None:
        self.path = path

    def read(self) -> str:
        data = read_json(self.path)
        value = data.get("cookie") if isinstance(data, dict) else None
        return value if isinstance(value, str) else ""

    def offer(self, conn: Dict[str, Any]) -> None:
        cookie = (conn or {}).get("SessionCookie") if isinstance(conn, dict) else None
        value = cookie.get("Value") if isinstance(cookie, dict) else None
        if not value or not isinstance(value, str) or value == self.read():
            return
        write_json(self.path, {"cookie": value})
        if os.name == "posix":
            os.chmod(self.path, 0o600)


class SyncTimestamps:
    """scene id -> [Stash ``updated_at``, when that snapshot was read] at the last successful sync.

    Stash stores ``updated_at`` to the second, so a save in the same second
    as an earlier one has the same ``updated_at``. A scene counts as current
    only when its snapshot was read in a later second than its ``updated_at``:
    every save stamped with that second had happened by then. Entries of the
    older form (a bare ``updated_at`` string) are trusted as before.

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
        value = self._data.get(str(scene_id))
        return value[0] if isinstance(value, list) and value else value

    def last_sync_time(self) -> Optional[float]:
        value = self._data.get("_last_success")
        return float(value) if isinstance(value, (int, float)) else None

    def is_current(self, scene_id: int, updated_at: Optional[str]) -> bool:
        value = self._data.get(str(scene_id))
        if not updated_at or value is None:
            return False
        if isinstance(value, str):
            return value == updated_at
        if not isinstance(value, list) or len(value) != 2 or value[0] != updated_at:
            return False
        stamp = _epoch(updated_at)
        return stamp is not None and isinstance(value[1], (int, float)) and value[1] >= stamp + 1

    def record(self, scene_id: int, updated_at: Optional[str], read_at: Optional[float] = None) -> None:
        """``read_at``: epoch s the synced snapshot was read from Stash (None: unknown, never current)."""
        if updated_at:
            self._data[str(scene_id)] = [updated_at, float(read_at or 0.0)]
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


def _epoch(stamp: str) -> Optional[float]:
    """Epoch seconds of an RFC3339 time as Stash writes it (``Z`` or an offset)."""
    try:
        parsed = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None
