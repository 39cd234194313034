"""Small JSON state files, written atomically and owner-only."""

import json
import os
import time
from typing import Any

# Windows refuses to replace a file another process has open (a reader of
# the state, a virus scanner, the indexer) with PermissionError, for a moment.
_WINDOWS = os.name == "nt"
REPLACE_TRIES = 20
REPLACE_PAUSE = 0.025  # s, growing linearly: about 5 s in all


def read_json(path: "str | os.PathLike[str]", default: Any = None) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def write_json(path: "str | os.PathLike[str]", data: Any) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    import tempfile  # only writers need it; the hook mostly reads

    folder = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def replace(src: "str | os.PathLike[str]", dst: "str | os.PathLike[str]") -> None:
    """``os.replace``, retried while Windows says the target is in use."""
    for attempt in range(1, REPLACE_TRIES + 1):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if not _WINDOWS or attempt == REPLACE_TRIES:
                raise
            time.sleep(REPLACE_PAUSE * attempt)
