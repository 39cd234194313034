"""The Stash connection Stash hands the plugin, and the plugin's settings.

Stash writes ``server_connection`` on stdin: Scheme, Host (may be 0.0.0.0),
Port, SessionCookie {Name, Value, ...}, Dir, PluginDir. There is no API key
in it. Reading the settings here uses only the standard library so the hook
can afford it when its cached config state says "disabled" or "invalid".
"""

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

from common.errors import StashUnavailable

PLUGIN_SETTINGS_QUERY = "query FindPluginConfig($input: [ID!]) { configuration { plugins(include: $input) } }"


def stash_url(conn: Dict[str, Any]) -> str:
    scheme = conn.get("Scheme") or "http"
    host = conn.get("Host") or "localhost"
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    port = conn.get("Port") or 9999
    return f"{scheme}://{host}:{port}"


def session_cookie(conn: Dict[str, Any]) -> str:
    cookie = conn.get("SessionCookie") or {}
    return str(cookie.get("Value") or "") if isinstance(cookie, dict) else ""


def auth_headers(cookie: str = "", api_key: str = "") -> Dict[str, str]:
    headers = {}
    if api_key:
        headers["ApiKey"] = api_key
    elif cookie:
        headers["Cookie"] = f"session={cookie}"
    return headers


def fetch_plugin_settings(conn: Dict[str, Any], plugin_id: str, timeout: float = 10.0,
                          api_key: str = "") -> Dict[str, Any]:
    """This plugin's settings from ``configuration.plugins`` ({} when untouched)."""
    body = json.dumps({"query": PLUGIN_SETTINGS_QUERY, "variables": {"input": [plugin_id]}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    headers.update(auth_headers(session_cookie(conn), api_key))
    request = urllib.request.Request(stash_url(conn) + "/graphql", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise StashUnavailable(f"Stash answered {exc.code} when reading plugin settings") from None
    except (OSError, ValueError) as exc:
        raise StashUnavailable(f"cannot reach Stash at {stash_url(conn)}: {type(exc).__name__}") from None
    data: Optional[Dict[str, Any]] = (payload or {}).get("data") or {}
    plugins = (data.get("configuration") or {}).get("plugins") or {}
    return dict(plugins.get(plugin_id) or {})
