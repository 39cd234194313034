"""Windows-only branches, run here by simulating what Windows does.

What cannot be simulated is listed in docs/reliability.md ("Windows").
"""

import os

import pytest

from common import jsonfile, locking
from tests.e2e import Env
from tests.runner import PluginRunner, scene_update


# -- os.replace while another process holds the target open -----------------------------

def failing_replace(times: int):
    """os.replace as Windows does it while another process has the target open."""
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) <= times:
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", str(dst))
        real(src, dst)

    return replace, calls


def test_replace_is_retried_while_the_target_is_open_on_windows(tmp_path, monkeypatch):
    replace, calls = failing_replace(3)
    monkeypatch.setattr(jsonfile, "_WINDOWS", True)
    monkeypatch.setattr(jsonfile.os, "replace", replace)
    pauses = []
    monkeypatch.setattr(jsonfile.time, "sleep", pauses.append)
    target = tmp_path / "state.json"
    jsonfile.write_json(target, {"a": "Łódź"})
    assert jsonfile.read_json(target) == {"a": "Łódź"} and len(calls) == 4 and len(pauses) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_replace_gives_up_after_its_tries_and_leaves_no_temp_file(tmp_path, monkeypatch):
    replace, calls = failing_replace(10**6)
    monkeypatch.setattr(jsonfile, "_WINDOWS", True)
    monkeypatch.setattr(jsonfile.os, "replace", replace)
    monkeypatch.setattr(jsonfile.time, "sleep", lambda s: None)
    with pytest.raises(PermissionError):
        jsonfile.write_json(tmp_path / "state.json", {})
    assert len(calls) == jsonfile.REPLACE_TRIES
    assert list(tmp_path.iterdir()) == []


def test_permission_error_is_not_retried_elsewhere(tmp_path, monkeypatch):
    """On POSIX a PermissionError from rename is a real permission problem."""
    replace, calls = failing_replace(1)
    monkeypatch.setattr(jsonfile, "_WINDOWS", False)
    monkeypatch.setattr(jsonfile.os, "replace", replace)
    with pytest.raises(PermissionError):
        jsonfile.write_json(tmp_path / "state.json", {})
    assert len(calls) == 1


# -- msvcrt locks: the pid stays readable -----------------------------------------------

class FakeMsvcrt:
    """msvcrt.locking as documented: locks ``n`` bytes from the current position."""

    LK_NBLCK, LK_UNLCK = 2, 0

    def __init__(self):
        self.locked = {}

    def locking(self, fd, mode, n):
        start = os.lseek(fd, 0, os.SEEK_CUR)
        region = (start, start + n)
        if mode == self.LK_NBLCK:
            if region in self.locked.values():
                raise PermissionError(13, "Permission denied")
            self.locked[fd] = region
        else:
            assert self.locked.pop(fd) == region  # Windows: unlock exactly the locked region


def test_windows_lock_leaves_the_pid_readable(tmp_path, monkeypatch):
    fake = FakeMsvcrt()
    try_lock, unlock = locking.msvcrt_locks(fake)
    monkeypatch.setattr(locking, "_try_lock", try_lock)
    monkeypatch.setattr(locking, "_unlock", unlock)
    lock, other = locking.FileLock(tmp_path / "worker.lock"), locking.FileLock(tmp_path / "worker.lock")
    assert lock.acquire()
    ((start, end),) = fake.locked.values()
    pid = str(os.getpid()).encode()
    assert (tmp_path / "worker.lock").read_bytes() == pid
    assert start >= len(pid) + 16  # Windows locks are mandatory: byte 0..len(pid) must stay unlocked
    assert other.holder_pid() == os.getpid()
    assert other.is_locked_elsewhere()
    lock.release()
    assert fake.locked == {} and other.acquire()
    other.release()


# -- the hook's stdin under a Windows console code page ---------------------------------

class Cp1252Runner(PluginRunner):
    """PluginRunner writes stdin as Stash does: raw UTF-8."""

    def env(self):
        env = super().env()
        env["PYTHONIOENCODING"] = "cp1252:strict"  # what a Windows pipe decodes with by default
        return env


def test_hook_reads_utf8_under_a_cp1252_console(tmp_path):
    env = Env(tmp_path)
    try:
        env.runner = Cp1252Runner(tmp_path / "cp1252", env.stash)
        title = "Łódź – Привет 東京"
        sid, rk = env.scene_with_item(1, title=title)
        result = env.hook(sid, scene_update(sid, title=title, details="Zażółć gęślą jaźń"))
        assert result.parsed and result.error is None, result.stderr
        env.settle()
        assert env.plex.item(rk)["title"] == title
    finally:
        env.close()
