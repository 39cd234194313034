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

import json
import logging
import os
import urllib.error
import urllib.request

from common.errors import StashUnavailable
from common.stash_conn import auth_headers, fetch_plugin_settings, session_cookie, stash_url

log = logging.getLogger("plexsync.settings")
CONFIGURE = "mutation ConfigurePlugin($id: ID!, $input: Map!) { configurePlugin(plugin_id: $id, input: $input) }"
MARKER = "settings_defaults.json"


def defaults_to_store(settings: dict) -> dict:
    """Keys to write: default values for absent (or impossible 0) BOOLEAN/NUMBER settings."""
    from validation.config import UI_SETTINGS, PlexSyncConfig, zero_means_default

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
        _configure(conn, plugin_id, {**settings, **changes})
        log.info("[PlexSync] Settings page: stored the defaults in force for %s", ", ".join(sorted(changes)))
    return changes


def once(paths, conn: dict, plugin_id: str = "PlexSync") -> None:
    """On first contact only (a marker in the data folder); never fails the caller."""
    marker = os.path.join(paths.root, MARKER)
    if os.path.exists(marker):
        return
    try:
        written = store_defaults(conn, plugin_id)
    except StashUnavailable as exc:
        log.warning("[PlexSync] Could not store the default settings in Stash (%s); will try again", exc)
        return
    from common.jsonfile import write_json

    write_json(os.path.join(paths.ensure().root, MARKER), {"written": sorted(written)})


def _configure(conn: dict, plugin_id: str, values: dict, timeout: float = 10.0) -> None:
    body = json.dumps({"query": CONFIGURE, "variables": {"id": plugin_id, "input": values}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    headers.update(auth_headers(session_cookie(conn)))
    request = urllib.request.Request(stash_url(conn) + "/graphql", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise StashUnavailable(f"Stash answered {exc.code} to configurePlugin") from None
    except (OSError, ValueError) as exc:
        raise StashUnavailable(f"cannot reach Stash at {stash_url(conn)}: {type(exc).__name__}") from None
    if (payload or {}).get("errors"):
        raise StashUnavailable("Stash refused configurePlugin")
