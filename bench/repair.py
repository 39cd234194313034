"""Repair Plex Drift at scale: Plex requests per kind and CPU per item.

Usage: python bench/repair.py [--items 100000] [--drift 0.01]

In-process: the repair's own steps (worker/tasks/repair.py, plex/drift.py)
and plex.sync.PlexSync, against the Plex emulator on loopback through the
real plexapi. One library of --items items, each already as PlexSync wants
it and recorded as seen by an earlier repair; then --drift of them drift:
60% edited in Plex, 20% re-added with a new ratingKey, 20% deleted. The
repair runs once (list, check posters, re-sync the drifted scenes, record
updatedAt), then a second time, when nothing drifted.

CPU is the main thread's (time.thread_time): the emulator answers on its
own threads in this process and is not counted. Nothing is asserted.
"""

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import print_header, verdict  # also puts the repo on sys.path

from common.paths import DataPaths  # noqa: E402
from plex.drift import listing_pages  # noqa: E402
from plex.sync import PlexSync  # noqa: E402
from tests.emulators.plex import PlexEmulator  # noqa: E402
from validation.config import load_config  # noqa: E402
from validation.scene import SceneData  # noqa: E402
from worker.tasks.repair import _mark_agent_resets, _mark_replaced_posters, _scan, _updated_at  # noqa: E402

PLEX_TOKEN = "plex-bench-token-0123456789"
DEVICE_ID = "6f1c1f8e-6a43-4d3c-9d55-1b1f7a0e2c12"


def scene(i: int) -> SceneData:
    return SceneData(id=i, title=f"Title {i}", details=f"Details {i}", files=[f"/data/stash/scene_{i}.mp4"])


def kind_of(record) -> str:
    path = record.path
    if record.method == "GET" and path.endswith("/all") and path.startswith("/library/sections/"):
        return "listing page" if "updatedAt" not in str(record.query) else "changes listing"
    if record.method == "GET" and path.endswith("/posters"):
        return "poster check"
    if record.method == "GET" and path.startswith("/library/metadata/"):
        return "item fetch (up to 50)"
    if record.method in ("PUT", "POST", "DELETE"):
        return "write"
    return f"other {record.method} {path.split('?')[0][:30]}"


def setup(items: int, base: Path):
    plex = PlexEmulator(token=PLEX_TOKEN).start()
    section = plex.add_section("Stash", locations=["/data/stash"])
    keys = {i: plex.add_item(section, f"Title {i}", [f"/data/stash/scene_{i}.mp4"], summary=f"Details {i}")
            for i in range(1, items + 1)}
    config = load_config({"plex_url": plex.url, "plex_token": PLEX_TOKEN, "plex_library": "Stash"})
    sync = PlexSync(config, DataPaths(base / "data").ensure(), device_id=DEVICE_ID)
    sync.matcher.match(scene(1))  # builds the match index, as the first sync did
    sync.store.remember_scenes({i: [(rk, section)] for i, rk in keys.items()})
    seen = {rk: at for rows in listing_pages(sync.server, [section]) for rk, at in rows}
    sync.written.set_seen(seen)  # the earlier repair
    return plex, section, keys, sync


def drift(plex, section, keys, sync, share: float) -> int:
    n = max(1, int(len(keys) * share))
    ids = list(keys)[:: max(1, len(keys) // n)][:n]
    for j, i in enumerate(ids):
        if j % 5 < 3:
            sync.server.fetchItem(keys[i]).editTitle(f"Edited {i}")
        else:
            plex.delete_item(keys[i])
            if j % 5 == 3:
                plex.add_item(section, f"scene_{i}", [f"/data/stash/scene_{i}.mp4"])
    return n


def repair_once(plex, sync) -> dict:
    plex.clear_requests()
    cpu = time.thread_time()
    by_scene, found = _scan(sync)
    kinds = found.scenes(by_scene)
    _mark_agent_resets(sync, kinds, by_scene, found.changed)
    _mark_replaced_posters(sync, kinds, by_scene, found.changed)
    scenes = [scene(sid) for sid in sorted(kinds)]
    for start in range(0, len(scenes), 50):  # the drainer's batches
        sync.sync_batch(scenes[start:start + 50], lambda s: None)
    after = sync.store.all_scene_items()
    sync.written.set_seen(_updated_at(sync.server, {rk for sid in kinds for rk in after.get(sid, [])}))
    cpu = time.thread_time() - cpu
    return {"cpu": cpu, "requests": Counter(kind_of(r) for r in plex.requests), "drifted": len(kinds),
            "listed": len(found.listed) + len(found.vanished)}


def report(label: str, result: dict, items: int) -> None:
    print(f"\n{label}: {result['drifted']} scenes re-synced of {result['listed']} synced items")
    for kind, count in sorted(result["requests"].items()):
        print(f"  {kind:<24} {count:>7}")
    print(f"  {'total requests':<24} {sum(result['requests'].values()):>7}")
    per_item = result["cpu"] / items * 1000
    print(f"  CPU (main thread): {result['cpu']:.2f} s, {per_item:.3f} ms per item  "
          f"[target <= 1 ms: {verdict(per_item <= 1.0)}]")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--drift", type=float, default=0.01, help="share of items that drift (default 0.01)")
    args = parser.parse_args(argv)
    print_header(f"Repair Plex Drift: {args.items} items, {args.drift:.1%} drifted")
    with tempfile.TemporaryDirectory() as tmp:
        plex, section, keys, sync = setup(args.items, Path(tmp))
        try:
            n = drift(plex, section, keys, sync, args.drift)
            print(f"drifted: {n} items (60% edited in Plex, 20% re-added with a new ratingKey, 20% deleted)")
            pages = -(-args.items // 500)
            first = repair_once(plex, sync)
            report("first repair", first, args.items)
            print(f"  listing pages expected: {pages}")
            second = repair_once(plex, sync)
            report("second repair (nothing drifted since)", second, args.items)
        finally:
            sync.close()
            plex.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
