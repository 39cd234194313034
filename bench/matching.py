"""Matching at scale: resolving one scene to its Plex item, cold and warm.

Usage: python bench/matching.py [--sizes 1000,10000,100000] [--lookups 2000] [--latency 0.002]

In-process: plex.matcher.Matcher with its on-disk index (plex/store.py),
talking to the Plex emulator on loopback through the real plexapi. For each
library size (one section, one file per item):

  cold      the first scene resolved with no index yet: builds the index
            from the library listing (its pages are counted), then looks up
  reopened  the first scene resolved by a new Matcher over the index already
            on disk (what each new worker/task process pays)
  warm      each further scene (random ones), index open: median and p95
            over --lookups scenes, and the Plex requests they made

--profile prints a cProfile of the cold match at the largest size.

Nothing is asserted; the figures are printed with the command and machine.
"""

import argparse
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

from _common import median, percentile, print_header, verdict  # also puts the repo on sys.path

from common.paths import DataPaths  # noqa: E402
from plex.client import connect  # noqa: E402
from plex.matcher import Matcher  # noqa: E402
from plex.store import MatchStore  # noqa: E402
from tests.emulators.plex import PlexEmulator  # noqa: E402
from validation.config import load_config  # noqa: E402
from validation.scene import SceneData  # noqa: E402

PLEX_TOKEN = "plex-bench-token-0123456789"
DEVICE_ID = "6f1c1f8e-6a43-4d3c-9d55-1b1f7a0e2c11"


def scene(i: int) -> SceneData:
    return SceneData(id=i, title=f"Title {i}", files=[f"/data/stash/scene_{i}.mp4"])


def measure(size: int, lookups: int, latency: float, base: Path, rng: random.Random, profile: bool = False) -> dict:
    plex = PlexEmulator(token=PLEX_TOKEN).start()
    try:
        section = plex.add_section("Stash", locations=["/data/stash"])
        for i in range(1, size + 1):
            plex.add_item(section, f"scene_{i}", [f"/data/stash/scene_{i}.mp4"])
        plex.latency = latency
        config = load_config({"plex_url": plex.url, "plex_token": PLEX_TOKEN, "plex_library": "Stash"})
        paths = DataPaths(base / f"data-{size}").ensure()
        server = connect(config, DEVICE_ID)  # one GET /, as each worker does once
        plex.clear_requests()

        # cold: no index on disk
        store = MatchStore(paths.match_index)
        matcher = Matcher(config, store, lambda: server)
        first = rng.randint(1, size)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        hit = matcher.match(scene(first))
        if profiler:
            profiler.disable()
        cold = time.perf_counter() - started
        if profiler:
            print(f"\n## cProfile of the cold match at {size} items (this thread only; the emulator's "
                  f"threads show as time waiting in recv_into)")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)
        assert hit and hit[0].file.endswith(f"/scene_{first}.mp4")
        cold_requests = len(plex.requests)
        cold_listing = plex.count("GET", f"/library/sections/{section}/all")
        store.close()

        # reopened: a new Matcher (a new process) over the index on disk
        plex.clear_requests()
        started = time.perf_counter()
        store = MatchStore(paths.match_index)
        matcher = Matcher(config, store, lambda: server)
        matcher.match(scene(rng.randint(1, size)))
        reopened = time.perf_counter() - started

        # warm: random scenes, index open
        ids = [rng.randint(1, size) for _ in range(lookups)]
        times = []
        for i in ids:
            s = scene(i)
            started = time.perf_counter()
            matcher.match(s)
            times.append(time.perf_counter() - started)
        warm_requests = len(plex.requests)
        store.close()
        return {"size": size, "cold": cold, "cold_requests": cold_requests, "cold_listing": cold_listing,
                "reopened": reopened, "warm_median": median(times), "warm_p95": percentile(times, 95),
                "warm_requests": warm_requests, "lookups": lookups}
    finally:
        plex.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="library sizes, comma-separated")
    parser.add_argument("--lookups", type=int, default=2000, help="warm lookups per size")
    parser.add_argument("--latency", type=float, default=0.002, help="emulated Plex latency per request, seconds")
    parser.add_argument("--seed", type=int, default=5, help="random seed for the scenes looked up")
    parser.add_argument("--profile", action="store_true",
                        help="profile the cold match of the largest size (its time is then not comparable)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print_header("matching at scale (plex/matcher.py)")
    print(f"sizes: {sizes}   warm lookups per size: {args.lookups}   Plex latency per request: "
          f"{args.latency * 1000:g} ms")
    sys.stdout.flush()
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="plexsync-matchbench-") as tmp:
        for size in sizes:
            rows.append(measure(size, args.lookups, args.latency, Path(tmp), rng,
                                profile=args.profile and size == sizes[-1]))
            r = rows[-1]
            print(f"  {size} items done: cold {r['cold'] * 1000:.1f} ms, warm median {r['warm_median'] * 1e6:.0f} us")
            sys.stdout.flush()
    print(f"\n{'items':>8s} {'cold ms':>9s} {'listing pages':>14s} {'reopened ms':>12s} "
          f"{'warm median us':>15s} {'warm p95 us':>12s} {'warm Plex req':>14s}")
    for r in rows:
        print(f"{r['size']:8d} {r['cold'] * 1000:9.1f} {r['cold_listing']:14d} {r['reopened'] * 1000:12.2f} "
              f"{r['warm_median'] * 1e6:15.1f} {r['warm_p95'] * 1e6:12.1f} {r['warm_requests']:14d}")
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        growth = large["warm_median"] / small["warm_median"]
        print("\n## target (issue 5)")
        print(f"warm lookup, {large['size']} vs {small['size']} items: {growth:.2f} x the time "
              f"({large['size'] // small['size']} x the items), {large['warm_requests']} Plex requests: "
              f"{verdict(growth <= 1.5 and large['warm_requests'] == 0)} "
              f"(flat = within 1.5 x and no Plex request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
