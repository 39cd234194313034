"""A stand-in for the Stash server, for PlexSync's tests and benchmarks.

It speaks the parts of Stash that PlexSync (through the real ``stashapi``
package and plain ``requests``) uses, the way Stash v0.30.x does:

* ``POST /graphql`` executed by graphql-core against ``stash_schema.graphql``,
  a faithful subset of Stash's schema (introspection included, so
  ``StashInterface`` can build its fragments);
* ``GET /scene/{id}/screenshot`` (stored cover bytes, Stash's SVG placeholder
  when a scene has no cover, 404 for an unknown scene);
* authentication as ``internal/api/authentication.go`` does it: ``ApiKey``
  header or ``?apikey=`` first (a wrong key is 401), else the ``session``
  cookie; when credentials are configured an anonymous request gets 401 on
  ``/graphql`` and on paths with a non-``.html`` extension, and a 302 to
  ``/login?returnURL=...`` elsewhere (the screenshot URL included);
* faults: an HTTP status for the next N requests, or the whole server down
  (listening socket closed) until ``clear_faults``.

Stash behaviours kept on purpose (they are what the plugin meets in real life):

* ``Time`` values are RFC3339 with *seconds* precision in the server's zone
  (``tz``, default UTC+02:00; Go writes ``Z`` for a zero offset);
* ``scene_filter.updated_at`` / ``created_at`` compare the stored RFC3339
  string with the given value as *strings*, as SQLite does in Stash: send back
  a value in the format Stash returned, not a UTC ``Z`` rewrite of it;
* a sort is always followed by ``COALESCE(title, id) COLLATE NATURAL_CI ASC``;
  with no ``sort`` the order is by id;
* unset ``title``/``code``/``details``/``director`` come back as ``""``;
* ``findScenes(scene_ids|ids)`` ignores ``filter`` and ``scene_filter``, keeps
  the order of the ids and fails if one is unknown;
* GraphQL parse/validation errors answer HTTP 422 (gqlgen), resolver errors 200.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import http.server
import json
import operator
import re
import secrets
import socket
import struct
import threading
import time
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

from graphql import GraphQLError, build_schema, graphql_sync, parse, validate
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode

SCHEMA_PATH = Path(__file__).with_name("stash_schema.graphql")
# /work/main/tests/emulators/stash.py -> /work/shared/stash-schema
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[3] / "shared" / "stash-schema"

STASH_VERSION = {"version": "v0.30.1", "hash": "cf3489ef", "build_time": "2026-01-11 09:00:00"}
DEFAULT_TZ = timezone(timedelta(hours=2))

# What add_scene stores when no screenshot argument is given: a small valid
# JPEG, unique per scene (the scene id is in a JPEG comment segment).
DEFAULT_SCREENSHOT: Any = object()

SCENE_SORTS = frozenset({
    "bitrate", "created_at", "code", "date", "production_date", "file_count", "filesize",
    "duration", "file_mod_time", "framerate", "group_scene_number", "id", "interactive",
    "interactive_speed", "last_o_at", "last_played_at", "movie_scene_number", "o_counter",
    "organized", "performer_count", "play_count", "play_duration", "resume_time", "path",
    "perceptual_similarity", "random", "rating", "resolution", "studio", "tag_count", "title",
    "updated_at", "performer_age",
})

_SCENE_FIELDS = ("title", "details", "date", "rating100", "code", "director", "urls", "organized",
                 "studio", "performers", "tags", "files", "screenshot", "screenshot_type",
                 "updated_at", "created_at", "groups")

# A stored file is an exact tuple in this order (VideoFile fields, plus oshash).
FILE_FIELDS = ("id", "path", "basename", "size", "duration", "format", "width", "height", "video_codec",
               "audio_codec", "frame_rate", "bit_rate", "mod_time", "created_at", "updated_at", "oshash")
_PATH, _BASENAME, _SIZE, _DURATION, _OSHASH = (FILE_FIELDS.index(n) for n in
                                               ("path", "basename", "size", "duration", "oshash"))

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_NATURAL_RE = re.compile(r"(\d+)")

LOGIN_PAGE = (b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Stash</title></head>"
              b"<body><form method=\"POST\" action=\"/login\"><h1>Stash</h1>"
              b"<input name=\"username\" placeholder=\"Username\">"
              b"<input name=\"password\" type=\"password\" placeholder=\"Password\">"
              b"<button type=\"submit\">Login</button></form></body></html>")

# Served for a scene without a cover, like Stash's default scene.svg.
PLACEHOLDER_SVG = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                   b'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360" viewBox="0 0 640 360">'
                   b'<rect width="640" height="360" fill="#30404d"/>'
                   b'<path d="M270 130v100l90-50z" fill="#a7b6c2"/></svg>\n')


# ---------------------------------------------------------------------------
# small helpers

def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


_ONE_CODE = bytes([1] + [0] * 15)  # a Huffman table with a single code of length 1
_JPEG_HEAD = b"\xff\xd8" + _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
_JPEG_TAIL = (
    _jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)                               # quantisation table 0
    + _jpeg_segment(0xC0, struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00")  # 8x8, one component
    + _jpeg_segment(0xC4, b"\x00" + _ONE_CODE + b"\x00")                      # DC table: category 0
    + _jpeg_segment(0xC4, b"\x10" + _ONE_CODE + b"\x00")                      # AC table: EOB
    + _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")                       # scan header
    + b"\x3f"                                                                 # DC diff 0, EOB, padding
    + b"\xff\xd9"
)


def tiny_jpeg(comment: bytes = b"") -> bytes:
    """A valid 8x8 grey baseline JPEG, with ``comment`` in a COM segment."""
    middle = _jpeg_segment(0xFE, comment[:60000]) if comment else b""
    return _JPEG_HEAD + middle + _JPEG_TAIL


def format_time(dt: datetime, tz: timezone) -> str:
    """RFC3339 with seconds, in ``tz``, the way Go's time.RFC3339 prints it."""
    dt = dt.astimezone(tz).replace(microsecond=0)
    text = dt.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_time(value: Any, tz: timezone) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.replace(microsecond=0)


def natural_key(text: str) -> Tuple:
    """Approximates Stash's NATURAL_CI collation (numbers by value, case-insensitive)."""
    parts = _NATURAL_RE.split(text.lower())
    return tuple((0, int(p), "") if i % 2 else (1, 0, p) for i, p in enumerate(parts) if p != "")


def _basename(path: str) -> str:
    return re.split(r"[\\/]", path)[-1]


def _oshash(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _search_terms(q: str) -> List[Tuple[bool, str]]:
    """Stash-like search words: whitespace separated, "quoted phrases", -negated."""
    terms = []
    for match in re.finditer(r'(-?)"([^"]*)"|(\S+)', q):
        if match.group(3) is not None:
            word = match.group(3)
            negate = word.startswith("-") and len(word) > 1
            word = word[1:] if negate else word
        else:
            negate, word = bool(match.group(1)), match.group(2)
        if word and word.lower() != "or":
            terms.append((negate, word.lower()))
    return terms


# ---------------------------------------------------------------------------
# stored objects

# A stored scene is a plain dict whose values are atomic or tuples/flat dicts, so
# the garbage collector untracks it: 100k tracked scene objects would make every
# full collection (and so, every few queries) pause for a noticeable time.
Scene = Dict[str, Any]


def _scene_public(scene: Scene) -> Dict[str, Any]:
    out = {k: scene[k] for k in ("id", "title", "code", "details", "director", "date", "rating100",
                                 "organized", "studio", "screenshot", "screenshot_type",
                                 "created_at", "updated_at")}
    out.update(urls=list(scene["urls"]), performers=list(scene["performers"]), tags=list(scene["tags"]),
               files=[f[_PATH] for f in scene["files"]])
    return out


def _tie_key(scene: Scene) -> Tuple:
    """COALESCE(scenes.title, scenes.id) COLLATE NATURAL_CI ASC (integers sort first)."""
    if scene["title"]:
        return (1, natural_key(scene["title"]), scene["id"])
    return (0, (), scene["id"])


class _Entity:
    __slots__ = ("id", "name", "created_at", "updated_at", "updated_dt")


# ---------------------------------------------------------------------------
# criteria (pkg/sqlite/criterion_handlers.go semantics, evaluated in Python)

def _unsupported(modifier: str, what: str) -> GraphQLError:
    return GraphQLError(f"unsupported {what} modifier: {modifier}")


def _match_string(value: Optional[str], crit: Dict[str, Any]) -> bool:
    modifier, wanted = crit["modifier"], crit["value"]
    if modifier == "IS_NULL":
        return value is None or value.strip() == ""
    if modifier == "NOT_NULL":
        return value is not None and value.strip() != ""
    if modifier == "EQUALS":
        return value is not None and value.lower() == wanted.lower()
    if modifier == "NOT_EQUALS":
        return value is not None and value.lower() != wanted.lower()
    if modifier in ("INCLUDES", "EXCLUDES"):
        words = [w for _, w in _search_terms(wanted)] or [wanted.lower()]
        if modifier == "INCLUDES":
            return value is not None and all(w in value.lower() for w in words)
        return value is None or not any(w in value.lower() for w in words)
    if modifier in ("MATCHES_REGEX", "NOT_MATCHES_REGEX"):
        try:
            pattern = re.compile(wanted)
        except re.error as exc:
            raise GraphQLError(f"invalid regex {wanted!r}: {exc}") from None
        found = value is not None and pattern.search(value) is not None
        return found if modifier == "MATCHES_REGEX" else not found
    raise _unsupported(modifier, "string")


def _match_many_strings(values: Sequence[str], crit: Dict[str, Any]) -> bool:
    if crit["modifier"] == "IS_NULL":
        return not values
    if crit["modifier"] == "NOT_NULL":
        return bool(values)
    return any(_match_string(v, crit) for v in values)


def _match_ordered(value: Any, crit: Dict[str, Any], low: Any, high: Any, what: str) -> bool:
    modifier = crit["modifier"]
    if modifier == "IS_NULL":
        return value is None
    if modifier == "NOT_NULL":
        return value is not None
    if value is None:
        return False
    if modifier == "EQUALS":
        return value == low
    if modifier == "NOT_EQUALS":
        return value != low
    if modifier == "GREATER_THAN":
        return value > low
    if modifier == "LESS_THAN":
        return value < low
    if modifier == "BETWEEN":
        return low <= value <= high
    if modifier == "NOT_BETWEEN":
        return not (low <= value <= high)
    raise _unsupported(modifier, what)


def _full_date(value: str) -> str:
    match = _DATE_RE.match(value.strip())
    if not match:
        raise GraphQLError(f"invalid date {value!r}")
    return f"{match.group(1)}-{match.group(2) or '01'}-{match.group(3) or '01'}"


# ---------------------------------------------------------------------------
# the emulator

# ---------------------------------------------------------------------------
# Studios, groups and images (issue 13).
#
# As Stash serves them: ``Studio.parent_studio`` (types/studio.graphql),
# ``Scene.groups: [SceneGroup!]!`` with ``SceneGroup.group`` (types/scene.graphql),
# ``Group.front_image_path`` / ``synopsis`` (types/group.graphql). Image URLs
# carry ``?t=<updated_at unix>`` and ``&default=true`` when the entity has no
# image (internal/api/urlbuilders/studio.go, group.go, performer.go); the
# routes ``/studio/{id}/image``, ``/group/{id}/frontimage`` and
# ``/performer/{id}/image`` then serve a placeholder. Without credentials they
# answer 302 to /login like every non-GraphQL route when Stash has a password
# (internal/api/authentication.go).

class _StudiosGroupsMixin:
    """StashEmulator's studio/group/performer metadata and images."""

    def set_studio(self, name: str, *, parent: Optional[str] = None, details: Optional[str] = None,
                   image: Optional[bytes] = None) -> None:
        """Give a studio a parent, details and an image; its updated_at moves (so its image URL)."""
        with self._lock:
            entity = self._entity(self._studios, name)
            if parent is not None:
                self._entity(self._studios, parent)
            self._extras("studio")[name] = {"parent": parent, "details": details, "image": image}
            self._bump_entity(entity)

    def set_group(self, name: str, *, synopsis: Optional[str] = None, front_image: Optional[bytes] = None) -> None:
        with self._lock:
            entity = self._entity(self._groups_table(), name)
            self._extras("group")[name] = {"synopsis": synopsis, "image": front_image}
            self._bump_entity(entity)

    def set_performer_image(self, name: str, image: Optional[bytes]) -> None:
        with self._lock:
            entity = self._entity(self._performers, name)
            self._extras("performer")[name] = {"image": image}
            self._bump_entity(entity)

    # -- internals --------------------------------------------------------------
    def _extras(self, kind: str) -> Dict[str, Dict[str, Any]]:
        return self.__dict__.setdefault("_entity_extras", {}).setdefault(kind, {})

    def _groups_table(self) -> Dict[str, _Entity]:
        return self.__dict__.setdefault("_groups", {})

    def _bump_entity(self, entity: _Entity) -> None:
        entity.updated_dt = self._stamp(strictly_after_last=True)
        entity.updated_at = format_time(entity.updated_dt, self.tz)
        self._version += 1

    def _entity_extra_view(self, view: Dict[str, Any], entity: _Entity, kind: str, base: str) -> None:
        extra = self._extras(kind).get(entity.name, {})
        if extra.get("image"):
            view["image_path"] = view["image_path"].replace("&default=true", "")
        if kind == "studio":
            view["details"] = extra.get("details") or ""
            parent = extra.get("parent")
            if parent and parent in self._studios:
                view["parent_studio"] = self._entity_view(self._studios[parent], "studio", base)

    def _group_view(self, name: str, base: str) -> Dict[str, Any]:
        entity = self._groups_table()[name]
        extra = self._extras("group").get(name, {})
        unix = int(entity.updated_dt.timestamp())
        image = f"{base}/group/{entity.id}/frontimage?t={unix}" + ("" if extra.get("image") else "&default=true")
        return {"group": {"id": str(entity.id), "name": entity.name, "synopsis": extra.get("synopsis") or None,
                          "front_image_path": image, "created_at": entity.created_at,
                          "updated_at": entity.updated_at, "urls": [], "aliases": None},
                "scene_index": None}

    def _entity_image(self, kind: str, entity_id: str) -> Tuple[int, str, bytes]:
        table = {"studio": self._studios, "performer": self._performers, "group": self._groups_table()}[kind]
        with self._lock:
            entity = next((e for e in table.values() if str(e.id) == entity_id), None)
            if entity is None:
                return 404, "text/plain; charset=utf-8", b"Not Found\n"
            image = self._extras(kind).get(entity.name, {}).get("image")
            if not image:
                return 200, "image/svg+xml", PLACEHOLDER_SVG
            return 200, "image/jpeg", bytes(image)


# ===========================================================================
# plays and resume points (PlexSync's watch-history import, issue 14)
#
# As stashapp/stash cf3489e does it:
# * internal/api/resolver_mutation_scene.go ``SceneAddPlay`` converts the
#   times to local time and calls ``AddViews``; pkg/sqlite/table.go
#   ``addDates`` inserts one row per time, with no de-duplication, whole
#   seconds in UTC, and with no times inserts *now*; it answers the scene's
#   whole play history (``count`` = its length), newest first (``getDates``
#   orders by date DESC). An unknown scene id fails on the foreign key.
# * ``SceneSaveActivity`` -> pkg/sqlite/scene.go ``SaveActivity``: checks the
#   id exists, sets ``resume_time`` and adds ``playDuration`` to
#   ``play_duration``; answers true.
# * Neither mutation runs ``ExecutePostHooks`` (no Scene.Update.Post hook,
#   ../shared/reference/stash-plugin-protocol.md section 2 "Not hooked") and
#   neither touches ``updated_at``: the emulator fires nothing and keeps it.
# * ``play_count`` is the number of plays, ``last_played_at`` the newest.
# ===========================================================================

_RELATIVE = re.compile(r"^([<>])(\d+)([smhd])$")


def parse_timestamp(value: Any, tz: timezone) -> datetime:
    """Stash's ``Timestamp`` input: RFC3339, or ``<4h`` (past) / ``>5m`` (future)."""
    rel = _RELATIVE.match(str(value).strip())
    if rel:
        sign = -1 if rel.group(1) == "<" else 1
        delta = timedelta(seconds=int(rel.group(2)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[rel.group(3)])
        return (datetime.now(tz) + sign * delta).replace(microsecond=0)
    try:
        return parse_time(value, tz)
    except ValueError:
        raise GraphQLError(f"invalid timestamp {value!r}") from None


def _activity_of(emu: "StashEmulator", scene_id: int) -> Dict[str, Any]:
    table = emu.__dict__.setdefault("_activity", {})
    return table.setdefault(scene_id, {"plays": [], "resume_time": 0.0, "play_duration": 0.0})


def _scene_id_arg(emu: "StashEmulator", id: Any, *, fk_error: bool) -> int:
    try:
        scene_id = int(id)
    except ValueError:
        raise GraphQLError(f'converting id: strconv.Atoi: parsing "{id}": invalid syntax') from None
    if scene_id not in emu._scenes:
        raise GraphQLError("inserting into scenes_view_dates: FOREIGN KEY constraint failed" if fk_error
                           else f"scene with id {scene_id} not found")
    return scene_id


class _PlayMixin:
    def _play_resolvers(self) -> Dict[str, Callable]:
        return {"sceneAddPlay": self._resolve_scene_add_play,
                "sceneSaveActivity": self._resolve_scene_save_activity}

    def fail_plays_after(self, n: Optional[int]) -> None:
        """Fault injection: after ``n`` more successful ``sceneAddPlay`` calls, each
        one fails like a locked database (None: never)."""
        with self._lock:
            self.__dict__["_plays_left"] = n

    def _resolve_scene_add_play(self, info, id, times=None):
        with self._lock:
            left = self.__dict__.get("_plays_left")
            if left is not None:
                if left <= 0:
                    raise GraphQLError("inserting into scenes_view_dates: database is locked")
                self.__dict__["_plays_left"] = left - 1
            scene_id = _scene_id_arg(self, id, fk_error=True)
            when = [parse_timestamp(t, self.tz) for t in times] if times else [datetime.now(self.tz)]
            act = _activity_of(self, scene_id)
            act["plays"].extend(t.astimezone(timezone.utc).replace(microsecond=0) for t in when)
            history = sorted(act["plays"], reverse=True)
            return {"count": len(history), "history": [format_time(t, self.tz) for t in history]}

    def _resolve_scene_save_activity(self, info, id, resume_time=None, playDuration=None):
        with self._lock:
            act = _activity_of(self, _scene_id_arg(self, id, fk_error=False))
            if resume_time is not None:
                act["resume_time"] = float(resume_time)
            if playDuration is not None:
                act["play_duration"] += float(playDuration)
            return True

    def _activity_view(self, scene_id: int) -> Dict[str, Any]:
        act = self.__dict__.get("_activity", {}).get(scene_id) or {"plays": [], "resume_time": 0.0,
                                                                   "play_duration": 0.0}
        history = sorted(act["plays"], reverse=True)
        return {"last_played_at": format_time(history[0], self.tz) if history else None,
                "resume_time": act["resume_time"], "play_duration": act["play_duration"],
                "play_count": len(history), "play_history": [format_time(t, self.tz) for t in history]}

    def play_history(self, scene_id: int) -> List[datetime]:
        """The scene's plays (UTC datetimes), newest first, for tests."""
        with self._lock:
            return sorted(self.__dict__.get("_activity", {}).get(int(scene_id), {}).get("plays", []),
                          reverse=True)

# =========================================================================== end plays


class StashEmulator(_StudiosGroupsMixin, _PlayMixin):
    """A threaded HTTP stand-in for Stash on 127.0.0.1 (a free port)."""

    def __init__(self, *, api_key: Optional[str] = None, require_auth: bool = False,
                 latency: float = 0.0, tz: timezone = DEFAULT_TZ):
        self.api_key = api_key
        self.require_auth = require_auth
        self.latency = latency
        self.tz = tz
        self.external_host: Optional[str] = None   # Stash's external_host setting
        # Stash's config folder (server_connection.Dir); when set, every settings
        # change rewrites config.yml there, as Stash does (see set_plugin_settings).
        self.config_dir: Optional[str] = None
        self.host = "127.0.0.1"
        self.port = 0
        self.documents: List[Dict[str, Any]] = []
        self.requests: List[Tuple[str, str, Dict[str, str]]] = []

        self._lock = threading.RLock()
        self._scenes: Dict[int, Scene] = {}
        self._next_scene_id = 1
        self._next_file_id = 1
        self._studios: Dict[str, _Entity] = {}
        self._performers: Dict[str, _Entity] = {}
        self._tags: Dict[str, _Entity] = {}
        self._plugin_settings: Dict[str, Dict[str, Any]] = {}
        self._sessions: set = set()
        self._faults: List[Dict[str, Any]] = []
        self._down = False
        self._last_dt: Optional[datetime] = None
        self._version = 0
        self._order_cache: Dict[Any, List[int]] = {}
        self._tie_order: List[int] = []   # scene ids by COALESCE(title, id) NATURAL_CI, kept sorted
        self._order_version = -1

        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._connections: set = set()
        self._schema = _load_schema()
        self._root = {
            "version": lambda info: dict(STASH_VERSION),
            "configuration": self._resolve_configuration,
            "findScene": self._resolve_find_scene,
            "findScenes": self._resolve_find_scenes,
            "configurePlugin": self._resolve_configure_plugin,
        }
        self._root.update(self._play_resolvers())  # plays and resume points (watch-history block)

    # -- lifecycle -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def graphql_url(self) -> str:
        return self.url + "/graphql"

    def start(self) -> "StashEmulator":
        with self._lock:
            if self._server is None:
                self._listen()
        return self

    def stop(self) -> None:
        with self._lock:
            self._close_listener()
            self._drop_connections()
            self._down = False

    def __enter__(self) -> "StashEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _listen(self) -> None:
        handler = type("StashHandler", (_Handler,), {"emulator": self})
        server = _Server((self.host, self.port), handler)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"stash-emulator:{self.port}", daemon=True)
        self._thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _drop_connections(self) -> None:
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass
        self._connections.clear()

    def server_connection(self, cookie: Optional[str] = None, *, plugin_dir: str = "",
                          dir: str = "") -> Dict[str, Any]:
        """The ``server_connection`` object Stash writes on a plugin's stdin."""
        value = cookie if cookie is not None else self.new_session_cookie()
        expires = format_time(datetime.now(timezone.utc) + timedelta(hours=1), timezone.utc)
        return {
            "Scheme": "http", "Host": self.host, "Port": self.port,
            "SessionCookie": {"Name": "session", "Value": value, "Path": "/", "Domain": "",
                              "Expires": expires, "RawExpires": "", "MaxAge": 3600, "Secure": False,
                              "HttpOnly": False, "SameSite": 2, "Raw": "", "Unparsed": None},
            "Dir": dir, "PluginDir": plugin_dir,
        }

    # -- sessions, settings, faults -------------------------------------------

    def new_session_cookie(self) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
        with self._lock:
            self._sessions.add(token)
        return token

    def expire_sessions(self) -> None:
        with self._lock:
            self._sessions.clear()

    def set_plugin_settings(self, plugin_id: str, settings: dict) -> None:
        """Replace a plugin's stored settings (like configurePlugin); keys never set stay absent."""
        with self._lock:
            self._plugin_settings[str(plugin_id)] = json.loads(json.dumps(dict(settings)))
            self._write_config_file()

    def _write_config_file(self) -> None:
        """Stash's ``configurePlugin`` (internal/api/resolver_mutation_configure.go) calls
        ``SetPluginConfiguration`` then ``config.Write()``, which rewrites the config file
        in place with ``os.WriteFile`` (internal/manager/config/config.go);
        ``server_connection.Dir`` is that file's folder (pkg/plugin/plugins.go,
        ``GetConfigPathAbs``). JSON is YAML, which is all a reader needs here."""
        if not self.config_dir:
            return
        with open(f"{self.config_dir}/config.yml", "w", encoding="utf-8") as fh:
            json.dump({"plugins": {"settings": self._plugin_settings}}, fh, indent=2)

    def plugin_settings(self, plugin_id: str) -> Dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._plugin_settings.get(plugin_id, {})))

    def fault(self, *, status: Optional[int] = None, times: Optional[int] = None,
              path_prefix: Optional[str] = None, down: bool = False) -> None:
        """Fail requests: answer ``status`` for the next ``times`` requests (all when None)
        whose path starts with ``path_prefix``; or ``down=True``: close the listening
        socket and every open connection until ``clear_faults``."""
        with self._lock:
            if down:
                if not self._down and self._server is not None:
                    self._close_listener()
                    self._drop_connections()
                self._down = True
                return
            if status is None:
                raise ValueError("fault() needs status=... or down=True")
            if times is not None and times <= 0:
                return
            self._faults.append({"status": int(status), "times": times, "prefix": path_prefix or ""})

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            if self._down:
                self._down = False
                for _ in range(50):
                    try:
                        self._listen()
                        break
                    except OSError:
                        time.sleep(0.02)
                else:
                    raise RuntimeError(f"could not listen on {self.host}:{self.port} again")

    def _take_fault(self, path: str) -> Optional[int]:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault["prefix"]):
                    if fault["times"] is not None:
                        fault["times"] -= 1
                        if fault["times"] <= 0:
                            self._faults.remove(fault)
                    return fault["status"]
        return None

    # -- scenes ----------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.now(self.tz).replace(microsecond=0)

    def latest_stamp(self) -> float:
        """Epoch seconds of the newest updated_at handed out (0: none yet)."""
        with self._lock:
            return self._last_dt.timestamp() if self._last_dt is not None else 0.0

    def _stamp(self, *, strictly_after_last: bool) -> datetime:
        now = self._now()
        if self._last_dt is not None:
            floor = self._last_dt + timedelta(seconds=1) if strictly_after_last else self._last_dt
            now = max(now, floor)
        self._last_dt = now
        return now

    def _note_time(self, dt: datetime) -> None:
        if self._last_dt is None or dt > self._last_dt:
            self._last_dt = dt

    def _entity(self, table: Dict[str, _Entity], name: str) -> _Entity:
        entity = table.get(name)
        if entity is None:
            entity = _Entity()
            entity.id = len(table) + 1
            entity.name = name
            entity.updated_dt = self._now()
            entity.created_at = entity.updated_at = format_time(entity.updated_dt, self.tz)
            table[name] = entity
        return entity

    def _make_files(self, files: Iterable[Any], stamp: str) -> Tuple[Tuple, ...]:
        out = []
        for item in files or ():
            spec = {"path": item} if isinstance(item, str) else dict(item)
            path = str(spec["path"])
            digest = int(hashlib.md5(path.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16)
            record = {
                "id": str(self._next_file_id), "path": path, "basename": _basename(path),
                "size": 100_000_000 + digest % 4_000_000_000, "duration": 1800.0 + digest % 3600,
                "format": "mp4", "width": 1920, "height": 1080, "video_codec": "h264",
                "audio_codec": "aac", "frame_rate": 29.97, "bit_rate": 8_000_000,
                "mod_time": stamp, "created_at": stamp, "updated_at": stamp,
                "oshash": _oshash(path),
            }
            unknown = set(spec) - set(FILE_FIELDS)
            if unknown:
                raise TypeError(f"unknown VideoFile field(s) {sorted(unknown)}")
            record.update({k: v for k, v in spec.items() if k != "path"})
            self._next_file_id += 1
            out.append(tuple(record[k] for k in FILE_FIELDS))   # an exact tuple: GC-untrackable
        return tuple(out)

    def _apply(self, scene: Scene, changes: Dict[str, Any]) -> None:
        for key, value in changes.items():
            if key in ("title", "details", "code", "director"):
                scene[key] = "" if value is None else str(value)
            elif key == "date":
                if value is not None:
                    _full_date(str(value))  # validate
                scene["date"] = None if value in (None, "") else str(value)
            elif key == "rating100":
                scene["rating100"] = None if value is None else int(value)
            elif key == "urls":
                scene["urls"] = tuple(str(u) for u in (value or ()))
            elif key == "organized":
                scene["organized"] = bool(value)
            elif key == "studio":
                scene["studio"] = value or None
                if scene["studio"]:
                    self._entity(self._studios, scene["studio"])
            elif key in ("performers", "tags"):
                names = [str(n) for n in (value or ())]
                table = self._performers if key == "performers" else self._tags
                for name in names:
                    self._entity(table, name)
                scene[key] = tuple(names)
            elif key == "files":
                scene["files"] = self._make_files(value, scene["updated_at"] or format_time(self._now(), self.tz))
            elif key == "groups":  # see _StudiosGroupsMixin
                names = [str(n) for n in (value or ())]
                for name in names:
                    self._entity(self._groups_table(), name)
                scene["groups"] = tuple(names)
            elif key == "screenshot":
                scene["screenshot"] = value
            elif key == "screenshot_type":
                scene["screenshot_type"] = str(value)
            elif key in ("updated_at", "created_at"):
                dt = parse_time(value, self.tz)
                self._note_time(dt)
                scene[key] = format_time(dt, self.tz)
                scene["updated_dt" if key == "updated_at" else "created_dt"] = dt
            else:
                raise TypeError(f"unknown scene field {key!r}")

    def add_scene(self, *, id: Optional[int] = None, title: Optional[str] = None,
                  details: Optional[str] = None, date: Optional[str] = None,
                  rating100: Optional[int] = None, code: Optional[str] = None,
                  director: Optional[str] = None, urls: Sequence[str] = (), organized: bool = False,
                  studio: Optional[str] = None, performers: Sequence[str] = (),
                  tags: Sequence[str] = (), files: Sequence[Any] = (),
                  screenshot: Any = DEFAULT_SCREENSHOT, screenshot_type: str = "image/jpeg",
                  updated_at: Optional[str] = None, created_at: Optional[str] = None,
                  groups: Sequence[str] = ()) -> int:
        """Store a scene; returns its id. ``files`` are paths (or dicts with ``path`` and
        VideoFile overrides); ``screenshot=None`` means no cover (SVG placeholder)."""
        with self._lock:
            if id is None:
                id = self._next_scene_id
            id = int(id)
            if id in self._scenes:
                raise ValueError(f"scene {id} already exists")
            self._next_scene_id = max(self._next_scene_id, id + 1)
            scene: Scene = {"id": id}
            stamp = self._stamp(strictly_after_last=False)
            scene["created_dt"] = scene["updated_dt"] = stamp
            scene["created_at"] = scene["updated_at"] = format_time(stamp, self.tz)
            scene["title"] = scene["code"] = scene["details"] = scene["director"] = ""
            scene["urls"], scene["date"], scene["rating100"], scene["organized"] = (), None, None, False
            scene["studio"], scene["performers"], scene["tags"], scene["files"] = None, (), (), ()
            scene["screenshot_type"] = "image/jpeg"
            if screenshot is DEFAULT_SCREENSHOT:
                screenshot = tiny_jpeg(f"stash-emulator scene {id}".encode())
            changes = {"title": title, "details": details, "date": date, "rating100": rating100,
                       "code": code, "director": director, "urls": urls, "organized": organized,
                       "studio": studio, "performers": performers, "tags": tags,
                       "screenshot": screenshot, "screenshot_type": screenshot_type, "groups": groups}
            if created_at is not None:
                changes["created_at"] = created_at
            if updated_at is not None:
                changes["updated_at"] = updated_at
            self._apply(scene, changes)
            self._apply(scene, {"files": files})
            scene["tie"] = _tie_key(scene)
            self._scenes[id] = scene
            bisect.insort(self._tie_order, id, key=self._tie_of)
            self._version += 1
            return id

    def update_scene(self, scene_id: int, **changes: Any) -> None:
        """Change stored fields (same names as add_scene). ``updated_at`` moves to a
        value strictly after every timestamp handed out so far, unless given."""
        with self._lock:
            scene = self._scenes[int(scene_id)]
            unknown = set(changes) - set(_SCENE_FIELDS)
            if unknown:
                raise TypeError(f"unknown scene field(s) {sorted(unknown)}")
            new = dict(scene)           # all or nothing: a bad value leaves the scene as it was
            self._apply(new, changes)
            if "updated_at" not in changes:
                stamp = self._stamp(strictly_after_last=True)
                new["updated_dt"] = stamp
                new["updated_at"] = format_time(stamp, self.tz)
            new["tie"] = _tie_key(new)
            if new["tie"] != scene["tie"]:
                del self._tie_order[bisect.bisect_left(self._tie_order, scene["tie"], key=self._tie_of)]
                self._scenes[new["id"]] = new
                bisect.insort(self._tie_order, new["id"], key=self._tie_of)
            else:
                self._scenes[new["id"]] = new
            self._version += 1

    def delete_scene(self, scene_id: int) -> None:
        with self._lock:
            scene = self._scenes[int(scene_id)]
            del self._tie_order[bisect.bisect_left(self._tie_order, scene["tie"], key=self._tie_of)]
            del self._scenes[scene["id"]]
            self._version += 1

    def scene(self, scene_id: int) -> Dict[str, Any]:
        with self._lock:
            return _scene_public(self._scenes[int(scene_id)])

    def scene_ids(self) -> List[int]:
        with self._lock:
            return sorted(self._scenes)

    # -- GraphQL resolvers -----------------------------------------------------

    def _resolve_configuration(self, info) -> Dict[str, Any]:
        def plugins(_info, include=None):
            with self._lock:
                if not include:
                    return json.loads(json.dumps(self._plugin_settings))
                return {pid: json.loads(json.dumps(self._plugin_settings[pid]))
                        for pid in include if self._plugin_settings.get(pid)}

        return {
            "general": {
                "databasePath": "/root/.stash/stash-go.sqlite", "generatedPath": "/root/.stash/generated",
                "metadataPath": "/root/.stash/metadata", "configFilePath": "/root/.stash/config.yml",
                "pluginsPath": "/root/.stash/plugins", "cachePath": "/root/.stash/cache",
                "calculateMD5": False, "parallelTasks": 1, "apiKey": self.api_key or "",
                "username": "stash" if self.require_auth else "", "maxSessionAge": 3600,
                "logLevel": "Info", "pythonPath": "",
            },
            "ui": {},
            "plugins": plugins,
        }

    def _resolve_configure_plugin(self, info, plugin_id, input):
        self.set_plugin_settings(plugin_id, input)
        return self.plugin_settings(plugin_id)

    def _resolve_find_scene(self, info, id=None):
        if id is None:
            return None
        try:
            scene_id = int(id)
        except ValueError:
            raise GraphQLError(f'strconv.Atoi: parsing "{id}": invalid syntax') from None
        with self._lock:
            scene = self._scenes.get(scene_id)
            return None if scene is None else self._scene_view(scene, info.context)

    def _resolve_find_scenes(self, info, scene_filter=None, scene_ids=None, ids=None, filter=None):
        ctx = info.context
        with self._lock:
            if ids:
                try:
                    scene_ids = [int(i) for i in ids]
                except ValueError as exc:
                    raise GraphQLError(str(exc)) from None
            if scene_ids:
                # FindMany: each id is placed at its first index; a hole is an error
                found: List[Optional[Scene]] = [None] * len(scene_ids)
                for sid in dict.fromkeys(scene_ids):
                    if sid in self._scenes:
                        found[scene_ids.index(sid)] = self._scenes[sid]
                for sid, scene in zip(scene_ids, found):
                    if scene is None:
                        raise GraphQLError(f"scene with id {sid} not found")
                matched = found
                page = found
            else:
                matched, page = self._query(scene_filter, filter or {})
            views = [self._scene_view(s, ctx) for s in page]
        return {
            "count": len(matched),
            "duration": lambda _i: float(sum(s["files"][0][_DURATION] for s in matched if s["files"])),
            "filesize": lambda _i: float(sum(s["files"][0][_SIZE] for s in matched if s["files"])),
            "scenes": views,
        }

    # -- query engine ----------------------------------------------------------

    def _ordered(self, sort: Optional[str], direction: str) -> List[int]:
        if self._order_version != self._version:
            self._order_cache.clear()
            self._order_version = self._version
        key = (sort, direction)
        cached = self._order_cache.get(key)
        if cached is not None:
            return cached
        scenes = self._scenes
        if not sort:
            order = sorted(scenes)
        else:
            # stable sorts: the primary key over the tie-break order
            primary = self._sort_key(sort)
            order = sorted(self._tie_order, key=lambda i: primary(scenes[i]), reverse=(direction == "DESC"))
        self._order_cache[key] = order
        return order

    def _tie_of(self, scene_id: int) -> Tuple:
        return self._scenes[scene_id]["tie"]

    def _sort_key(self, sort: str) -> Callable[[Scene], Any]:
        if sort not in SCENE_SORTS:
            raise GraphQLError(f"invalid sort: {sort}")

        def nullable(value):
            return (0, None) if value is None else (1, value)

        def primary_file(scene: Scene, field: str):
            return nullable(scene["files"][0][FILE_FIELDS.index(field)] if scene["files"] else None)

        keys: Dict[str, Callable[[Scene], Any]] = {
            "id": lambda s: s["id"],
            "title": lambda s: (natural_key(s["title"] or (s["files"][0][_BASENAME] if s["files"] else "")),
                                natural_key(s["files"][0][_PATH][: -len(s["files"][0][_BASENAME])]
                                            if s["files"] else "")),
            "updated_at": lambda s: s["updated_at"],
            "created_at": lambda s: s["created_at"],
            "date": lambda s: nullable(_full_date(s["date"]) if s["date"] else None),
            "rating": lambda s: nullable(s["rating100"]),
            "organized": lambda s: s["organized"],
            "code": lambda s: nullable(s["code"] or None),
            "path": lambda s: natural_key(s["files"][0][_PATH] if s["files"] else ""),
            "filesize": lambda s: primary_file(s, "size"),
            "duration": lambda s: primary_file(s, "duration"),
            "file_count": lambda s: len(s["files"]),
            "tag_count": lambda s: len(s["tags"]),
            "performer_count": lambda s: len(s["performers"]),
            "studio": lambda s: nullable(s["studio"]),
        }
        if sort not in keys:
            raise GraphQLError(f"stash emulator: sort {sort!r} is valid in Stash but not emulated")
        return keys[sort]

    def _query(self, scene_filter: Optional[Dict[str, Any]], find: Dict[str, Any]):
        sort = find.get("sort") or None
        direction = find.get("direction") or "ASC"
        if scene_filter:
            self._validate_filter(scene_filter)
        order = self._ordered(sort, direction)
        scenes = self._scenes
        predicate = self._predicate(scene_filter) if scene_filter else None
        terms = _search_terms(find.get("q") or "")
        fast = self._timestamp_only(scene_filter, order) if scene_filter and not terms else None
        if fast is not None:
            matched_ids = fast
        elif predicate is None and not terms:
            matched_ids = order
        else:
            matched_ids = [i for i in order
                           if (predicate is None or predicate(scenes[i]))
                           and (not terms or self._search(scenes[i], terms))]
        per_page = find.get("per_page")
        per_page = 25 if per_page is None else per_page
        page = find.get("page") or 1
        page = 1 if page < 1 else page
        if per_page < 0:
            page_ids = matched_ids
        else:
            start = (page - 1) * per_page
            page_ids = matched_ids[start:start + per_page]
        matched = _LazyScenes(scenes, matched_ids)
        return matched, [scenes[i] for i in page_ids]

    def _timestamp_only(self, f: Dict[str, Any], order: List[int]) -> Optional[List[int]]:
        """Fast path for the incremental-sync filter: one created_at/updated_at criterion."""
        if len(f) != 1:
            return None
        (name, crit), = f.items()
        if name not in ("updated_at", "created_at") or crit is None:
            return None
        get, scenes, value = operator.itemgetter(name), self._scenes, crit["value"]
        modifier = crit["modifier"]
        if modifier == "GREATER_THAN":
            return [i for i in order if get(scenes[i]) > value]
        if modifier == "LESS_THAN":
            return [i for i in order if get(scenes[i]) < value]
        if modifier == "EQUALS":
            return [i for i in order if get(scenes[i]) == value]
        return None

    @staticmethod
    def _search(scene: Scene, terms: List[Tuple[bool, str]]) -> bool:
        haystack = [scene["title"], scene["details"], scene["code"]]
        for f in scene["files"]:
            haystack += [f[_PATH], f[_OSHASH]]
        haystack = [h.lower() for h in haystack if h]
        for negate, word in terms:
            if any(word in h for h in haystack) == negate:
                return False
        return True

    def _validate_filter(self, f: Dict[str, Any]) -> None:
        subs = [k for k in ("AND", "OR", "NOT") if f.get(k) is not None]
        if len(subs) > 1:
            raise GraphQLError(f"{subs[0]} and {subs[1]} sub-filters are not supported in the same filter")
        if subs:
            self._validate_filter(f[subs[0]])

    def _predicate(self, f: Dict[str, Any]) -> Callable[[Scene], bool]:
        tests: List[Callable[[Scene], bool]] = []
        upper = format_time(datetime.now(self.tz) + timedelta(days=1), self.tz)

        def add_string(field: str, getter):
            crit = f.get(field)
            if crit is not None:
                tests.append(lambda s, c=crit: _match_string(getter(s), c))

        for name in ("title", "code", "details", "director"):
            add_string(name, lambda s, n=name: (s[n] or None))
        if f.get("path") is not None:
            tests.append(lambda s, c=f["path"]: _match_many_strings([x[_PATH] for x in s["files"]], c))
        if f.get("url") is not None:
            tests.append(lambda s, c=f["url"]: _match_many_strings(s["urls"], c))
        for name, getter in (("id", lambda s: s["id"]), ("rating100", lambda s: s["rating100"]),
                             ("file_count", lambda s: len(s["files"]))):
            crit = f.get(name)
            if crit is not None:
                low, high = crit["value"], crit.get("value2")
                high = low if high is None else high
                tests.append(lambda s, c=crit, g=getter, lo=low, hi=high: _match_ordered(g(s), c, lo, hi, "int"))
        if f.get("organized") is not None:
            tests.append(lambda s, w=f["organized"]: s["organized"] == w)
        if f.get("date") is not None:
            crit = f["date"]
            low = _full_date(crit["value"]) if crit["modifier"] not in ("IS_NULL", "NOT_NULL") else None
            high = _full_date(crit["value2"]) if crit.get("value2") else upper
            tests.append(lambda s, c=crit, lo=low, hi=high:
                         _match_ordered(_full_date(s["date"]) if s["date"] else None, c, lo, hi, "date"))
        for name in ("created_at", "updated_at"):
            crit = f.get(name)
            if crit is not None:
                # compared as strings, as SQLite compares Stash's stored RFC3339 text
                high = crit.get("value2") if crit.get("value2") is not None else upper
                tests.append(lambda s, c=crit, n=name, hi=high: _match_ordered(s[n], c, c["value"], hi, "timestamp"))

        def own(scene: Scene) -> bool:
            return all(t(scene) for t in tests)

        if f.get("AND") is not None:
            sub = self._predicate(f["AND"])
            return lambda s: own(s) and sub(s)
        if f.get("OR") is not None:
            sub = self._predicate(f["OR"])
            if not tests:
                return sub
            return lambda s: own(s) or sub(s)
        if f.get("NOT") is not None:
            sub = self._predicate(f["NOT"])
            return lambda s: own(s) and not sub(s)
        return own

    # -- views -----------------------------------------------------------------

    def _entity_view(self, entity: _Entity, kind: str, base: str) -> Dict[str, Any]:
        unix = int(entity.updated_dt.timestamp())
        view = {"id": str(entity.id), "name": entity.name, "created_at": entity.created_at,
                "updated_at": entity.updated_at, "aliases": [], "alias_list": [], "urls": [],
                "ignore_auto_tag": False, "favorite": False, "details": "", "rating100": None,
                "image_path": f"{base}/{kind}/{entity.id}/image?t={unix}&default=true"}
        if kind == "tag":
            view.update({"sort_name": "", "description": "", "parents": [], "children": []})
        elif kind == "studio":
            view["parent_studio"] = None
        elif kind == "performer":
            view["disambiguation"] = ""
        self._entity_extra_view(view, entity, kind, base)  # see _StudiosGroupsMixin
        return view

    @staticmethod
    def _file_view(f: Tuple) -> Dict[str, Any]:
        view = dict(zip(FILE_FIELDS, f))
        fingerprints = [{"type": "oshash", "value": view.pop("oshash")}]
        view["fingerprints"] = fingerprints
        view["fingerprint"] = lambda _info, type: next(
            (fp["value"] for fp in fingerprints if fp["type"] == type), None)
        return view

    def _scene_view(self, scene: Scene, ctx: Dict[str, Any]) -> Dict[str, Any]:
        base = ctx["base_url"]
        sid = scene["id"]
        oshash = scene["files"][0][_OSHASH] if scene["files"] else ""
        stream = f"{base}/scene/{sid}/stream"
        if self.api_key:
            stream += "?" + urlencode({"apikey": self.api_key})
        studio = self._studios.get(scene["studio"]) if scene["studio"] else None
        return {
            "id": str(sid), "title": scene["title"], "code": scene["code"], "details": scene["details"],
            "director": scene["director"], "url": scene["urls"][0] if scene["urls"] else None,
            "urls": list(scene["urls"]), "date": scene["date"], "rating100": scene["rating100"],
            "organized": scene["organized"], "o_counter": 0, "interactive": False,
            "interactive_speed": None, "created_at": scene["created_at"], "updated_at": scene["updated_at"],
            **self._activity_view(sid), "o_history": [],
            "files": [self._file_view(f) for f in scene["files"]],
            "paths": {
                "screenshot": f"{base}/scene/{sid}/screenshot?t={int(scene['updated_dt'].timestamp())}",
                "preview": f"{base}/scene/{sid}/preview",
                "stream": stream,
                "webp": f"{base}/scene/{sid}/webp",
                "vtt": f"{base}/scene/{oshash}_thumbs.vtt",
                "sprite": f"{base}/scene/{oshash}_sprite.jpg",
                "funscript": f"{base}/scene/{sid}/funscript",
                "interactive_heatmap": f"{base}/scene/{sid}/interactive_heatmap",
                "caption": f"{base}/scene/{sid}/caption",
            },
            "studio": self._entity_view(studio, "studio", base) if studio else None,
            "performers": [self._entity_view(self._performers[n], "performer", base) for n in scene["performers"]],
            "tags": [self._entity_view(self._tags[n], "tag", base) for n in scene["tags"]],
            "groups": [self._group_view(n, base) for n in scene.get("groups", ())],
        }

    # -- HTTP-level behaviour (called by the handler) ----------------------------

    def _identify(self, headers, query: Dict[str, List[str]]) -> str:
        """'key', 'session', 'anonymous' or 'bad_key' (session.Store.Authenticate)."""
        key = headers.get("ApiKey") or (query.get("apikey") or [""])[0]
        if key:
            return "key" if self.api_key and secrets.compare_digest(key, self.api_key) else "bad_key"
        raw = headers.get("Cookie")
        if raw:
            try:
                jar = SimpleCookie()
                jar.load(raw)
            except CookieError:
                jar = SimpleCookie()
            morsel = jar.get("session")
            if morsel is not None:
                with self._lock:
                    if morsel.value in self._sessions:
                        return "session"
        return "anonymous"

    def _execute(self, payload: Dict[str, Any], base_url: str) -> Tuple[int, Dict[str, Any]]:
        query = payload.get("query")
        if not isinstance(query, str) or not query.strip():
            return 422, {"errors": [{"message": "no operation provided",
                                     "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}], "data": None}
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return 400, {"errors": [{"message": "variables must be an object"}], "data": None}
        result = graphql_sync(self._schema, query, root_value=self._root,
                              context_value={"base_url": base_url, "emulator": self},
                              variable_values=variables, operation_name=payload.get("operationName"))
        errors = [e.formatted for e in result.errors or ()]
        if result.data is None and result.errors and all(e.path is None for e in result.errors):
            code = ("GRAPHQL_PARSE_FAILED" if result.errors[0].message.startswith("Syntax Error")
                    else "GRAPHQL_VALIDATION_FAILED")
            for e in errors:
                e.setdefault("extensions", {})["code"] = code
            return 422, {"errors": errors, "data": None}
        body: Dict[str, Any] = {"data": result.data}
        if errors:
            body = {"errors": errors, "data": result.data}
        return 200, body

    def _screenshot(self, scene_id: str) -> Tuple[int, str, bytes]:
        try:
            sid = int(scene_id)
        except ValueError:
            return 404, "text/plain; charset=utf-8", b"Not Found\n"
        with self._lock:
            scene = self._scenes.get(sid)
            if scene is None:
                return 404, "text/plain; charset=utf-8", b"Not Found\n"
            if scene["screenshot"] is None:
                return 200, "image/svg+xml", PLACEHOLDER_SVG
            return 200, scene["screenshot_type"], bytes(scene["screenshot"])



class _LazyScenes:
    """The matched scenes of a query: a length, and iteration only if asked."""

    def __init__(self, scenes: Dict[int, Scene], ids: List[int]):
        self._scenes, self._ids = scenes, ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self):
        return (self._scenes[i] for i in self._ids if i in self._scenes)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):  # connection resets are expected
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stash-emulator"
    sys_version = ""
    # Go's net/http sets TCP_NODELAY; without it, headers and body go out as two
    # small writes and the client's delayed ACK stalls each response ~40 ms.
    disable_nagle_algorithm = True
    emulator: StashEmulator

    def setup(self):
        super().setup()
        self.emulator._connections.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.emulator._connections.discard(self.connection)

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    # --

    def _send(self, status: int, content_type: str, body: bytes, headers: Dict[str, str] = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Dict[str, Any]):
        self._send(status, "application/json", json.dumps(payload).encode("utf-8"))

    def _base_url(self) -> str:
        emu = self.emulator
        prefix = self.headers.get("X-Forwarded-Prefix", "")
        if emu.external_host:
            return emu.external_host.rstrip("/") + prefix
        scheme = "https" if self.headers.get("X-Forwarded-Proto") == "https" else "http"
        host = self.headers.get("Host") or f"{emu.host}:{emu.port}"
        return f"{scheme}://{host}{prefix}"

    def _handle(self, method: str):
        emu = self.emulator
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            with emu._lock:
                emu.requests.append((method, self.path, dict(self.headers.items())))
            payload = None
            if method == "POST" and path == "/graphql":
                try:
                    payload = json.loads(body.decode("utf-8") or "null")
                except (UnicodeDecodeError, ValueError) as exc:
                    payload = exc
                if isinstance(payload, dict):
                    with emu._lock:
                        emu.documents.append({"query": payload.get("query"),
                                              "variables": payload.get("variables"),
                                              "operationName": payload.get("operationName")})
            if emu.latency:
                time.sleep(emu.latency)

            status = emu._take_fault(path)
            if status is not None:
                reason = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else ""
                self._send(status, "text/plain; charset=utf-8", f"{status} {reason}\n".encode())
                return

            who = emu._identify(self.headers, query)
            if who == "bad_key":
                self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n",
                           {"WWW-Authenticate": "FormBased"})
                return
            if who == "anonymous" and emu.require_auth and path != "/login":
                ext = Path(path).suffix
                if path == "/graphql" or (ext and ext != ".html"):
                    self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n",
                               {"WWW-Authenticate": "FormBased"})
                else:
                    prefix = self.headers.get("X-Forwarded-Prefix", "")
                    target = f"{prefix}/login?returnURL={quote_plus(prefix + self.path, safe='')}"
                    self._send(302, "text/html; charset=utf-8",
                               f'<a href="{target}">Found</a>.\n'.encode(), {"Location": target})
                return

            if path == "/graphql" and method == "POST":
                if not isinstance(payload, dict):
                    self._send_json(400, {"errors": [{"message": "json request body could not be decoded"}],
                                          "data": None})
                    return
                status, result = emu._execute(payload, self._base_url())
                self._send_json(status, result)
                return
            match = re.fullmatch(r"/scene/([^/]+)/screenshot", path)
            if match and method in ("GET", "HEAD"):
                status, ctype, data = emu._screenshot(match.group(1))
                self._send(status, ctype, data)
                return
            match = re.fullmatch(r"/(studio|performer)/([^/]+)/image|/(group)/([^/]+)/frontimage", path)
            if match and method in ("GET", "HEAD"):  # see _StudiosGroupsMixin
                kind, ident = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
                self._send(*emu._entity_image(kind, ident))
                return
            if path in ("/login", "/") and method in ("GET", "HEAD"):
                self._send(200, "text/html; charset=utf-8", LOGIN_PAGE)
                return
            self._send(404, "text/plain; charset=utf-8", b"404 page not found\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        except OSError:
            self.close_connection = True


# ---------------------------------------------------------------------------
# schemas and document validation

@lru_cache(maxsize=1)
def _load_schema():
    return build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def _real_schema(schema_dir: str):
    root = Path(schema_dir)
    files = [root / "schema.graphql"] + sorted((root / "types").glob("*.graphql"))
    missing = [str(f) for f in files[:1] if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"Stash schema not found: {missing[0]}")
    return build_schema("\n".join(f.read_text(encoding="utf-8") for f in files))


def validate_documents(documents: Iterable[Dict[str, Any]], schema_dir: Any = None) -> List[str]:
    """Validate recorded GraphQL documents (query text + variables) against Stash's
    REAL schema in ``schema_dir`` (schema.graphql + types/*.graphql). Returns one
    string per problem; an empty list means every document would pass Stash."""
    schema = _real_schema(str(Path(schema_dir) if schema_dir is not None else DEFAULT_SCHEMA_DIR))
    problems: List[str] = []
    for index, doc in enumerate(documents):
        if isinstance(doc, str):
            doc = {"query": doc}
        name = doc.get("operationName")
        query = doc.get("query")
        label = f"document #{index}"
        if not isinstance(query, str):
            problems.append(f"{label}: no query text")
            continue
        try:
            ast = parse(query)
        except GraphQLError as exc:
            problems.append(f"{label}: {exc.message}")
            continue
        operations = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
        if operations and operations[0].name:
            label += f" ({operations[0].name.value})"
        errors = validate(schema, ast)
        if errors:
            problems.extend(f"{label}: {e.message}" for e in errors)
            continue
        if name:
            chosen = [op for op in operations if op.name and op.name.value == name]
        else:
            chosen = operations if len(operations) == 1 else []
        if len(chosen) != 1:
            problems.append(f"{label}: cannot select the operation to run (operationName={name!r})")
            continue
        coerced = get_variable_values(schema, chosen[0].variable_definitions or [], doc.get("variables") or {})
        if isinstance(coerced, list):
            problems.extend(f"{label}: {e.message}" for e in coerced)
    return problems
