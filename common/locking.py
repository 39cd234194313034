"""A portable, crash-safe, non-blocking file lock.

flock/msvcrt locks belong to the open file, so the OS releases them when the
holder dies (even by SIGKILL); a stale lock file never blocks anyone. Written
here rather than imported because the hook checks the lock on every Stash
save and the filelock package alone costs ~60 ms of import time.
"""

import os

# The byte that carries the lock, past the pid text: Windows locks are
# mandatory, so locking byte 0 would make the holder's pid unreadable.
LOCK_OFFSET = 1024


def msvcrt_locks(msvcrt):
    """(try_lock, unlock) on Windows' msvcrt, a module argument so tests can run it."""

    def try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def unlock(fd: int) -> None:
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    return try_lock, unlock


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    _try_lock, _unlock = msvcrt_locks(msvcrt)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """Exclusive lock on ``path``; ``acquire()`` never blocks."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = os.fspath(path)
        self._fd: "int | None" = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, record_pid: bool = True) -> bool:
        """Take the lock if free; return whether this object now holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if _try_lock(fd):
            self._fd = fd
            if record_pid:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, str(os.getpid()).encode())
            return True
        os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def is_locked_elsewhere(self) -> bool:
        """True when another process holds the lock (checked without keeping it)."""
        if self._fd is not None:
            return False
        if not self.acquire(record_pid=False):  # a probe must not claim the pid
            return True
        self.release()
        return False

    def holder_pid(self) -> "int | None":
        """The pid written by the current holder, if any (for messages only)."""
        try:
            with open(self.path, encoding="ascii") as fh:
                text = fh.read().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def __enter__(self) -> "FileLock":
        if not self.acquire():
            raise BlockingIOError(f"lock {self.path} is held by another process")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
