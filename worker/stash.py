"""Stash reads for the worker: scenes in batches, and cover images.

Translates every Stash/requests failure into StashUnavailable in one place.
"""

import logging
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from common.errors import StashUnavailable
from common.http import pin_environment
from common.log import register_secret
from common.stash_conn import session_cookie, stash_url
from validation.scene import SCENE_FRAGMENT

log = logging.getLogger("plexsync.worker")

FIND_SCENES_BY_ID = (
    "query FindScenesById($scene_ids: [Int!], $filter: FindFilterType) {"
    " findScenes(scene_ids: $scene_ids, filter: $filter) { count scenes { %s } } }" % SCENE_FRAGMENT
)
FIND_SCENE_BY_ID = "query FindSceneById($id: ID!) { findScene(id: $id) { %s } }" % SCENE_FRAGMENT
MAX_IMAGE_BYTES = 25 * 1024 * 1024


class StashClient:
    """Thin wrapper over stashapi's StashInterface, built lazily."""

    def __init__(self, server_connection: Dict[str, Any], api_key: str = "", timeout: float = 30.0) -> None:
        self.conn = dict(server_connection or {})
        self.url = stash_url(self.conn)
        self.cookie = session_cookie(self.conn)
        self.api_key = api_key
        self.timeout = timeout
        register_secret(self.cookie)
        register_secret(api_key)
        self._stash = None

    @property
    def stash(self):
        if self._stash is None:
            from stashapi.stashapp import StashInterface

            parts = urlsplit(self.url)
            conn: Dict[str, Any] = {"Scheme": parts.scheme, "Host": parts.hostname, "Port": parts.port,
                                    "Logger": log}
            if self.api_key:
                conn["ApiKey"] = self.api_key
            elif self.cookie:
                conn["SessionCookie"] = {"Name": "session", "Value": self.cookie}
            try:
                # stashapi logs its own connection failure and then raises or exits.
                self._stash = StashInterface(conn, force_api_key=True)
            except (Exception, SystemExit) as exc:
                raise StashUnavailable(f"cannot connect to Stash at {self.url}: {type(exc).__name__}") from None
            # stashapi switches to the API key (if Stash has one) so a long
            # drain outlives the session cookie.
            register_secret(self._stash.s.headers.get("ApiKey"))
            # Every request goes to Stash: read the proxy/CA environment once.
            pin_environment(self._stash.s, self.url)
            # stashapi posts without a timeout; a hung Stash must not hang the worker.
            adapter = _TimeoutAdapter(self.timeout)
            self._stash.s.mount("http://", adapter)
            self._stash.s.mount("https://", adapter)
        return self._stash

    def _call(self, query: str, variables: Dict[str, Any]) -> Dict[str, Any]:
        try:
            result = _quick_retry(self.stash.call_GQL, query, variables)
        except StashUnavailable:
            raise
        except (Exception, SystemExit) as exc:
            raise StashUnavailable(f"Stash query failed: {type(exc).__name__}") from None
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
        try:
            result = self._call(FIND_SCENES_BY_ID, {"scene_ids": ids, "filter": {"per_page": len(ids)}})
        except StashUnavailable:
            scenes = [self._call(FIND_SCENE_BY_ID, {"id": str(i)}).get("findScene") for i in ids]
        else:
            scenes = ((result.get("findScenes") or {}).get("scenes")) or []
        return {int(s["id"]): s for s in scenes if isinstance(s, dict) and s.get("id") is not None}

    def scene_page(self, page: int, per_page: int, updated_after: Optional[str] = None) -> Tuple[int, List[Dict[str, Any]]]:
        """One page of scenes ordered by id (stable while we page)."""
        scene_filter: Dict[str, Any] = {}
        if updated_after:
            scene_filter["updated_at"] = {"value": updated_after, "modifier": "GREATER_THAN"}
        try:
            count, scenes = self.stash.find_scenes(
                f=scene_filter, filter={"page": page, "per_page": per_page, "sort": "id", "direction": "ASC"},
                fragment=SCENE_FRAGMENT, get_count=True)
        except StashUnavailable:
            raise
        except (Exception, SystemExit) as exc:
            raise StashUnavailable(f"Stash query failed: {type(exc).__name__}") from None
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
        try:
            response = self.stash.s.get(url, timeout=self.timeout, allow_redirects=False, stream=True)
        except StashUnavailable:
            raise
        except Exception as exc:
            raise StashUnavailable(f"cannot fetch the scene image: {type(exc).__name__}") from None
        with response:
            ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if response.status_code != 200 or not ctype.startswith("image/") or ctype == "image/svg+xml":
                log.debug("[PlexSync Worker] No usable cover (%s, %s)", response.status_code, ctype or "no type")
                return None
            data = response.raw.read(MAX_IMAGE_BYTES + 1, decode_content=True)
        if len(data) > MAX_IMAGE_BYTES or not data:
            return None
        return data


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a timeout unless the caller set one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().send(request, **kwargs)


def _quick_retry(func, *args):
    """Ride out a Stash restart of a few seconds inside one call.

    Longer outages are the queue's business (the jobs wait and retry).
    """
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
