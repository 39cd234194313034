"""The install users have: the real PythonDepManager from the Community source,
PlexSync from its own source (the release zip), a Python without the packages.

Layout, as Stash's package manager makes it (pkg/pkg/manager.go) and as it
launches plugins (pkg/plugin/raw.go, PYTHONPATH = the plugin's source folder):

    plugins/community/PythonDepManager/    unmodified, from ../shared/fixtures
    plugins/plexsync/PlexSync/             unzipped from tools/release.py's zip

The first save installs the packages from PyPI through PythonDepManager (in
the background); that takes a minute, once per module.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from common.deps import PINS, pdm_spec, requirement
from tests.conftest import shared_path
from tests.e2e import PLEX_TOKEN, STASH_API_KEY, Env, wait_for
from tests.runner import PluginRunner, scene_update

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "plexsync"  # PlexSync's source local path (docs/install.md)
INSTALL_TIMEOUT = 600  # pip from PyPI, six packages
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)  # the first test's set-up installs them


def bare_env(pythonpath=None, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "STASH_PLUGIN_DATA", "PYTHONIOENCODING")
           and not k.startswith("PYTEST")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # Stash's environment: Python caches bytecode
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def pdm_fixture():
    return shared_path("fixtures", "PythonDepManager")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A venv with pip (PythonDepManager needs it) and none of PlexSync's packages."""
    target = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
    python = target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    probe = subprocess.run([str(python), "-c", "import pydantic"], capture_output=True, env=bare_env())
    if probe.returncode == 0:
        pytest.skip("the base interpreter already has the packages; cannot test their absence")
    return str(python)


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    """tools/release.py --out DIR: the plugin source folder (zip + index.yml)."""
    out = tmp_path_factory.mktemp("site") / "stable"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return out


class SourceRunner(PluginRunner):
    """PlexSync installed from its own source, run with another Python (Stash's python_path)."""

    python = sys.executable
    extra_env: dict = {}

    def install(self, zip_bytes: bytes) -> None:
        self.plugin_dir = self.plugins_dir / SOURCE / "PlexSync"
        super().install(zip_bytes)

    def command(self, exec_args=()):
        argv = super().command(exec_args)
        argv[0] = self.python
        return argv

    def env(self):
        return bare_env(self.plugin_dir.parent, **self.extra_env)  # Stash: PYTHONPATH = the source folder


def make_install(base: Path, stash, zip_bytes: bytes, python: str, pdm: Path) -> SourceRunner:
    runner = SourceRunner(base, stash, from_zip=zip_bytes)
    runner.python = python
    shutil.copytree(pdm, runner.plugins_dir / "community" / "PythonDepManager")
    return runner


@pytest.fixture(scope="module")
def installed(tmp_path_factory, release_dir, bare_python, pdm_fixture):
    """The first save after installing: (env, its hook result, scene id, rating key)."""
    env = Env(tmp_path_factory.mktemp("env"))
    zip_bytes = (release_dir / "PlexSync.zip").read_bytes()
    env.runner = make_install(tmp_path_factory.mktemp("stash"), env.stash, zip_bytes, bare_python, pdm_fixture)
    sid, rk = env.scene_with_item(1, title="Title after install")
    first = env.hook(sid, scene_update(sid, title="Title after install"))
    try:
        env.settle(INSTALL_TIMEOUT)
        yield env, first, sid, rk
    finally:
        env.close()


def test_release_folder_is_a_plugin_source(release_dir):
    (entry,) = yaml.safe_load((release_dir / "index.yml").read_text(encoding="utf-8"))
    assert entry["path"] == "PlexSync.zip" and (release_dir / entry["path"]).is_file()
    with zipfile.ZipFile(io.BytesIO((release_dir / "PlexSync.zip").read_bytes())) as zf:
        assert "LICENSE" in zf.namelist()
        assert not any(name.startswith(".github/") for name in zf.namelist())


def test_first_save_returns_at_once_and_still_reaches_plex(installed):
    env, first, sid, rk = installed
    assert first.parsed and first.error is None, first.stderr
    assert first.output == f"kept scene {sid}: packages installing"  # did not wait for pip
    assert first.has_log("Installing PlexSync's Python packages in the background", "info")
    assert env.plex.item(rk)["title"] == "Title after install"
    log = env.runner.worker_log()
    assert "PythonDepManager: installing persist-queue==1.1.0" in log and "package(s) installed" in log
    assert not list((env.runner.data_dir / "pending").glob("*.json"))
    home = env.runner.plugins_dir / "community" / "py_dependencies"
    for name in PINS:  # the pinned versions, in PDM's own folder names
        assert (home / f"{name}_{PINS[name][1]}").is_dir(), name
    blob = first.stderr + log
    for secret in (PLEX_TOKEN, STASH_API_KEY, env.runner.cookie):
        assert secret not in blob


def test_steady_hook_spawns_nothing_to_find_packages(installed, tmp_path):
    """PythonDepManager's ensure_import fails without git on PATH: the steady hook never calls it."""
    env, _, _, _ = installed
    sid, rk = env.scene_with_item(2, title="Steady")
    no_git = tmp_path / "empty-path"
    no_git.mkdir()
    env.runner.extra_env = {"PATH": str(no_git)}
    try:
        result = env.hook(sid, scene_update(sid, title="Steady"))
    finally:
        env.runner.extra_env = {}
    assert result.error is None and result.output == f"queued scene {sid}", result.stderr
    env.settle()
    assert env.plex.item(rk)["title"] == "Steady"


def test_windows_code_page_hook_syncs_a_non_latin1_title(installed):
    env, _, _, _ = installed
    title = "Łódź – Привет 東京"
    sid, rk = env.scene_with_item(3, title=title)
    env.runner.extra_env = {"PYTHONIOENCODING": "cp1252:strict"}
    try:
        result = env.hook(sid, scene_update(sid, title=title))
    finally:
        env.runner.extra_env = {}
    assert result.parsed and result.error is None, result.stderr
    env.settle()
    assert env.plex.item(rk)["title"] == title


def test_task_and_cli_run_in_that_install(installed):
    env, _, _, _ = installed
    task = env.runner.run_task("Queue Status")
    assert task.error is None and task.output.startswith("Queue: 0 pending"), task.stderr
    # The CLI as docs/troubleshoot.md tells users to run it: no PYTHONPATH, from a terminal.
    cli = subprocess.run([env.runner.python, str(env.runner.plugin_dir / "process_queue.py"), "--stats-only"],
                         capture_output=True, text=True, timeout=120, env=bare_env())
    assert cli.returncode == 0, cli.stderr
    assert "pending" in cli.stdout.lower()
    assert "\x01" not in cli.stdout + cli.stderr


def install_lacking(name, installed, base, bare_python, pdm_fixture, release_dir) -> SourceRunner:
    """A second install that lacks one package (copied from the first, to spare PyPI)."""
    env = installed[0]
    runner = make_install(base, env.stash, (release_dir / "PlexSync.zip").read_bytes(), bare_python, pdm_fixture)
    deps = runner.plugins_dir / "community" / "py_dependencies"
    shutil.copytree(env.runner.plugins_dir / "community" / "py_dependencies", deps)
    shutil.rmtree(deps / f"{name}_{PINS[name][1]}")
    return runner


def test_task_before_the_packages_installs_them_with_progress(installed, tmp_path, bare_python, pdm_fixture,
                                                              release_dir):
    runner = install_lacking("tenacity", installed, tmp_path, bare_python, pdm_fixture, release_dir)
    result = runner.run_task("Queue Status")
    assert result.error is None and result.output.startswith("Queue: 0 pending"), result.stderr
    assert result.has_log("PythonDepManager: installing tenacity==9.2.1 (1/1)", "info")
    assert result.progress and result.progress[-1] == 1.0


# -- the pinned list ---------------------------------------------------------------------

def test_requirements_txt_is_the_pinned_list():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == [requirement(name) for name in PINS]


def test_suite_runs_the_pinned_versions():
    from importlib.metadata import version

    for name, (dist, pinned) in PINS.items():
        assert version(dist) == pinned, f"{dist}: the suite runs {version(dist)}, PINS says {pinned}"


def test_pdm_reads_our_specs_as_exact_pins(pdm_fixture):
    sys.path.insert(0, str(pdm_fixture.parent))
    try:
        from PythonDepManager.deps import parse_package_spec
    finally:
        sys.path.remove(str(pdm_fixture.parent))
    for name, (dist, pinned) in PINS.items():
        info = parse_package_spec(pdm_spec(name))
        assert (info.import_name, info.pip_name, info.version, info.min_version) == (name, dist, pinned, None)


def test_cli_installs_what_is_missing_in_plain_lines(installed, tmp_path, bare_python, pdm_fixture, release_dir):
    runner = install_lacking("tenacity", installed, tmp_path, bare_python, pdm_fixture, release_dir)
    (runner.plugin_dir / "data").mkdir()
    cli = subprocess.run([runner.python, str(runner.plugin_dir / "process_queue.py"), "--stats-only"],
                         capture_output=True, text=True, timeout=300, env=bare_env())
    assert cli.returncode == 0, cli.stderr
    assert "PythonDepManager" in cli.stderr and "tenacity" in cli.stderr  # PDM's own log lines, made plain
    assert "\x01" not in cli.stdout + cli.stderr


def test_settings_page_shows_the_config_in_force_after_first_contact(installed):
    from tests.test_plugin_settings import page_matches

    page_matches(installed[0].stash.plugin_settings("PlexSync"))


def test_without_git_the_save_is_kept_and_the_error_says_what_to_run(installed, tmp_path, bare_python,
                                                                     pdm_fixture, release_dir):
    env = installed[0]
    runner = make_install(tmp_path, env.stash, (release_dir / "PlexSync.zip").read_bytes(), bare_python,
                          pdm_fixture)
    sid, rk = env.scene_with_item(4, title="Kept while git was missing")
    no_git = tmp_path / "empty-path"
    no_git.mkdir()
    runner.extra_env = {"PATH": str(no_git)}
    result = runner.run_hook(scene_update(sid, title="Kept while git was missing"))
    runner.extra_env = {}
    assert result.parsed and result.output is None, result.stderr
    assert "PythonDepManager needs git, which is missing" in result.error and "Run" in result.error
    assert len(list((runner.data_dir / "pending").glob("*.json"))) == 1
    # git installed (here: the packages arrive some other way): the next task syncs the kept save.
    shutil.copytree(env.runner.plugins_dir / "community" / "py_dependencies",
                    runner.plugins_dir / "community" / "py_dependencies")
    task = runner.run_task("Process Queue")
    assert task.error is None, task.stderr
    assert not list((runner.data_dir / "pending").glob("*.json"))
    assert env.plex.item(rk)["title"] == "Kept while git was missing"


def test_missing_git_or_pip_names_the_command_for_the_platform():
    from common.deps import prerequisite_problem

    both = prerequisite_problem(which=lambda name: None, pip_runs=False, platform="alpine")
    assert "needs git and pip" in both and "docker exec" in both
    assert both.endswith("apk add --no-cache git && apk add --no-cache py3-pip")
    assert prerequisite_problem(which=lambda name: None, pip_runs=True, platform="windows").endswith(
        "Run: winget install --id Git.Git -e")
    assert "apt-get install -y python3-pip" in prerequisite_problem(which=shutil.which, pip_runs=False,
                                                                     platform="debian")
    assert prerequisite_problem(which=lambda name: "/usr/bin/git", pip_runs=True) is None


def test_externally_managed_python_gets_a_command_that_works(monkeypatch):
    from common import deps

    monkeypatch.setattr(deps, "externally_managed", lambda: False)
    assert "--break-system-packages" not in deps.install_hint()
    monkeypatch.setattr(deps, "externally_managed", lambda: True)  # PEP 668, e.g. Stash's Alpine image
    assert deps.install_hint().endswith("requirements.txt\" --break-system-packages")


def test_an_old_python_gets_a_clear_error(tmp_path):
    """Python 3.10 is the minimum: checked before anything else is imported."""
    code = ("import runpy, sys; sys.version_info = (3, 9, 18); sys.argv = ['PlexSync.py']; "
            f"runpy.run_path({str(ROOT / 'PlexSync.py')!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], input=b"{}", capture_output=True, timeout=60)
    result = json.loads(run.stdout)
    assert result["output"] is None and result["error"].startswith("PlexSync needs Python 3.10 or newer")
    assert "(Python 3.9)" in result["error"] and "python_path" in result["error"]
    assert b"\x01e\x02[PlexSync] PlexSync needs Python 3.10" in run.stderr


@pytest.mark.parametrize("pdm_at,plexsync_at", [
    ("community", "plexsync/PlexSync"),  # both from sources (Stash's package manager)
    ("plexsync", "plexsync/PlexSync"),   # PythonDepManager in PlexSync's own source folder
    ("community", "PlexSync"),           # PlexSync unzipped by hand into plugins/
    ("plexsync/PlexSync", "plexsync/PlexSync"),  # inside PlexSync's own folder
])
def test_python_dep_manager_is_found_wherever_stash_put_it(tmp_path, pdm_at, plexsync_at):
    from common.deps import pdm_homes

    plugins = tmp_path / "plugins"
    (plugins / pdm_at / "PythonDepManager").mkdir(parents=True)
    (plugins / pdm_at / "PythonDepManager" / "__init__.py").write_text("")
    (plugins / plexsync_at).mkdir(parents=True, exist_ok=True)
    (plugins / "other" / "SomePlugin").mkdir(parents=True)
    assert pdm_homes(str(plugins / plexsync_at)) == [str(plugins / pdm_at)]


def test_no_python_dep_manager_anywhere(tmp_path):
    from common.deps import pdm_homes

    (tmp_path / "plugins" / "plexsync" / "PlexSync").mkdir(parents=True)
    assert pdm_homes(str(tmp_path / "plugins" / "plexsync" / "PlexSync")) == []
