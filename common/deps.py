"""Third-party dependencies: import them, or say exactly how to install them.

When Stash's PythonDepManager plugin is installed, it installs missing
packages into its own folder on first use; otherwise the error names the
pip command. A missing package never ends in a bare traceback.
"""

import importlib
import importlib.util
import os
import sys

from common.paths import PLUGIN_DIR

# import name -> (pip requirement as in requirements.txt, PythonDepManager spec).
# A test keeps the first column equal to requirements.txt.
REQUIREMENTS = {
    "persistqueue": ("persist-queue>=1.1,<2", "persistqueue:persist-queue>=1.1"),
    "stashapi": ("stashapp-tools>=0.2.58,<0.3", "stashapi:stashapp-tools>=0.2.58"),
    "plexapi": ("plexapi>=4.17,<5", "plexapi>=4.17"),
    "tenacity": ("tenacity>=8.2,<10", "tenacity>=8.2"),
    "pydantic": ("pydantic>=2.5,<3", "pydantic>=2.5"),
    "requests": ("requests>=2.31,<3", "requests>=2.31"),
}


class MissingDependency(ImportError):
    pass


def install_hint() -> str:
    """The command that installs the requirements for the Python Stash runs."""
    python = sys.executable or "python"
    return f'"{python}" -m pip install -r "{os.path.join(PLUGIN_DIR, "requirements.txt")}"'


def ensure(names=tuple(REQUIREMENTS), *, probe: bool = False) -> None:
    """Make ``names`` importable, or raise MissingDependency saying how.

    ``probe`` only looks the packages up without importing them (the hook
    cannot afford to import pydantic on every save just to check it).
    """
    check = _findable if probe else _importable
    missing = [name for name in names if not check(name)]
    if not missing:
        return
    try:
        from PythonDepManager import ensure_import  # type: ignore[import-not-found]
    except ImportError:
        raise MissingDependency(
            "PlexSync is missing Python packages: " + ", ".join(REQUIREMENTS[n][0] for n in missing)
            + ". Install the PythonDepManager plugin in Stash, or run: " + install_hint()
        ) from None
    try:
        ensure_import(*(REQUIREMENTS[name][1] for name in missing))
    except Exception as exc:  # PythonDepManager raises plain exceptions
        raise MissingDependency(
            f"PythonDepManager could not install {', '.join(missing)} ({exc}). Run: {install_hint()}"
        ) from None
    still = [name for name in missing if not check(name)]
    if still:
        raise MissingDependency("PlexSync still cannot import " + ", ".join(still) + ". Run: " + install_hint())


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False
