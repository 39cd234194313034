"""Helpers for the reliability tests: instrumented drainers, process counting, figures.

* ``Drainers`` launches PlexSync.py's own ``main()`` (background worker or a
  task) from the installed plugin, in a child process whose only addition is
  a record of every batch it processes: ``S pid time`` when
  ``Processor.run`` starts and ``E pid time`` when it returns. Two drainers
  at once show up as overlapping intervals; a killed child's interval ends at
  the moment the test sent SIGKILL.
* ``worker_pids`` lists live ``PlexSync.py --worker`` processes of one plugin
  install (from /proc), to count spawns.
* ``record`` collects figures (trials, jobs lost, requests during an outage,
  generated cases); conftest prints them after the run and writes them to
  ``$PLEXSYNC_FIGURES`` (JSON) when that is set.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

from tests.runner import worker_processes

FIGURES: Dict[str, Dict[str, object]] = {}


def record(name: str, **values: object) -> None:
    FIGURES.setdefault(name, {}).update(values)


def long_run(request) -> bool:
    return bool(request.config.getoption("--long"))


CHILD = r"""
import os, sys, time
plugin_dir, intervals = sys.argv[1], sys.argv[2]
sys.path.insert(0, plugin_dir)
from worker import processor

def note(kind):
    fd = os.open(intervals, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind} {os.getpid()} {time.time()!r}\n".encode())
    finally:
        os.close(fd)

_run = processor.Processor.run

def run(self, raws):
    note("S")
    try:
        return _run(self, raws)
    finally:
        note("E")

processor.Processor.run = run
import PlexSync
sys.exit(PlexSync.main(sys.argv[3:]))
"""


class Drainers:
    """Instrumented drainer processes for one installed plugin (tests.runner.PluginRunner)."""

    def __init__(self, runner, intervals: Path) -> None:
        self.runner = runner
        self.intervals = Path(intervals)
        self.procs: Dict[int, Tuple[subprocess.Popen, str]] = {}
        self.killed_at: Dict[int, float] = {}
        self.outputs: List[Path] = []
        self.kills = 0

    def start(self, mode: str = "worker") -> subprocess.Popen:
        """``worker``: PlexSync.py --worker; anything else: that task mode (e.g. process_queue)."""
        if mode == "worker":
            argv, payload = ["--worker"], {"server_connection": self.runner.server_connection()}
        else:
            argv, payload = [], {"server_connection": self.runner.server_connection(), "args": {"mode": mode}}
        cmd = [sys.executable, "-c", CHILD, str(self.runner.plugin_dir), str(self.intervals), *argv]
        out = self.intervals.parent / f"drainer-{len(self.procs)}-{mode}.out"
        with open(out, "wb") as fh:  # stdout and stderr, for the checks on what was said
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT,
                                    cwd=str(self.runner.stash_dir), env=self.runner.env())
        self.outputs.append(out)
        proc.stdin.write(json.dumps(payload).encode())
        proc.stdin.close()
        self.procs[proc.pid] = (proc, mode)
        return proc

    def output(self) -> str:
        """Everything the drainer processes wrote (a task's JSON result and Stash log lines)."""
        return "".join(p.read_text(encoding="utf-8", errors="replace") for p in self.outputs if p.exists())

    def alive(self) -> List[subprocess.Popen]:
        return [p for p, _ in self.procs.values() if p.poll() is None]

    def kill(self, proc: subprocess.Popen) -> bool:
        if proc.poll() is not None:
            return False
        self.killed_at[proc.pid] = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills += 1
        return True

    def batches(self) -> List[Tuple[int, float, float]]:
        """(pid, start, end) of every batch processed; a killed batch ends at its kill."""
        open_: Dict[int, float] = {}
        out = []
        text = self.intervals.read_text() if self.intervals.exists() else ""
        for line in text.splitlines():
            kind, pid, when = line.split()
            pid, when = int(pid), float(when)
            if kind == "S":
                open_[pid] = when
            else:
                out.append((pid, open_.pop(pid), when))
        for pid, start in open_.items():
            end = self.killed_at.get(pid)
            if end is None:  # still running: a live batch
                end = time.time()
            out.append((pid, start, end))
        return sorted(out, key=lambda b: b[1])

    def overlaps(self) -> List[Tuple[Tuple[int, float, float], Tuple[int, float, float]]]:
        """Pairs of batches of different processes that ran at the same time."""
        found = []
        batches = self.batches()
        for i, a in enumerate(batches):
            for b in batches[i + 1:]:
                if b[1] >= a[2]:
                    break
                if b[0] != a[0]:
                    found.append((a, b))
        return found


worker_pids = worker_processes


def queue_rows(data_dir) -> Dict[int, List[int]]:
    """scene id -> states of its rows ("pending" or "in_progress"), read in one query."""
    from sync_queue.queue import JobQueue

    if not (Path(data_dir) / "queue" / "data.db").exists():
        return {}
    queue = JobQueue(str(Path(data_dir) / "queue"))
    try:
        rows = queue.rows()
    finally:
        queue.close()
    out: Dict[int, List[str]] = {}
    for row in rows:
        out.setdefault(row["scene_id"], []).append(row["state"])
    return out


def integrity(db_path) -> str:
    import sqlite3

    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def wait_until(predicate, timeout: float = 60, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def write_figures(write_line) -> None:
    if not FIGURES:
        return
    write_line("")
    write_line("Reliability figures:")
    for name, values in FIGURES.items():
        write_line(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    target = os.environ.get("PLEXSYNC_FIGURES")
    if target:
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(FIGURES, fh, indent=2, sort_keys=True)


def change_scenes(env, scenes, label: str) -> None:
    """Save new values in Stash and queue their events, as the hooks would."""
    from sync_queue.queue import JobQueue, make_job

    for sid in scenes:
        env.stash.update_scene(sid, title=f"{label} {sid}")
    env.runner.data_dir.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(str(env.runner.data_dir / "queue"))
    try:
        queue.put_many([make_job(sid, "metadata", {"source": "hook"}) for sid in scenes])
    finally:
        queue.close()


def stale_scenes(env, scenes) -> list:
    """Scenes whose Plex title is not their current Stash title."""
    return [sid for sid, rk in scenes.items() if env.plex.item(rk)["title"] != env.stash.scene(sid)["title"]]
