"""Shared helpers for the benchmarks: machine facts, percentiles, output.

Every script prints its command line and the machine it ran on before its
figures, so a figure quoted in docs/performance.md can be reproduced.
"""

import os
import platform
import shlex
import statistics
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def package_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - a missing version is not an error here
        return "?"


def machine_facts() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "persist-queue": package_version("persist-queue"),
        "plexapi": package_version("plexapi"),
        "stashapp-tools": package_version("stashapp-tools"),
    }


def print_header(title: str) -> None:
    argv = [Path(sys.argv[0]).as_posix()] + sys.argv[1:]
    try:
        argv[0] = Path(sys.argv[0]).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        pass
    facts = machine_facts()
    print(f"# {title}")
    print(f"command: python {shlex.join(argv)}")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    if hasattr(os, "getloadavg"):  # other work on the machine skews wall times
        print("load average at start (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    sys.stdout.flush()


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


def median(values) -> float:
    return statistics.median(values)


class PeakRSS:
    """Polls a process's peak resident set (VmHWM in /proc/<pid>/status).

    Not ``ru_maxrss`` from wait4: Linux carries the parent's high-water mark
    into a child started by vfork/exec (subprocess does that), so a child of
    a big benchmark process would report the benchmark's own peak. VmHWM is
    the peak of the child's own address space since exec. It only grows, so
    the last value read before exit is the peak, up to ``interval`` before
    the end. None (n/a) where /proc is missing.
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.path = f"/proc/{pid}/status"
        self.interval = interval
        self.peak_kb = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="peak-rss", daemon=True)
        if os.path.exists(self.path):
            self._thread.start()

    def _read(self) -> None:
        try:
            with open(self.path, encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        kb = int(line.split()[1])
                        self.peak_kb = max(kb, self.peak_kb or 0)
                        return
        except (OSError, ValueError, IndexError):
            pass

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.interval)

    def stop(self):
        """Stop polling; the peak in MB, or None when it could not be read."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return None if self.peak_kb is None else self.peak_kb / 1024


def wait_child(pid: int):
    """Wait for child ``pid``; return (exit code, CPU seconds) from wait4.

    (None, None) where there is no wait4 (Windows): the caller then waits by
    other means.
    """
    if not hasattr(os, "wait4"):
        return None, None
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"
