"""Everything PlexSync asks Stash, and the one place Stash errors become ours.

Stash writes ``server_connection`` on stdin: Scheme, Host (may be 0.0.0.0),
Port, SessionCookie {Name, Value, ...}, Dir, PluginDir. There is no API key
in it. ``fetch_plugin_settings`` uses only the standard library, so the hook
can afford it when its cached config state says "disabled" or "invalid";
``StashClient`` (scenes and covers, for workers and tasks) imports requests,
tenacity and stashapi only when it first talks to Stash, for the same reason.
Every failure of any of them leaves this module as ``StashUnavailable``,
through ``stash_errors``.
"""

import contextlib
import json
import logging
import urllib.error
import urllib.request
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

from common.errors import StashUnavailable
from common.log import register_secret

log = logging.getLogger("plexsync.worker")

PLUGIN_SETTINGS_QUERY = "query FindPluginConfig($input: [ID!]) { configuration { plugins(include: $input) } }"
CONFIGURE_PLUGIN = "mutation ConfigurePlugin($id: ID!, $input: Map!) { configurePlugin(plugin_id: $id, input: $input) }"
MAX_IMAGE_BYTES = 25 * 1024 * 1024


# -- the connection Stash hands the plugin ---------------------------------------------

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


@contextlib.contextmanager
def stash_errors(failed: str, answered: str = "") -> Iterator[None]:
    """Re-raise any failure talking to Stash as StashUnavailable ("<failed>: <type>").

    ``answered`` words an HTTP error status: "Stash answered <code> <answered>".
    stashapi logs some failures itself and then calls sys.exit: SystemExit too.
    """
    try:
        yield
    except StashUnavailable:
        raise
    except urllib.error.HTTPError as exc:
        if not answered:
            raise StashUnavailable(f"{failed}: HTTP {exc.code}") from None
        raise StashUnavailable(f"Stash answered {exc.code} {answered}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - this is the translation place
        raise StashUnavailable(f"{failed}: {type(exc).__name__}") from None


def fetch_plugin_settings(conn: Dict[str, Any], plugin_id: str, timeout: float = 10.0,
                          api_key: str = "") -> Dict[str, Any]:
    """This plugin's settings from ``configuration.plugins`` ({} when untouched)."""
    data = _plugin_graphql(conn, PLUGIN_SETTINGS_QUERY, {"input": [plugin_id]}, timeout, api_key,
                           "when reading plugin settings").get("data") or {}
    plugins = (data.get("configuration") or {}).get("plugins") or {}
    return dict(plugins.get(plugin_id) or {})


def configure_plugin(conn: Dict[str, Any], plugin_id: str, values: Dict[str, Any], timeout: float = 10.0) -> None:
    """Store ``values`` as the plugin's whole settings map (Stash replaces, not merges)."""
    answer = _plugin_graphql(conn, CONFIGURE_PLUGIN, {"id": plugin_id, "input": values}, timeout, "",
                             "to configurePlugin")
    if answer.get("errors"):
        raise StashUnavailable("Stash refused configurePlugin")


def _plugin_graphql(conn: Dict[str, Any], query: str, variables: Dict[str, Any], timeout: float,
                    api_key: str, answered: str) -> Dict[str, Any]:
    """One GraphQL request with urllib (cheap to import: the hook's settings check uses it)."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    # A worker process_queue.py started has no session cookie: its connection carries the API key.
    headers.update(auth_headers(session_cookie(conn), api_key or str(conn.get("ApiKey") or "")))
    request = urllib.request.Request(stash_url(conn) + "/graphql", data=body, headers=headers, method="POST")
    with stash_errors(f"cannot reach Stash at {stash_url(conn)}", answered):
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    return payload or {}


# -- scenes and covers (workers and tasks) ------------------------------------------------

def _scene_fragment() -> str:
    from validation.scene import SCENE_FRAGMENT  # pydantic: the hook's settings check does not need it

    return SCENE_FRAGMENT


class StashClient:
    """Thin wrapper over stashapi's StashInterface, built lazily."""

    def __init__(self, server_connection: Dict[str, Any], api_key: str = "", timeout: float = 30.0) -> None:
        self.conn = dict(server_connection or {})
        self.url = stash_url(self.conn)
        self.cookie = session_cookie(self.conn)
        self.api_key = api_key or str(self.conn.get("ApiKey") or "")  # see fetch_plugin_settings
        self.timeout = timeout
        register_secret(self.cookie)
        register_secret(self.api_key)
        self._stash = None

    def api_key_in_use(self) -> str:
        """The API key stashapi switched to (Stash has one), or ""."""
        if self._stash is None:
            return self.api_key
        return str(self._stash.s.headers.get("ApiKey") or self.api_key or "")

    @property
    def stash(self):
        if self._stash is None:
            with stash_errors(f"cannot connect to Stash at {self.url}"):
                self._stash = self._connect()
        return self._stash

    def _connect(self):
        from stashapi.stashapp import StashInterface  # ~0.5 s of imports the hook must not pay

        from common.http import pin_environment  # imports requests: see _timeout_adapter

        parts = urlsplit(self.url)
        conn: Dict[str, Any] = {"Scheme": parts.scheme, "Host": parts.hostname, "Port": parts.port, "Logger": log}
        if self.api_key:
            conn["ApiKey"] = self.api_key
        elif self.cookie:
            conn["SessionCookie"] = {"Name": "session", "Value": self.cookie}
        stash = StashInterface(conn, force_api_key=True)
        # stashapi switches to the API key (if Stash has one) so a long
        # drain outlives the session cookie.
        register_secret(stash.s.headers.get("ApiKey"))
        # Every request goes to Stash: read the proxy/CA environment once.
        pin_environment(stash.s, self.url)
        # stashapi posts without a timeout; a hung Stash must not hang the worker.
        adapter = _timeout_adapter(self.timeout)
        stash.s.mount("http://", adapter)
        stash.s.mount("https://", adapter)
        return stash

    def _call(self, query: str, variables: Dict[str, Any]) -> Dict[str, Any]:
        with stash_errors("Stash query failed"):
            result = _quick_retry(self.stash.call_GQL, query, variables)
        if not isinstance(result, dict):
            raise StashUnavailable("Stash returned no data")
        return result

    def graphql(self, query: str, variables: Dict[str, Any]) -> Dict[str, Any]:
        """Any other Stash query (the watch-history import's), errors translated."""
        return self._call(query, variables)

    def scenes(self, scene_ids: Iterable[int]) -> Dict[int, Dict[str, Any]]:
        """Fetch scenes by id in one request; missing ids are absent (deleted).

        Stash fails the whole ``findScenes(scene_ids:)`` request when one of
        the ids no longer exists; the scenes are then fetched one by one
        (``findScene`` answers null for a deleted scene), so a deleted scene
        cannot hold back its batch. If Stash is down, that fails too.
        """
        ids = sorted({int(i) for i in scene_ids})
        if not ids:
            return {}
        fragment = _scene_fragment()
        try:
            result = self._call(
                "query FindScenesById($scene_ids: [Int!], $filter: FindFilterType) {"
                " findScenes(scene_ids: $scene_ids, filter: $filter) { count scenes { %s } } }" % fragment,
                {"scene_ids": ids, "filter": {"per_page": len(ids)}})
        except StashUnavailable:
            one = "query FindSceneById($id: ID!) { findScene(id: $id) { %s } }" % fragment
            scenes = [self._call(one, {"id": str(i)}).get("findScene") for i in ids]
        else:
            scenes = ((result.get("findScenes") or {}).get("scenes")) or []
        return {int(s["id"]): s for s in scenes if isinstance(s, dict) and s.get("id") is not None}

    def scene_page(self, page: int, per_page: int, updated_after: Optional[str] = None) -> Tuple[int, List[Dict[str, Any]]]:
        """One page of scenes ordered by id (stable while we page)."""
        scene_filter: Dict[str, Any] = {}
        if updated_after:
            scene_filter["updated_at"] = {"value": updated_after, "modifier": "GREATER_THAN"}
        with stash_errors("Stash query failed"):
            count, scenes = self.stash.find_scenes(
                f=scene_filter, filter={"page": page, "per_page": per_page, "sort": "id", "direction": "ASC"},
                fragment=_scene_fragment(), get_count=True)
        return int(count or 0), list(scenes or [])

    def fetch_image(self, url: Optional[str]) -> Optional[bytes]:
        """The scene's cover, only from Stash's own origin and only a real image.

        Stash answers an unauthenticated request with a redirect to its login
        page, and a scene without a cover with an SVG placeholder: neither is
        a poster.
        """
        if not url:
            return None
        if _origin(url) != _origin(self.url):
            log.warning("[PlexSync Worker] Not fetching image from %s: not the Stash server", _origin(url))
            return None
        with stash_errors("cannot fetch the scene image"):
            response = self.stash.s.get(url, timeout=self.timeout, allow_redirects=False, stream=True)
        with response:
            ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if response.status_code != 200 or not ctype.startswith("image/") or ctype == "image/svg+xml":
                log.debug("[PlexSync Worker] No usable cover (%s, %s)", response.status_code, ctype or "no type")
                return None
            data = response.raw.read(MAX_IMAGE_BYTES + 1, decode_content=True)
        if len(data) > MAX_IMAGE_BYTES or not data:
            return None
        return data


def _timeout_adapter(timeout: float):
    """An HTTPAdapter that gives every request ``timeout`` unless the caller set one."""
    from requests.adapters import HTTPAdapter  # ~0.2 s of imports the hook must not pay

    class TimeoutAdapter(HTTPAdapter):
        def send(self, request, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().send(request, **kwargs)

    return TimeoutAdapter()


def _quick_retry(func, *args):
    """Ride out a Stash restart of a few seconds inside one call.

    Longer outages are the queue's business (the jobs wait and retry).
    """
    import requests  # see _timeout_adapter
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

    retrying = Retrying(stop=stop_after_attempt(3), wait=wait_random_exponential(multiplier=0.5, max=3),
                        retry=retry_if_exception_type(requests.ConnectionError), reraise=True)
    return retrying(func, *args)


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in ("0.0.0.0", "localhost"):
        host = "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.scheme, host, port)
