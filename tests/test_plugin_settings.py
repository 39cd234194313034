"""The settings page shows the values in force (worker/plugin_settings.py).

What Stash's UI renders from the stored config
(ui/v2.5/src/components/Settings/SettingsPluginsPanel.tsx): a BOOLEAN as
``(value as boolean) ?? false``, a NUMBER as ``(value as number) ?? 0``, a
STRING as ``value ?? ""``.
"""

import logging
from pathlib import Path

import pytest
import yaml

from worker import plugin_settings
from tests.e2e import Env
from tests.runner import scene_update
from validation.config import load_config

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = yaml.safe_load((ROOT / "PlexSync.yml").read_text(encoding="utf-8"))["settings"]
UNSET = {"BOOLEAN": False, "NUMBER": 0, "STRING": ""}


def rendered(stored: dict) -> dict:
    """What the settings page shows for each setting of PlexSync.yml."""
    return {key: (UNSET[s["type"]] if stored.get(key) is None else stored[key]) for key, s in MANIFEST.items()}


def in_force(stored: dict) -> dict:
    config = load_config(stored)
    return {key: getattr(config, key) for key in MANIFEST}


def page_matches(stored: dict) -> None:
    shown, used = rendered(stored), in_force(stored)
    assert shown == used, {k: (shown[k], used[k]) for k in MANIFEST if shown[k] != used[k]}


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def test_untouched_settings_page_shows_wrong_values_before_first_contact(env):
    """The problem itself: without PlexSync writing defaults, the page lies."""
    with pytest.raises(AssertionError):
        page_matches(env.stash.plugin_settings("PlexSync"))


def test_first_save_stores_the_defaults_and_the_page_matches(env):
    sid, rk = env.scene_with_item(1)
    result = env.hook(sid, scene_update(sid, title="Title 1"))
    assert result.error is None, result.stderr
    stored = env.stash.plugin_settings("PlexSync")
    page_matches(stored)
    assert stored["enabled"] is True and stored["max_retries"] == 5
    env.settle()
    assert env.plex.item(rk)["title"] == "Title 1"


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_user_values_are_kept_and_an_impossible_zero_becomes_the_default(env):
    env.settings(strict_matching=False, max_retries=0, read_timeout=60, enabled=True)
    conn = env.runner.server_connection()
    records = Records()
    logging.getLogger("plexsync.config").addHandler(records)
    try:
        assert load_config(env.stash.plugin_settings("PlexSync")).max_retries == 5  # "default", not an error
    finally:
        logging.getLogger("plexsync.config").removeHandler(records)
    assert any("Setting max_retries is 0, which it cannot be" in m for m in records.messages)
    written = plugin_settings.store_defaults(conn, "PlexSync")
    stored = env.stash.plugin_settings("PlexSync")
    assert stored["strict_matching"] is False and stored["read_timeout"] == 60 and stored["enabled"] is True
    assert stored["max_retries"] == 5 and "max_retries" in written and "strict_matching" not in written
    assert stored["plex_token"] == env.stash.plugin_settings("PlexSync")["plex_token"]
    page_matches(stored)
    assert plugin_settings.store_defaults(conn, "PlexSync") == {}  # nothing left to write


def test_first_contact_happens_once(env, tmp_path):
    sid, _ = env.scene_with_item(1)
    env.hook(sid, scene_update(sid, title="Title 1"))
    env.settle()
    assert (env.runner.data_dir / "settings_defaults.json").exists()
    env.stash.set_plugin_settings("PlexSync", {k: v for k, v in env.stash.plugin_settings("PlexSync").items()
                                               if k != "enabled"})
    env.hook(sid, scene_update(sid, title="Title 1"))
    env.settle()
    assert "enabled" not in env.stash.plugin_settings("PlexSync")  # not rewritten on every save


def test_the_every_save_path_never_does_first_contact():
    """A burst of saves right after install must not each import pydantic and ask Stash:
    the hook stores the defaults only where it checks the settings anyway."""
    source = (ROOT / "PlexSync.py").read_text(encoding="utf-8")
    hook_branch = source[source.index('if "hookContext" in args:'):source.index("return handle(payload, paths)")]
    assert "_first_contact" not in hook_branch and "plugin_settings" not in hook_branch
    assert "from worker.plugin_settings import" not in source.split("def _first_contact")[0]
    handler = (ROOT / "hooks" / "handler.py").read_text(encoding="utf-8")
    check = handler[handler.index("def _check_config"):]
    assert "show_defaults(paths, conn)" in check and "show_defaults" not in handler[:handler.index("def _check_config")]
