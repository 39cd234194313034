"""Make Stash's settings page show the values PlexSync uses.

Stash has no setting defaults: a key the user never touched is absent, and
the page renders an absent BOOLEAN as off and an absent NUMBER as 0
(ui/v2.5/src/components/Settings/SettingsPluginsPanel.tsx, ``?? false``,
``?? 0``). So "Enabled" would look off while it is on. On first contact
PlexSync writes its defaults for the absent BOOLEAN and NUMBER keys with
``configurePlugin`` (which replaces the plugin's whole map, so the map is
read just before and merged; a value the user set is never changed, except
a 0 that a setting cannot take, which means "default" and is replaced by it).
STRING keys need nothing: absent renders as "", which is their default.
"""

import logging
import os

from common.errors import StashUnavailable
from common.jsonfile import write_json
from validation.config import UI_SETTINGS, PlexSyncConfig, zero_means_default
from worker.stash import configure_plugin, fetch_plugin_settings

log = logging.getLogger("plexsync.settings")


def defaults_to_store(settings: dict) -> dict:
    """Keys to write: default values for absent (or impossible 0) BOOLEAN/NUMBER settings."""
    changes = {}
    for key in UI_SETTINGS:
        field = PlexSyncConfig.model_fields[key]
        if field.annotation not in (bool, int, float) or field.is_required():
            continue
        value = settings.get(key)
        if value is None or zero_means_default(key, value):
            changes[key] = field.default
    return changes


def store_defaults(conn: dict, plugin_id: str) -> dict:
    """Merge the defaults into Stash's stored settings; what was written."""
    settings = fetch_plugin_settings(conn, plugin_id)
    changes = defaults_to_store(settings)
    if changes:
        configure_plugin(conn, plugin_id, {**settings, **changes})
        log.info("[PlexSync] Settings page: stored the defaults in force for %s", ", ".join(sorted(changes)))
    return changes


def once(paths, conn: dict, plugin_id: str = "PlexSync") -> None:
    """On first contact only (a marker in the data folder); never fails the caller."""
    marker = paths.settings_defaults
    if os.path.exists(marker):
        return
    try:
        written = store_defaults(conn, plugin_id)
    except StashUnavailable as exc:
        log.warning("[PlexSync] Could not store the default settings in Stash (%s); will try again", exc)
        return
    write_json(paths.ensure().settings_defaults, {"written": sorted(written)})
