"""Start the background worker when none runs. Cheap: the hook calls it.

The worker is a separate, detached process that outlives the hook (Stash
kills only the hook's pid on cancel and waits only for the hook). It gets the
Stash connection on its stdin, never on its command line, and no pipe to
Stash: its stdout/stderr go nowhere (it logs to worker.log).

Exactly one spawn per cold start. ``worker.lock`` alone cannot give that: a
new worker needs a Python start and its imports (a second or more on a busy
machine) before it holds the lock, and every hook in that window would see
the lock free and start another. So the hook that starts a worker first
claims the spawn by creating ``worker.spawning`` exclusively (O_EXCL, atomic
on every OS and filesystem Stash runs on); hooks that find a live claim
leave the start to it. The worker removes the claim once it holds
``worker.lock`` (or found another worker holding it). A claim whose worker
is gone (its pid no longer runs) or that is older than ``CLAIM_GRACE`` is
stale and is replaced.
"""

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, Optional

from common.locking import FileLock
from common.paths import PLUGIN_DIR

ENTRY = os.path.join(PLUGIN_DIR, "PlexSync.py")
CLAIM_GRACE = 30.0  # a starting worker takes worker.lock well within this


def worker_running(paths) -> bool:
    return FileLock(paths.worker_lock).is_locked_elsewhere()


def ensure_worker(paths, server_connection: Dict[str, Any]) -> bool:
    """Spawn a worker unless one runs or is starting. Returns True if spawned.

    No lost wake-up: a job queued before this call is drained by the worker
    holding the lock (it looks at the queue again after releasing it), or by
    the one whose claim is live, or by the one started here.
    """
    if worker_running(paths):
        return False
    token = claim_spawn(paths.spawn_claim)
    if token is None:
        return False
    proc = spawn_worker(paths, server_connection, token)
    _record_pid(paths.spawn_claim, proc.pid)
    return True


def claim_spawn(claim: str, now: Optional[float] = None) -> Optional[str]:
    """Create the spawn claim; its token, or None when a live claim exists."""
    token = f"{os.getpid()}-{time.time_ns()}"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if claim_is_live(claim, now):
                return None
            _unlink(claim)  # its worker died before taking the lock
            continue
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token)
        return token
    return None  # another hook replaced the stale claim first: its worker will run


def claim_is_live(claim: str, now: Optional[float] = None) -> bool:
    try:
        with open(claim, encoding="ascii", errors="replace") as fh:
            fields = fh.read().split()
        age = (time.time() if now is None else now) - os.stat(claim).st_mtime
    except FileNotFoundError:
        return False  # just removed: the worker holds the lock, or a new claim can be made
    except OSError:
        return True  # unreadable for a moment (Windows sharing): assume live
    if age > CLAIM_GRACE or age < -CLAIM_GRACE:  # the clock jumped: do not trust it
        return False
    if len(fields) >= 2 and fields[1].isdigit():
        return pid_alive(int(fields[1]))  # the worker's pid
    hook_pid = fields[0].split("-")[0] if fields else ""
    # No worker pid yet: live while the hook that claimed is still starting it.
    return pid_alive(int(hook_pid)) if hook_pid.isdigit() else True


def release_claim(claim: str, token: Optional[str]) -> None:
    """The worker's side: remove the claim made for it, never another one."""
    if not token:
        return
    try:
        with open(claim, encoding="ascii", errors="replace") as fh:
            fields = fh.read().split()
    except OSError:
        return
    if fields and fields[0] == token:
        for _ in range(5):  # Windows refuses while a hook has the file open
            try:
                os.unlink(claim)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie is not)."""
    if os.name == "nt":  # pragma: no cover - Windows only; os.kill(pid, 0) would terminate it
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    try:  # Linux: a dead child nobody reaped yet is not a worker
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _pid_alive_windows(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _record_pid(claim: str, pid: int) -> None:
    try:  # never O_CREAT: a worker that already took the lock removed the claim
        fd = os.open(claim, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return
    try:
        os.write(fd, f" {pid}".encode())
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def spawn_worker(paths, server_connection: Dict[str, Any], token: Optional[str] = None) -> subprocess.Popen:
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
        proc.stdin.write(json.dumps({"server_connection": server_connection, "spawn_token": token}).encode())
        proc.stdin.close()
    except OSError:
        pass
    return proc
