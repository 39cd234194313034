"""The benchmark scripts run and print their figures (never their values: no timing is asserted)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                            timeout=120, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"command: python bench/{script}" in out
    assert re.search(r"machine: cpus=\d+, python=\d+\.\d+", out)
    return out


NUMBER = r"\d+(\.\d+)?"


def test_hook_cost_prints_medians_and_the_ratio():
    out = run_bench("hook_cost.py", "--runs", "3", "--warmup", "1")
    for kind in ("floor/python", "floor/persistq", "hook/steady", "hook/first"):
        assert re.search(rf"^{re.escape(kind)}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+3$", out, re.M), kind
    assert re.search(rf"steady-state hook median {NUMBER} x the persist-queue floor .*: (MET|MISSED)", out)


def test_bulk_sync_prints_requests_by_kind_rss_and_targets():
    out = run_bench("bulk_sync.py", "--scenes", "50", "--latency", "0")
    assert "## first sync" in out and "## re-sync, nothing changed" in out
    assert "Sync complete: 50 synced" in out and "Sync complete: 0 synced, 50 unchanged" in out
    for kind in ("listing", "lookup", "edit", "upload", "other"):
        assert len(re.findall(rf"^  {kind}\s+\d+\s+{NUMBER} per scene( \s+\(.*\))?$", out, re.M)) == 2, kind
    assert re.search(r"task process: peak RSS (\d+\.\d MB|n/a), CPU", out)
    assert re.search(r"Stash requests: \d+ total", out)
    assert len(re.findall(r": (MET|MISSED)", out)) == 4


def test_matching_prints_cold_and_warm_per_size():
    out = run_bench("matching.py", "--sizes", "100,300", "--lookups", "20", "--latency", "0")
    for size in (100, 300):
        assert re.search(rf"^\s+{size}\s+{NUMBER}\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\d+$", out, re.M)
    assert re.search(r"warm lookup, 300 vs 100 items: .*(MET|MISSED)", out)


@pytest.mark.parametrize("batch", ["50", "7"])
def test_queue_ops_prints_cost_per_job(batch):
    out = run_bench("queue_ops.py", "--jobs", "60", "--batch", batch)
    assert re.search(rf"^take \+ settle \(drain\)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", out, re.M)


def test_history_import_prints_requests_per_run():
    out = run_bench("history_import.py", "--entries", "250", "--items", "20", "--latency", "0")
    for label in ("first", "again", r"new plays \(\+2\)"):
        assert re.search(rf"^## {label}$", out, re.M), label
    assert "250 plays added to 20 scenes" in out
    assert len(re.findall(r"history pages, \d+ other; Stash requests: \d+", out)) == 3
    assert len(re.findall(r": (MET|MISSED)", out)) == 2


def test_settings_check_bench_prints_figures():
    out = run_bench("settings_check.py", "--checks", "5", "--latency", "0")
    assert "check, nothing changed" in out and "hook: stat config.yml + session" in out
