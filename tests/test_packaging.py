"""Packaging: the release zip, index.yml, the manifest, and missing dependencies.

The zip is built by tools/release.py exactly as a release is; it is installed
into a fresh runner plugin folder the way Stash's package manager unzips it.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import shared_path
from tests.e2e import Env
from tests.runner import PluginRunner, scene_update
from tools.release import RUNTIME_PACKAGES, build_zip, runtime_files

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = {"PlexSync.py", "PlexSync.yml", "process_queue.py", "requirements.txt", "LICENSE"}

# What Stash's strict manifest parser knows (pkg/plugin/config.go).
MANIFEST_KEYS = {"name", "description", "url", "version", "exec", "interface", "errLog", "tasks", "hooks", "ui",
                 "settings"}
TASK_KEYS = {"name", "description", "execArgs", "defaultArgs"}
HOOK_KEYS = TASK_KEYS | {"triggeredBy"}
SETTING_KEYS = {"displayName", "description", "type"}
SETTING_TYPES = {"STRING", "NUMBER", "BOOLEAN"}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Run tools/release.py as a maintainer would: (zip bytes, index.yml text)."""
    out = tmp_path_factory.mktemp("release")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--out", str(out / "dist"),
                          "--index", str(out / "index.yml")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return (out / "dist" / "PlexSync.zip").read_bytes(), (out / "index.yml").read_text(encoding="utf-8")


# -- the zip ------------------------------------------------------------------------

def expected_runtime_names(root: Path):
    names = set(TOP_LEVEL)
    for package in RUNTIME_PACKAGES:
        for path in (root / package).rglob("*.py"):
            rel = path.relative_to(root)
            if "__pycache__" not in rel.parts:
                names.add(rel.as_posix())
    return names


def test_zip_holds_exactly_the_runtime_files(release):
    data, _ = release
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert len(names) == len(set(names))
    assert set(names) == expected_runtime_names(ROOT)
    assert set(names) == {p.as_posix() for p in runtime_files(ROOT)}
    for name in names:
        top = name.split("/")[0]
        assert top not in ("tests", "docs", "bench", "tools", ".github", ".ci", "dist", "data"), name
        assert "__pycache__" not in name and not name.endswith((".pyc", ".db", ".log", ".zip")), name
        assert not name.endswith((".yml", ".yaml")) or name == "PlexSync.yml", name  # Stash loads every .yml
    for package in RUNTIME_PACKAGES:
        assert f"{package}/__init__.py" in names


def test_builder_ignores_strays_in_the_tree(tmp_path):
    """A copy of the tree with caches, scratch files and extra folders builds the same zip."""
    copy = tmp_path / "tree"
    copy.mkdir()
    for name in TOP_LEVEL:
        shutil.copy(ROOT / name, copy / name)
    for package in RUNTIME_PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    clean = build_zip(copy)
    for stray in ("worker/__pycache__/tasks.cpython-311.pyc", "worker/notes.yml", "plex/fixture.json",
                  "tests/test_x.py", "docs/guide.md", ".github/workflows/ci.yml", "bench/b.py", "tools/demo.py",
                  "data/queue/data.db", "other.yml"):
        (copy / stray).parent.mkdir(parents=True, exist_ok=True)
        (copy / stray).write_text("stray\n")
    assert build_zip(copy) == clean
    assert build_zip(copy) == build_zip(copy)  # deterministic: same bytes, same sha256


# -- index.yml -----------------------------------------------------------------------

def check_index(text: str, zip_bytes=None):
    index = yaml.safe_load(text)
    assert isinstance(index, list) and len(index) == 1
    (entry,) = index
    assert set(entry) == {"id", "name", "metadata", "version", "date", "path", "sha256", "requires"}
    manifest = yaml.safe_load((ROOT / "PlexSync.yml").read_text(encoding="utf-8"))
    assert entry["id"] == "PlexSync" and entry["name"] == manifest["name"]
    assert entry["metadata"] == {"description": manifest["description"]}
    assert isinstance(entry["version"], str) and entry["version"] == str(manifest["version"])
    assert isinstance(entry["date"], str)
    datetime.strptime(entry["date"], "%Y-%m-%d %H:%M:%S")  # Stash's pkg.TimeFormat, UTC
    assert entry["path"] == "PlexSync.zip"
    assert entry["requires"] == ["PythonDepManager"]
    assert len(entry["sha256"]) == 64 and int(entry["sha256"], 16) >= 0
    if zip_bytes is not None:
        assert entry["sha256"] == hashlib.sha256(zip_bytes).hexdigest()  # what Stash verifies on install
    return entry


def test_index_yml_describes_the_zip(release):
    data, text = release
    check_index(text, data)


def test_index_entry_keeps_awkward_values_intact():
    from tools.release import index_entry

    text = index_entry(b"zip", "1.0", "2026-01-02 03:04:05", "PlexSync.zip", 'Sync: "Stash" \\ Plex # all')
    (entry,) = yaml.safe_load(text)
    assert entry["version"] == "1.0"  # a string, not the float 1.0
    assert entry["metadata"]["description"] == 'Sync: "Stash" \\ Plex # all'
    assert entry["sha256"] == hashlib.sha256(b"zip").hexdigest()


def test_rebuilding_an_unchanged_plugin_keeps_index_yml(release, tmp_path):
    data, text = release
    index = tmp_path / "index.yml"
    index.write_text(text, encoding="utf-8")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--out", str(tmp_path / "dist"),
                          "--index", str(index)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "dist" / "PlexSync.zip").read_bytes() == data
    assert index.read_text(encoding="utf-8") == text  # same zip: same date, no churn in the committed file


# -- the manifest -------------------------------------------------------------------

def load_manifest():
    return yaml.safe_load((ROOT / "PlexSync.yml").read_text(encoding="utf-8"))


def test_manifest_validates_against_the_community_schema():
    import jsonschema

    schema = json.loads(shared_path("stash-plugin-schema", "plugin.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(load_manifest(), schema)


def test_manifest_uses_only_keys_stash_knows():
    from worker.tasks import TASKS

    manifest = load_manifest()
    assert set(manifest) <= MANIFEST_KEYS
    assert manifest["exec"] == ["python", "{pluginDir}/PlexSync.py"] and manifest["interface"] == "raw"
    for hook in manifest["hooks"]:
        assert set(hook) <= HOOK_KEYS
        assert hook["triggeredBy"] == ["Scene.Update.Post"]
    names = [task["name"] for task in manifest["tasks"]]
    assert len(names) == len(set(names))
    for task in manifest["tasks"]:
        assert set(task) <= TASK_KEYS and task["description"]
        args = task["defaultArgs"]
        assert all(isinstance(v, str) for v in args.values())  # map[string]string
        assert args["mode"] in TASKS
    assert {task["defaultArgs"]["mode"] for task in manifest["tasks"]} == set(TASKS)
    for key, setting in manifest["settings"].items():
        assert set(setting) <= SETTING_KEYS and setting["type"] in SETTING_TYPES, key
        assert setting["displayName"] and setting["description"]
    # CommunityScripts' build_site.sh reads the dependency from this comment.
    lines = (ROOT / "PlexSync.yml").read_text(encoding="utf-8").splitlines()
    assert "# requires: PythonDepManager" in lines


def test_settings_match_the_config_model():
    from validation.config import PlexSyncConfig

    fields = PlexSyncConfig.model_fields
    for key in load_manifest()["settings"]:
        assert key in fields, f"setting {key} is not read by PlexSyncConfig"


# -- installing the built zip ----------------------------------------------------------------

def test_built_zip_installs_and_syncs(release, tmp_path):
    data, _ = release
    env = Env(tmp_path, from_zip=data)
    try:
        installed = {p.relative_to(env.runner.plugin_dir).as_posix() for p in env.runner.plugin_dir.rglob("*")
                     if p.is_file()}
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert installed == set(zf.namelist())
        sid, rk = env.scene_with_item(1)
        result = env.hook(sid, scene_update(sid, title="Title 1"))
        assert result.parsed and result.error is None and result.output == f"queued scene {sid}"
        env.settle()
        assert env.plex.item(rk)["title"] == "Title 1"
        status = env.runner.run_task("Queue Status")
        assert status.error is None and status.output.startswith("Queue: 0 pending")
    finally:
        env.close()


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """An interpreter without PlexSync's packages (a fresh venv, no pip)."""
    target = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    python = target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    probe = subprocess.run([str(python), "-c", "import pydantic"], capture_output=True, env=_bare_env(None))
    if probe.returncode == 0:
        pytest.skip("the base interpreter already has the packages; cannot test their absence")
    return str(python)


def _bare_env(plugins_dir):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "STASH_PLUGIN_DATA") and not k.startswith("PYTEST")}
    if plugins_dir is not None:
        env["PYTHONPATH"] = str(plugins_dir)  # what Stash sets: the plugins folder only
    return env


class BareRunner(PluginRunner):
    """Launches PlexSync.py with another interpreter, as Stash would with its python_path."""

    python = sys.executable

    def command(self, exec_args=()):
        argv = super().command(exec_args)
        argv[0] = self.python
        return argv

    def env(self):
        return _bare_env(self.plugins_dir)


def assert_install_hint(text):
    assert "pip install -r" in text and "requirements.txt" in text, text
    assert "PythonDepManager" in text


def test_missing_dependencies_give_a_clear_error(tmp_path, bare_python):
    runner = BareRunner(tmp_path, None)
    runner.python = bare_python
    for args in ({"mode": "sync_all"}, {"mode": "queue_status"}, runner.hook_args(scene_update(1, title="x"))):
        result = runner.run(args)
        assert result.parsed, f"stdout is not one JSON object: {result.stdout!r}"
        assert result.output is None and result.error.startswith("PlexSync is missing Python packages: ")
        assert_install_hint(result.error)
        assert "Traceback" not in result.stderr and result.has_log("pip install -r", "error")

    # The detached worker says it in worker.log (it has no stderr to Stash).
    worker = subprocess.run(runner.command(("--worker",)), input=b"{}", capture_output=True, timeout=60,
                            cwd=str(runner.stash_dir), env=runner.env())
    assert worker.returncode == 0 and worker.stdout == b""
    assert_install_hint(runner.worker_log())

    cli = subprocess.run([bare_python, str(runner.plugin_dir / "process_queue.py"), "--stats-only"],
                         capture_output=True, text=True, timeout=60, env=_bare_env(None))
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert_install_hint(cli.stderr)
