"""See PlexSync work without a Stash or Plex server.

    python tools/demo.py

Starts the Plex and Stash emulators on 127.0.0.1 with a small sample library,
fires a real Scene.Update.Post hook through PlexSync.py exactly as Stash would,
waits for the background worker, and prints the Plex item before and after.
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.emulators.plex import PlexEmulator  # noqa: E402
from tests.emulators.stash import StashEmulator  # noqa: E402
from tests.runner import PluginRunner, scene_update  # noqa: E402

TOKEN = "demo-plex-token-0123456789"
FIELDS = ("title", "summary", "originallyAvailableAt", "studio", "actors", "genres", "userRating")


def show(label: str, item: dict) -> None:
    print(f"\n{label}")
    for key in FIELDS:
        print(f"  {key:22} {item.get(key)!r}")
    poster = next((p["ratingKey"] for p in item.get("posters", []) if p.get("selected")), None)
    print(f"  {'poster':22} {poster!r}")
    print(f"  {'locked fields':22} {sorted(item.get('locked', []))}")


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="plexsync-demo-"))
    with PlexEmulator(token=TOKEN) as plex, StashEmulator(api_key="demo-api-key-0123456789", require_auth=True) as stash:
        section = plex.add_section("Stash", locations=["/data/stash"])
        path = "/data/stash/Acme/acme.2024.03.05.jane.doe.mp4"
        rk = plex.add_item(section, "acme.2024.03.05.jane.doe", [path])
        plex.add_item(section, "another scene", ["/data/stash/Other/another.mp4"])
        sid = stash.add_scene(title="Sunset at the Lake", details="Jane takes the boat out at dusk.",
                              date="2024-03-05", studio="Acme", performers=["Jane Doe"],
                              tags=["Outdoor", "Lake", "4K"], rating100=90, files=[path])
        stash.set_plugin_settings("PlexSync", {"plex_url": plex.url, "plex_token": TOKEN,
                                               "plex_library": "Stash", "poll_interval": 0.5})
        runner = PluginRunner(base, stash)
        print(f"Plex emulator at {plex.url}, Stash emulator at {stash.url}")
        print(f"Plugin installed in {runner.plugin_dir}")
        show("Plex item BEFORE:", plex.item(rk))

        print(f"\nStash saves scene {sid}: running PlexSync.py for Scene.Update.Post ...")
        result = runner.run_hook(scene_update(sid, title="Sunset at the Lake", tag_ids=["1", "2", "3"]))
        print(f"  hook returned in {result.duration * 1000:.0f} ms: stdout={result.stdout}")
        for level, message in result.logs:
            print(f"  [{level}] {message}")
        started = time.monotonic()
        runner.wait_idle(60)
        print(f"  background worker finished after {time.monotonic() - started:.1f} s; its log:")
        for line in runner.worker_log().splitlines():
            print(f"    {line}")
        show("Plex item AFTER:", plex.item(rk))
        edits = plex.count("PUT", f"/library/sections/{section}/all")
        uploads = plex.count("POST", f"/library/metadata/{rk}/posters")
        print(f"\nPlex requests for the sync: {edits} edit, {uploads} poster upload")

        # The first hook of a fresh install compiles the plugin and reads the
        # settings once; later saves only queue the scene.
        stash.update_scene(sid, title="Sunset at the Lake (director's cut)")
        result = runner.run_hook(scene_update(sid, title="Sunset at the Lake (director's cut)"))
        print(f"\nStash saves scene {sid} again: hook returned in {result.duration * 1000:.0f} ms")
        runner.wait_idle(60)
        print(f"Plex title now: {plex.item(rk)['title']!r}")
        runner.kill_workers()
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
