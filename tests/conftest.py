import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"

from plex.sync import PlexSync  # noqa: E402 - after the repo is on sys.path
from tests.emulators.plex import PlexEmulator  # noqa: E402
from validation.config import PlexSyncConfig  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False, help="run the long reliability variants")


@pytest.fixture
def paths(tmp_path):
    from common.paths import DataPaths

    return DataPaths(tmp_path / "data").ensure()


@pytest.fixture
def emu(request):
    """A running Plex emulator. A test module that sets ``LIBRARY_ROOT`` gets one
    movie library "Stash" there (its key in ``emu.section_key``); modules that
    need more set-up override the fixture."""
    with PlexEmulator() as emulator:
        root = getattr(request.module, "LIBRARY_ROOT", None)
        if root:
            emulator.section_key = emulator.add_section("Stash", locations=[root])
        yield emulator


@pytest.fixture
def make_sync(emu, paths):
    """make(**settings) -> a PlexSync against ``emu``, closed after the test."""
    made = []

    def make(**settings):
        settings.setdefault("plex_token", emu.token)
        sync = PlexSync(PlexSyncConfig(plex_url=emu.url, **settings), paths)
        made.append(sync)
        return sync

    yield make
    for sync in made:
        sync.close()


def shared_path(*parts) -> Path:
    """A path under ../shared, or skip with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: these checks need the shared reference folder beside the repo")
    return path


def pytest_terminal_summary(terminalreporter):
    """Print the reliability figures (tests/reliability.py); JSON to $PLEXSYNC_FIGURES if set."""
    from tests.reliability import write_figures

    write_figures(terminalreporter.write_line)
