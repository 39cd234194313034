"""bench/repair.py runs and prints its figures (no value is asserted)."""

import re

from tests.test_bench_smoke import run_bench


def test_repair_prints_requests_per_kind_and_cpu_per_item():
    out = run_bench("repair.py", "--items", "600", "--drift", "0.05")
    assert "first repair: 30 scenes re-synced of 600 synced items" in out
    assert re.search(r"^second repair .*: 0 scenes re-synced", out, re.M)
    assert len(re.findall(r"^  listing page\s+2$", out, re.M)) == 2
    assert len(re.findall(r"ms per item  \[target <= 1 ms: (MET|MISSED)\]", out)) == 2
