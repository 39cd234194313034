"""Start the background worker when none runs. Cheap: the hook calls it.

The worker is a separate, detached process that outlives the hook (Stash
kills only the hook's pid on cancel and waits only for the hook). It gets the
Stash connection on its stdin, never on its command line, and no pipe to
Stash: its stdout/stderr go nowhere (it logs to worker.log).
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict

from common.locking import FileLock
from common.paths import PLUGIN_DIR

ENTRY = os.path.join(PLUGIN_DIR, "PlexSync.py")


def worker_running(paths) -> bool:
    return FileLock(paths.worker_lock).is_locked_elsewhere()


def ensure_worker(paths, server_connection: Dict[str, Any]) -> bool:
    """Spawn a worker unless one holds the worker lock. Returns True if spawned.

    Two hooks may race here and both spawn; the loser cannot take the lock
    and exits at once, so at most one extra short-lived process per race.
    """
    if worker_running(paths):
        return False
    spawn_worker(paths, server_connection)
    return True


def spawn_worker(paths, server_connection: Dict[str, Any]) -> subprocess.Popen:
    kwargs: Dict[str, Any] = {
        "stdin": subprocess.PIPE,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "close_fds": True,
        "cwd": paths.root,
    }
    if os.name == "nt":  # pragma: no cover - Windows only
        kwargs["creationflags"] = (
            subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        )
    else:
        kwargs["start_new_session"] = True
    env = dict(os.environ)
    env["STASH_PLUGIN_DATA"] = paths.root
    kwargs["env"] = env
    proc = subprocess.Popen([sys.executable, ENTRY, "--worker"], **kwargs)
    try:
        proc.stdin.write(json.dumps({"server_connection": server_connection}).encode())
        proc.stdin.close()
    except OSError:
        pass
    return proc
