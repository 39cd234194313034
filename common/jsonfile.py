"""Small JSON state files, written atomically and owner-only."""

import json
import os
from typing import Any


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
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
