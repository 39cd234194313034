"""Cost of a running worker's settings check (worker.settings.SettingsWatch.check), per batch.

Usage: python bench/settings_check.py [--checks 200] [--latency 0.002]

Against the Stash emulator (``--latency``: seconds it adds per request, a
local Stash answers in about that). Prints the wall time of one check when
nothing changed (one plugin-settings request plus a comparison), of one that
finds new settings (the request and validation; rebuilding the Plex side
then costs what a new worker's first Plex request costs, and is not timed),
and of the hook's local test (one stat of config.yml, one small file read).
Nothing is asserted.
"""

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from _common import median, percentile, print_header  # also puts the repo on sys.path

from common.paths import DataPaths  # noqa: E402
from common.state import ConfigState, StashSession, config_file_stamp  # noqa: E402
from tests.emulators.stash import StashEmulator  # noqa: E402
from validation.config import PLUGIN_ID  # noqa: E402
from worker import settings as plugin_settings  # noqa: E402
from worker.settings import SettingsWatch  # noqa: E402

SETTINGS = {"plex_url": "http://127.0.0.1:9", "plex_token": "plex-bench-token-0123456789", "plex_library": "Stash"}


class _Ctx(SimpleNamespace):
    def reconfigure(self, config, conn):
        self.config, self.conn = config, conn


def _times(fn, n: int):
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _line(name: str, ms) -> None:
    print(f"  {name:<34} median {median(ms):7.3f} ms   p95 {percentile(ms, 95):7.3f} ms   ({len(ms)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.002)
    args = parser.parse_args()
    print_header("settings check per batch")
    with tempfile.TemporaryDirectory() as tmp, StashEmulator(latency=args.latency) as stash:
        stash.config_dir = tmp
        stash.set_plugin_settings(PLUGIN_ID, SETTINGS)
        conn = stash.server_connection(dir=tmp)
        paths = DataPaths(Path(tmp) / "data").ensure()
        config = plugin_settings.load(conn, paths)
        ctx = _Ctx(config=config, conn=conn, paths=paths, stash=SimpleNamespace(api_key_in_use=lambda: ""))
        watch = SettingsWatch(ctx, plugin_settings.fetch(conn))
        _line("check, nothing changed", _times(watch.check, args.checks))
        flip = iter(range(10**9))

        def changed():
            stash.set_plugin_settings(PLUGIN_ID, {**SETTINGS, "max_retries": 1 + next(flip) % 5})
            watch.check()

        _line("check, settings changed", _times(changed, max(10, args.checks // 10)))
        state, session = ConfigState(paths.config_state), StashSession(paths.stash_session)
        _line("hook: stat config.yml + session", _times(
            lambda: (state.usable(config_file_stamp(conn)), session.offer(conn)), args.checks))


if __name__ == "__main__":
    main()
