"""The watch-history import at scale: Plex plays -> Stash play history.

Usage: python bench/history_import.py [--entries 10000] [--items 1000] [--latency 0.002]

In-process: history.importer.import_history against the Plex and Stash
emulators on loopback, through the real plexapi and stashapi. A library of
--items matched scenes and a Plex history of --entries owner plays spread
over them, plus one partly watched item. Three runs:

  first     the whole history (paged), every item linked to its scene
  again     nothing new since the watermark
  new plays 1% more plays after the watermark

For each: wall time, Plex requests (history pages and others), Stash
requests and mutations (sceneAddPlay, sceneSaveActivity). Nothing is
asserted; the figures are printed with the command and machine.
"""

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import print_header, verdict  # also puts the repo on sys.path

from common.paths import DataPaths  # noqa: E402
from history.importer import import_history  # noqa: E402
from plex.client import connect  # noqa: E402
from plex.matcher import Matcher  # noqa: E402
from plex.store import MatchStore  # noqa: E402
from tests.emulators.plex import PlexEmulator  # noqa: E402
from tests.emulators.stash import StashEmulator  # noqa: E402
from validation.config import load_config  # noqa: E402
from validation.scene import SceneData  # noqa: E402
from worker.stash import StashClient  # noqa: E402

PLEX_TOKEN = "plex-bench-token-0123456789"
DEVICE_ID = "6f1c1f8e-6a43-4d3c-9d55-1b1f7a0e2c12"
T0 = 1_700_000_000


def setup(plex, stash, items: int, entries: int):
    section = plex.add_section("Stash", locations=["/data/stash"])
    rks = []
    for i in range(1, items + 1):
        path = f"/data/stash/scene_{i}.mp4"
        rks.append(plex.add_item(section, f"scene_{i}", [path]))
        stash.add_scene(title=f"Title {i}", files=[path])
    for n in range(entries):
        plex.add_play(rks[n % items], T0 + 60 * n)
    plex.set_progress(rks[0], 120_000)
    return rks


def run(label, config, paths, server, store, client, plex, stash) -> None:
    plex.clear_requests()
    docs_before = len(stash.documents)
    started = time.perf_counter()
    summary = import_history(config, paths, server, store, client)
    wall = time.perf_counter() - started
    kinds = Counter("history page" if r.path.startswith("/status/sessions/history") else "other"
                    for r in list(plex.requests))
    docs = stash.documents[docs_before:]
    ops = Counter(("sceneAddPlay" if "sceneAddPlay" in (d["query"] or "") else
                   "sceneSaveActivity" if "sceneSaveActivity" in (d["query"] or "") else "read") for d in docs)
    print(f"## {label}")
    print(f"  {summary.text()}")
    print(f"  wall {wall:.2f} s; Plex requests: {kinds.get('history page', 0)} history pages, {kinds.get('other', 0)} other;"
          f" Stash requests: {len(docs)} ({ops.get('read', 0)} reads, {ops.get('sceneAddPlay', 0)} sceneAddPlay,"
          f" {ops.get('sceneSaveActivity', 0)} sceneSaveActivity)")
    sys.stdout.flush()
    return summary, kinds, ops


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=10_000)
    p.add_argument("--items", type=int, default=1_000)
    p.add_argument("--latency", type=float, default=0.002, help="seconds added to every Plex request")
    args = p.parse_args(argv)
    print_header(f"Watch-history import: {args.entries} history entries over {args.items} matched scenes")
    with PlexEmulator(token=PLEX_TOKEN) as plex, StashEmulator() as stash, tempfile.TemporaryDirectory() as tmp:
        rks = setup(plex, stash, args.items, args.entries)
        config = load_config({"plex_url": plex.url, "plex_token": PLEX_TOKEN, "plex_library": "Stash"})
        paths = DataPaths(Path(tmp) / "data").ensure()
        server = connect(config, DEVICE_ID)
        store = MatchStore(paths.match_index)
        Matcher(config, store, lambda: server).match(SceneData(id=1, title="x", files=["/data/stash/scene_1.mp4"]))
        plex.latency = args.latency
        client = StashClient(stash.server_connection())
        try:
            first, kinds, ops = run("first", config, paths, server, store, client, plex, stash)
            run("again", config, paths, server, store, client, plex, stash)
            extra = max(1, args.entries // 100)
            for n in range(extra):
                plex.add_play(rks[n % args.items], T0 + 60 * (args.entries + n))
            run(f"new plays (+{extra})", config, paths, server, store, client, plex, stash)
        finally:
            store.close()
        pages = math.ceil((args.entries + 1) / 100)
        print(f"Plex: one request per history page of 100 (first run {kinds.get('history page', 0)} for "
              f"{args.entries} entries, {pages} needed): {verdict(kinds.get('history page', 0) <= pages)}")
        scenes = min(args.items, args.entries)
        print(f"Stash: at most one sceneAddPlay per scene with new plays ({ops.get('sceneAddPlay', 0)} for {scenes}) "
              f"and one sceneSaveActivity per changed resume point ({ops.get('sceneSaveActivity', 0)} for 1): "
              f"{verdict(ops.get('sceneAddPlay', 0) <= scenes and ops.get('sceneSaveActivity', 0) <= 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
