"""Bulk sync: "Sync All Scenes to Plex" over N scenes, then a re-sync with nothing changed.

Usage: python bench/bulk_sync.py [--scenes 2000|10000|100000] [--latency 0.002|0|0.02] [--collections]

With ``--collections``, studio_collections and group_collections are on:
50 studios under 5 networks (each with an image and details) and 20 groups
(each with a front image and synopsis), so the first sync creates 75
collections and gives each a poster and a summary.

Both emulators run on loopback in this process; the plugin runs as Stash
runs it (tests/runner.PluginRunner: the installed runtime files, PlexSync.py
launched with the task's args on stdin). Every Stash scene has one file and
a cover; every file is one item in the emulated Plex library, titled after
the file, so the first sync changes every scene (one edit, one poster).

Figures: wall time of the task process, scenes per second, Plex requests per
scene by kind (from the emulator's request log), Stash requests, and the
task process's peak RSS (VmHWM polled from /proc; n/a without /proc) and CPU
time (rusage from wait4).
Nothing is asserted: the targets of issue 5 are printed as MET/MISSED.
"""

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _common import PeakRSS, print_header, wait_child, verdict  # also puts the repo on sys.path

from tests.emulators.plex import PlexEmulator  # noqa: E402
from tests.emulators.stash import StashEmulator  # noqa: E402
from tests.runner import PluginRunner, parse_output  # noqa: E402

PLEX_TOKEN = "plex-bench-token-0123456789"
STASH_API_KEY = "stash-bench-apikey-0123456789"
TASK = "Sync All Scenes to Plex"
KINDS = ("listing", "lookup", "edit", "upload", "collection", "other")
_METADATA = re.compile(r"^/library/metadata/[\d,]+$")
_SECTION_ALL = re.compile(r"^/library/sections/\d+/all$")
_IMAGES = re.compile(r"^/library/metadata/\d+/(posters|arts|poster|art)$")


def plex_kind(method: str, path: str, query=None, collection_keys=frozenset()) -> str:
    """listing: library pages; lookup: item fetches and searches; edit: the
    metadata PUT (and ratings); upload: poster/art uploads; collection: a
    collection's listing, summary edit, poster upload or deletion; other: the rest."""
    image = _IMAGES.match(path)
    if (path.startswith("/library/collections/") or re.match(r"^/library/sections/\d+/collections$", path)
            or (query or {}).get("type") == ["18"] or (image and int(path.split("/")[3]) in collection_keys)):
        return "collection"
    if method == "GET" and _SECTION_ALL.match(path):
        return "listing"
    if method == "GET" and (_METADATA.match(path) or path.startswith("/hubs/search")
                            or re.match(r"^/library/sections/\d+/search", path)):
        return "lookup"
    if method == "PUT" and (_SECTION_ALL.match(path) or path == "/:/rate" or _METADATA.match(path)):
        return "edit"
    if method in ("POST", "PUT") and _IMAGES.match(path):
        return "upload"
    return "other"


def stash_kind(method: str, path: str) -> str:
    if path.startswith("/graphql"):
        return "graphql"
    if "/screenshot" in path:
        return "image"
    return "other"


def populate(plex: PlexEmulator, stash: StashEmulator, section: int, n: int, collections: bool = False) -> None:
    for i in range(1, n + 1):
        path = f"/data/stash/scene_{i}.mp4"
        plex.add_item(section, f"scene_{i}", [path])
        stash.add_scene(title=f"Title {i}", details=f"Details {i}", date="2024-03-05", studio=f"Studio {i % 50}",
                        performers=[f"Performer {i % 500}"], tags=["Outdoor", f"Tag {i % 100}"],
                        rating100=20 + i % 80, files=[path], groups=[f"Group {i % 20}"] if collections else ())
    if collections:
        from tests.emulators.stash import tiny_jpeg

        for k in range(5):
            stash.set_studio(f"Network {k}", details=f"Network {k}", image=tiny_jpeg(f"network {k}".encode()))
        for k in range(50):
            stash.set_studio(f"Studio {k}", parent=f"Network {k % 5}", details=f"Studio {k}",
                             image=tiny_jpeg(f"studio {k}".encode()))
        for k in range(20):
            stash.set_group(f"Group {k}", synopsis=f"Group {k}", front_image=tiny_jpeg(f"group {k}".encode()))


def run_task(runner: PluginRunner, profile: str = ""):
    """Run the task as Stash does; return (wall s, peak RSS MB, CPU s, parsed output).

    With ``profile``, the task runs under cProfile and writes its stats there.
    """
    started = time.perf_counter()
    exec_args = ()
    if profile:
        command = runner.command
        runner.command = lambda extra=(): [command()[0], "-m", "cProfile", "-o", profile, *command()[1:], *extra]
    try:
        proc = runner.start(runner.task_args(TASK), exec_args)
    finally:
        if profile:
            del runner.command
    chunks = {"out": b"", "err": b""}

    def drain(name, stream):
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=("out", proc.stdout)),
               threading.Thread(target=drain, args=("err", proc.stderr))]
    for t in readers:
        t.start()
    rss_probe = PeakRSS(proc.pid)
    if hasattr(os, "waitid"):  # wait for the exit without reaping: the pid stays ours while polling stops
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    rss = rss_probe.stop()
    code, cpu = wait_child(proc.pid)
    if code is None:  # no wait4 on this platform
        code = proc.wait()
    else:
        proc.returncode = code
    for t in readers:
        t.join()
    wall = time.perf_counter() - started
    output, error, parsed, logs, _ = parse_output(chunks["out"].decode("utf-8", "replace"),
                                                  chunks["err"].decode("utf-8", "replace"))
    if code or error or not parsed:
        errors = [m for lv, m in logs if lv == "error"][:5]
        raise SystemExit(f"task failed (exit {code}): {error!r} {errors}")
    return wall, rss, cpu, output


def report(label: str, n: int, wall: float, rss, cpu, output: str, plex: PlexEmulator, stash: StashEmulator) -> dict:
    collection_keys = {c["ratingKey"] for sec in plex._sections for c in plex.collections(sec)}
    plex_counts = Counter(plex_kind(r.method, r.path, r.query, collection_keys) for r in list(plex.requests))
    stash_counts = Counter(stash_kind(m, p) for m, p, _ in list(stash.requests))
    synced = int(re.search(r"(\d+) synced", output).group(1)) if re.search(r"(\d+) synced", output) else 0
    plex_total = sum(plex_counts.values())
    stash_total = sum(stash_counts.values())
    print(f"\n## {label}")
    print(f"task output: {output}")
    print(f"wall time: {wall:.2f} s   scenes/s: {n / wall:.1f}   changed scenes: {synced}")
    print(f"task process: peak RSS {f'{rss:.1f} MB' if rss is not None else 'n/a'}, "
          f"CPU {f'{cpu:.2f} s ({cpu * 1000 / n:.2f} ms per scene)' if cpu is not None else 'n/a'}")
    print(f"Plex requests: {plex_total} total, {plex_total / n:.4f} per scene")
    others = Counter(f"{r.method} {re.sub(r'/[0-9,]+(?=/|$)', '/<id>', r.path)}" for r in list(plex.requests)
                     if plex_kind(r.method, r.path, r.query, collection_keys) == "other")
    for kind in KINDS:
        line = f"  {kind:8s} {plex_counts.get(kind, 0):8d}   {plex_counts.get(kind, 0) / n:.4f} per scene"
        if kind == "other" and others:
            line += "   (" + ", ".join(f"{path} x{count}" for path, count in others.most_common(5)) + ")"
        print(line)
    print(f"Stash requests: {stash_total} total ({', '.join(f'{k} {v}' for k, v in sorted(stash_counts.items()))}), "
          f"{stash_total / n:.4f} per scene")
    return {"wall": wall, "rss": rss, "synced": synced, "plex": plex_counts, "plex_total": plex_total,
            "stash_total": stash_total, "collections": len(collection_keys)}


def _prof(args, name: str) -> str:
    return str(Path(f"{args.profile}-{name}.prof").resolve()) if args.profile else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000, help="scenes (and Plex items); 2000, 10000, 100000")
    parser.add_argument("--latency", type=float, default=0.002, help="emulated Plex latency per request, seconds")
    parser.add_argument("--collections", action="store_true",
                        help="turn studio_collections and group_collections on (studios with parents, groups)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary plugin folder (prints its path)")
    parser.add_argument("--profile", metavar="PREFIX", default="",
                        help="run each task under cProfile; write PREFIX-first.prof and PREFIX-resync.prof "
                             "(figures are then not comparable)")
    args = parser.parse_args(argv)
    print_header("bulk sync (Sync All Scenes to Plex)")
    print(f"scenes: {args.scenes}   Plex latency per request: {args.latency * 1000:g} ms   "
          f"collections: {'on' if args.collections else 'off'}")

    base = Path(tempfile.mkdtemp(prefix="plexsync-bench-"))
    plex = PlexEmulator(token=PLEX_TOKEN).start()
    stash = StashEmulator(api_key=STASH_API_KEY, require_auth=True).start()
    runner = None
    try:
        section = plex.add_section("Stash", locations=["/data/stash"])
        t0 = time.perf_counter()
        populate(plex, stash, section, args.scenes, args.collections)
        print(f"emulators populated in {time.perf_counter() - t0:.1f} s (not part of any figure)")
        settings = {"plex_url": plex.url, "plex_token": PLEX_TOKEN, "plex_library": "Stash", "poll_interval": 0.3}
        if args.collections:
            settings.update(studio_collections=True, group_collections=True)
        stash.set_plugin_settings("PlexSync", settings)
        runner = PluginRunner(base, stash)
        plex.latency = args.latency
        sys.stdout.flush()

        plex.clear_requests()
        stash.requests.clear()
        first = report("first sync", args.scenes, *run_task(runner, _prof(args, "first")), plex, stash)
        runner.wait_idle(120)

        plex.clear_requests()
        stash.requests.clear()
        again = report("re-sync, nothing changed", args.scenes, *run_task(runner, _prof(args, "resync")), plex, stash)

        n, changed = args.scenes, max(first["synced"], 1)
        edits, uploads = first["plex"].get("edit", 0), first["plex"].get("upload", 0)
        rss_max = max((r for r in (first["rss"], again["rss"]) if r is not None), default=None)
        print("\n## targets (issue 5)")
        print(f"first sync: {edits / changed:.3f} edit requests per changed scene (<= 1.05): "
              f"{verdict(edits / changed <= 1.05)}")
        print(f"first sync: {uploads / changed:.3f} poster uploads per changed scene (<= 1): "
              f"{verdict(uploads / changed <= 1)}")
        print(f"first sync: {first['plex'].get('listing', 0)} listing pages, "
              f"{first['plex'].get('lookup', 0)} lookups, {first['plex'].get('other', 0)} other requests")
        if args.collections:
            made, calls = first["collections"], first["plex"].get("collection", 0)
            print(f"first sync: {made} collections, {calls} collection requests "
                  f"({calls / max(made, 1):.2f} per collection; <= 2 uploads/edits each + 2 listings per batch)")
            print(f"re-sync: {again['plex'].get('collection', 0)} collection requests (0): "
                  f"{verdict(again['plex'].get('collection', 0) == 0)}")
        print(f"re-sync: {again['plex_total'] / n:.4f} Plex requests per scene (<= 0.05): "
              f"{verdict(again['plex_total'] / n <= 0.05)}")
        if rss_max is None:
            print("peak RSS: n/a on this platform")
        else:
            scope = "" if n >= 100_000 else f" (target applies at 100,000 scenes; this run has {n})"
            print(f"peak RSS: {rss_max:.1f} MB (<= 200 MB): {verdict(rss_max <= 200)}{scope}")
    finally:
        if runner is not None:
            runner.kill_workers()
        plex.stop()
        stash.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
