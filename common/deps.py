"""Third-party packages: find them, install them, or say exactly how to.

Three install shapes, checked in this order:

* Stash's PythonDepManager plugin (PDM), in any source folder of the
  plugins directory (``plugins/community/PythonDepManager/`` when installed
  from the Community source) or in PlexSync's own folder. PDM keeps each
  package in ``<PDM's parent>/py_dependencies/<import>_<version>/``. When
  those folders of the pinned versions are complete, they go on
  ``sys.path`` here, without PDM: its ``ensure_import`` spawns ``git`` and
  ``pip`` on every call, too slow for every save.
* The packages importable already (pip-installed into Stash's Python).
* Neither: PDM installs them (``ensure(install=True)``; the hook never
  waits for that, see PlexSync.py), or the error names the command to run.
"""

import importlib
import importlib.util
import logging
import os
import sys
import time

from common.paths import PLUGIN_DIR

# The versions the test suite runs with: the one pinned list. requirements.txt
# is this list (tests/test_install.py keeps them equal); PDM gets the same pins.
# import name -> (distribution on PyPI, version)
PINS = {
    "persistqueue": ("persist-queue", "1.1.0"),
    "stashapi": ("stashapp-tools", "0.2.59"),  # not the PyPI package "stashapi" (fails on Stash 0.30)
    "plexapi": ("plexapi", "4.18.3"),
    "tenacity": ("tenacity", "9.2.1"),
    "pydantic": ("pydantic", "2.14.4"),
    "requests": ("requests", "2.34.2"),
}
PDM = "PythonDepManager"
log = logging.getLogger("plexsync.deps")
INSTALL_WAIT = 900.0  # s a second installer waits for the first (pip on a slow link)


class MissingDependency(ImportError):
    pass


class InstallNeeded(MissingDependency):
    """Packages are missing and PythonDepManager can install them (not done here)."""


def requirement(name: str) -> str:
    dist, version = PINS[name]
    return f"{dist}=={version}"


def pdm_spec(name: str) -> str:
    """PythonDepManager's spec syntax: [import:]pip-name==version."""
    dist, version = PINS[name]
    return (f"{name}:" if name != dist else "") + f"{dist}=={version}"


# -- finding PythonDepManager and its package folders -----------------------------------

def pdm_homes(plugin_dir: str = PLUGIN_DIR) -> list:
    """Folders that hold a ``PythonDepManager/`` package, nearest first."""
    own_source = os.path.dirname(plugin_dir)
    candidates = [plugin_dir, own_source]
    for parent in (own_source, os.path.dirname(own_source)):
        try:
            names = sorted(os.listdir(parent))
        except OSError:
            continue
        candidates += [os.path.join(parent, name) for name in names]
    homes = []
    for folder in candidates:
        if folder not in homes and os.path.isfile(os.path.join(folder, PDM, "__init__.py")):
            homes.append(folder)
    return homes


def package_folder(home: str, name: str) -> str:
    """Where PDM keeps ``name`` at its pinned version (deps.py ``get_folder_name``)."""
    return os.path.join(home, "py_dependencies", f"{name}_{PINS[name][1]}")


def _complete(folder: str, name: str) -> bool:
    """pip writes the .dist-info last: no .dist-info, no finished install."""
    dist, version = PINS[name]
    want = f"{dist.replace('-', '_')}-{version}.dist-info".lower()
    try:
        return any(entry.lower() == want for entry in os.listdir(folder))
    except OSError:
        return False


def activate(names, homes=None) -> list:
    """Put PDM's complete folders for ``names`` on sys.path (no process
    spawned); the names still missing there."""
    missing = list(names)
    for home in pdm_homes() if homes is None else homes:
        for name in list(missing):
            folder = package_folder(home, name)
            if _complete(folder, name):
                if folder not in sys.path:
                    sys.path.insert(_before_site_packages(), folder)
                missing.remove(name)
    return missing


def _before_site_packages() -> int:
    """Ahead of installed packages (PDM's pinned copies win, as with PDM), but
    after the standard library, whose every import would otherwise look in
    PDM's folders first."""
    for index, entry in enumerate(sys.path):
        if os.path.basename(entry) in ("site-packages", "dist-packages"):
            return index
    return len(sys.path)


# -- ensure ---------------------------------------------------------------------------

def ensure(names=tuple(PINS), *, probe: bool = False, install: bool = False, progress=None) -> None:
    """Make ``names`` importable, or raise MissingDependency saying how.

    ``probe`` only looks the packages up without importing them (the hook
    cannot afford to import pydantic on every save just to check it).
    Without ``install`` a missing package that PDM could install raises
    InstallNeeded; with it, PDM installs it now (``progress(fraction)``).
    """
    check = _findable if probe else _importable
    activate(names)
    missing = [name for name in names if not check(name)]
    if not missing:
        return
    homes = pdm_homes()
    if not homes:
        raise MissingDependency(
            "PlexSync is missing Python packages: " + ", ".join(requirement(n) for n in missing)
            + f". Install the {PDM} plugin in Stash, or run: " + install_hint())
    if not install:
        raise InstallNeeded("PlexSync's Python packages are not installed yet: " + ", ".join(missing))
    _install(missing, homes[0], progress)
    activate(names, [homes[0]])
    still = [name for name in missing if not check(name)]
    if still:
        raise MissingDependency("PlexSync still cannot import " + ", ".join(still) + ". Run: " + install_hint())


def _install(missing, home: str, progress) -> None:
    """PDM installs the pinned versions, one at a time; one installer at a time."""
    from common.locking import FileLock

    problem = prerequisite_problem()
    if problem:
        raise MissingDependency(problem)
    os.makedirs(os.path.join(home, "py_dependencies"), exist_ok=True)
    lock = FileLock(os.path.join(home, "py_dependencies", ".plexsync-install.lock"))
    deadline = time.monotonic() + INSTALL_WAIT
    while not lock.acquire():  # another PlexSync process is installing: wait for it
        if time.monotonic() > deadline:
            raise MissingDependency("another PlexSync process is still installing packages; try again later")
        time.sleep(0.5)
    try:
        if home not in sys.path:
            sys.path.insert(0, home)
        from PythonDepManager import ensure_import  # type: ignore[import-not-found]

        todo = activate(missing, [home])
        for done, name in enumerate(todo):
            log.info("[PlexSync] PythonDepManager: installing %s (%d/%d)", requirement(name), done + 1, len(todo))
            if progress:
                progress(done / len(todo))
            try:
                ensure_import(pdm_spec(name))
            except Exception as exc:  # PDM raises plain exceptions
                raise MissingDependency(f"{PDM} could not install {requirement(name)} ({exc}). "
                                        f"Run: {install_hint()}") from None
        if todo:
            log.info("[PlexSync] PythonDepManager: %d package(s) installed", len(todo))
            if progress:
                progress(1.0)
    finally:
        lock.release()


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


# -- what to tell the user -------------------------------------------------------------

def _platform() -> str:
    if os.name == "nt":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    for marker, name in (("/etc/alpine-release", "alpine"), ("/etc/debian_version", "debian")):
        if os.path.exists(marker):
            return name
    return "linux"


# What installs git / pip, per platform (Stash's Docker image is Alpine).
_TOOL_COMMANDS = {
    ("git", "alpine"): "apk add --no-cache git",
    ("pip", "alpine"): "apk add --no-cache py3-pip",
    ("git", "debian"): "apt-get install -y git",
    ("pip", "debian"): "apt-get install -y python3-pip",
    ("git", "windows"): "winget install --id Git.Git -e",
    ("git", "macos"): "xcode-select --install",
}


def tool_command(tool: str, platform: "str | None" = None) -> str:
    platform = platform or _platform()
    default = "install git with your system's package manager" if tool == "git" else \
        f'"{sys.executable}" -m ensurepip --upgrade'
    return _TOOL_COMMANDS.get((tool, platform), default)


def externally_managed() -> bool:
    """PEP 668: the distribution forbids pip installs into this Python."""
    import sysconfig

    return os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))


def prerequisite_problem(which=None, pip_runs=None, platform: "str | None" = None) -> "str | None":
    """What PDM needs (git and pip, deps.py check_system_requirements) and how to get it."""
    import shutil
    import subprocess

    which = which or shutil.which
    if pip_runs is None:
        pip_runs = subprocess.run([sys.executable, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0
    lacking = [tool for tool, ok in (("git", which("git") is not None), ("pip", pip_runs)) if not ok]
    if not lacking:
        return None
    where = " inside the Stash container (docker exec -it <stash container> sh)" \
        if (platform or _platform()) == "alpine" else ""
    tools, verb = " and ".join(lacking), "is" if len(lacking) == 1 else "are"
    commands = " && ".join(tool_command(t, platform) for t in lacking)
    return f"{PDM} needs {tools}, which {verb} missing for {sys.executable}. Run{where}: {commands}"


def install_hint() -> str:
    """The command that installs the pinned requirements for the Python Stash runs."""
    python = sys.executable or "python"
    command = f'"{python}" -m pip install -r "{os.path.join(PLUGIN_DIR, "requirements.txt")}"'
    if externally_managed():  # PEP 668 (e.g. Stash's Alpine image): pip refuses without the flag
        command += " --break-system-packages"
    return command
