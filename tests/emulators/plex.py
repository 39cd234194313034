"""Stateful stand-in for Plex Media Server, driven by the real ``plexapi`` client.

The emulator is an HTTP/1.1 keep-alive server (``ThreadingHTTPServer``) on
127.0.0.1 that answers the subset of the PMS API that PlexSync uses, with the
same XML shapes, paging, ``<Meta>`` block, edit/tag/lock/upload semantics and
error bodies a real PMS produces (see ``shared/reference/plex-api.md``).

Behaviour worth knowing when writing tests against it:

* Listings (``/library/sections/{id}/all``, ``/library/all``, hub search,
  recently added) carry *partial* items: ``Media``/``Part@file`` are present,
  tags are truncated like PMS (2 Genre, 2 Writer, 1 Director, 2 Country,
  3 Role; only the ``tag`` attribute), no ``Field``/``Collection``/``Label``.
  ``/library/metadata/{ids}`` returns full items.
* Indexed tag edits (``genre[0].tag.tag=``) replace the whole set;
  ``genre[].tag.tag-=`` removes (values double-encoded).  Tags are
  de-duplicated and removal matches case-insensitively.
* ``updatedAt`` strictly increases on every edit, upload and refresh.
* ``PUT /library/metadata/{rk}/refresh`` re-runs the "agent": every
  *unlocked* field and tag set is reset to the value the item had when it was
  added (or scanned), so only locked values survive.
* Partial scans (``GET /library/sections/{id}/refresh?path=DIR``) pick up
  staged files whose folder is DIR or below it (passing the file path itself
  finds nothing, like PMS).  With ``scan_delay > 0`` scans complete
  asynchronously and the section reports ``refreshing="1"`` meanwhile.
* A fault that ``hang``s still processes the request after the sleep (the
  edit is applied even though the client already timed out), as PMS does.
"""
from __future__ import annotations

import hashlib
import http.server
import itertools
import random
import re
import socket
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime
from http import HTTPStatus
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = ["PlexEmulator", "RequestRecord"]

XML_CTYPE = "text/xml;charset=utf-8"
PMS_VERSION = "1.41.3.9314-a0bfb8370"
LIBRARY_IDENTIFIER = "com.plexapp.plugins.library"
UNAUTHORIZED_BODY = (
    b"<html><head><title>Unauthorized</title></head>"
    b"<body><h1>401 Unauthorized</h1></body></html>"
)

SEARCH_TYPES = {"movie": 1, "show": 2, "season": 3, "episode": 4, "artist": 8,
                "album": 9, "track": 10, "photoalbum": 14, "photo": 13, "clip": 12,
                "collection": 18}

# edit/filter name -> (XML element, snapshot key, how many a listing shows)
TAG_TYPES = {
    "genre": ("Genre", "genres", 2),
    "actor": ("Role", "actors", 3),
    "director": ("Director", "directors", 1),
    "writer": ("Writer", "writers", 2),
    "producer": ("Producer", "producers", 0),
    "country": ("Country", "countries", 2),
    "collection": ("Collection", "collections", 0),
    "label": ("Label", "labels", 0),
    "mood": ("Mood", "moods", 0),
    "style": ("Style", "styles", 0),
}
PLURAL_TO_TAG = {v[1]: k for k, v in TAG_TYPES.items()}

# editable scalar fields -> kind
SCALAR_FIELDS = {
    "title": "str", "titleSort": "str", "originalTitle": "str", "summary": "str",
    "studio": "str", "tagline": "str", "contentRating": "str", "editionTitle": "str",
    "originallyAvailableAt": "date", "year": "int", "userRating": "float",
    "rating": "float", "audienceRating": "float", "addedAt": "epoch",
}
# fields that can only be locked/unlocked (images) -- tag types are lockable too
LOCK_ONLY_FIELDS = {"thumb", "art", "theme", "logo", "squareArt", "banner"}

# filter field -> type, for server-side filtering (Meta + plexapi's manual fields)
FILTER_FIELDS = {
    "title": "string", "studio": "string", "summary": "string", "tagline": "string",
    "titleSort": "string", "originalTitle": "string", "editionTitle": "string",
    "year": "integer", "decade": "integer", "userRating": "integer", "rating": "integer",
    "audienceRating": "integer", "id": "integer", "duration": "integer",
    "viewOffset": "integer", "index": "integer", "viewCount": "integer",
    "originallyAvailableAt": "date", "addedAt": "date", "updatedAt": "date",
    "lastRatedAt": "date", "lastViewedAt": "date",
    "contentRating": "tag", "genre": "tag", "actor": "tag", "director": "tag",
    "writer": "tag", "producer": "tag", "country": "tag", "collection": "tag",
    "label": "tag", "mood": "tag", "style": "tag",
    "unwatched": "boolean", "inProgress": "boolean", "unmatched": "boolean",
    "guid": "guid",
}
OPERATORS = {
    "string": [("=", "contains"), ("!=", "does not contain"), ("==", "is"),
               ("!==", "is not"), ("<=", "begins with"), (">=", "ends with")],
    "integer": [("=", "is"), ("!=", "is not"), (">>=", "is greater than"),
                ("<<=", "is less than")],
    "date": [("<<=", "is before"), (">>=", "is after")],
    "tag": [("=", "is"), ("!=", "is not")],
    "boolean": [("=", "is true"), ("!=", "is false")],
    "guid": [("=", "is")],
}
# sort key -> (default direction, title)
SORTS = {
    "titleSort": ("asc", "Title"), "originallyAvailableAt": ("desc", "Release Date"),
    "addedAt": ("desc", "Date Added"), "year": ("desc", "Year"),
    "userRating": ("desc", "Rating"), "rating": ("desc", "Critic Rating"),
    "audienceRating": ("desc", "Audience Rating"), "duration": ("desc", "Duration"),
    "lastViewedAt": ("desc", "Last Played"), "viewCount": ("desc", "Plays"),
    "lastRatedAt": ("desc", "Last Rated"), "contentRating": ("asc", "Content Rating"),
    "random": ("asc", "Randomly"),
    # plexapi adds these by hand; PMS accepts them
    "title": ("asc", "Title"), "id": ("asc", "Rating Key"), "updatedAt": ("asc", "Date Updated"),
    "summary": ("asc", "Summary"), "tagline": ("asc", "Tagline"), "guid": ("asc", "Guid"),
    "index": ("asc", "Index"), "studio": ("asc", "Studio"),
}
META_FIELDS = [
    ("title", "Title"), ("studio", "Studio"), ("year", "Year"), ("decade", "Decade"),
    ("originallyAvailableAt", "Release Date"), ("addedAt", "Date Added"),
    ("userRating", "Rating"), ("contentRating", "Content Rating"), ("genre", "Genre"),
    ("collection", "Collection"), ("director", "Director"), ("writer", "Writer"),
    ("producer", "Producer"), ("actor", "Actor"), ("country", "Country"),
    ("label", "Label"), ("unwatched", "Unplayed"), ("inProgress", "In Progress"),
    ("lastViewedAt", "Last Played"), ("duration", "Duration"),
]
META_FILTERS = [
    ("genre", "Genre"), ("year", "Year"), ("decade", "Decade"),
    ("contentRating", "Content Rating"), ("collection", "Collection"),
    ("director", "Director"), ("actor", "Actor"), ("writer", "Writer"),
    ("producer", "Producer"), ("country", "Country"), ("studio", "Studio"),
    ("label", "Label"), ("unwatched", "Unplayed"), ("inProgress", "In Progress"),
]
IGNORED_PARAM_PREFIXES = ("include", "exclude", "X-Plex-", "skip", "check", "async",
                          "checkFiles", "asyncAugmentMetadata", "clusterZoomLevel")
RELATIVE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400,
                  "mon": 30 * 86400, "y": 365 * 86400}


class _HTTPError(Exception):
    def __init__(self, status: int, message: str = ""):
        super().__init__(message or str(status))
        self.status = status


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict            # dict[str, list[str]], decoded once
    headers: dict
    body_len: int
    client_port: int = 0   # lets tests check keep-alive connection reuse


@dataclass
class _Fault:
    status: int | None
    reset: bool
    hang: float | None
    latency: float | None
    times: int | None
    path_prefix: str | None
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        return True


class _Section:
    __slots__ = ("key", "title", "type", "agent", "scanner", "language", "uuid",
                 "locations", "created", "updated", "scanned", "items", "staged",
                 "pending", "order_version", "all_version", "_cache")

    def __init__(self, key, title, type_, agent, scanner, language, locations, now):
        self.key = key
        self.title = title
        self.type = type_
        self.agent = agent
        self.scanner = scanner
        self.language = language
        self.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"plex-emulator/{key}/{title}"))
        self.locations = list(locations)
        self.created = now
        self.updated = now
        self.scanned = now
        self.items: dict[int, _Item] = {}
        self.staged: dict[str, str] = {}
        self.pending = 0
        self.order_version = 0   # bumps when title order may change
        self.all_version = 0     # bumps on any item change
        self._cache: dict = {}


class _Item:
    __slots__ = ("rk", "section", "type", "vals", "tags", "roles", "locked", "files",
                 "added", "updated", "images", "baseline", "tlower", "sortkey")

    def __init__(self, rk, section, type_, files, added, updated):
        self.rk = rk
        self.section = section
        self.type = type_
        self.vals: dict = {}
        self.tags: dict[str, list[str]] = {}
        self.roles: dict | None = None        # actor name -> (role, thumb)
        self.locked: set | None = None
        self.files = files
        self.added = added
        self.updated = updated
        self.images: dict | None = None       # kind -> [entries, selected index]
        self.baseline = None                  # agent values, captured on first change
        self.tlower = ""
        self.sortkey = ""

    def title_changed(self):
        title = self.vals.get("title") or ""
        self.tlower = title.lower()
        self.sortkey = (self.vals.get("titleSort") or title).lower()


def _stem(path: str) -> str:
    name = re.split(r"[\\/]", path.rstrip("/\\"))[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _norm_dir(path: str) -> str:
    return path.replace("\\", "/").rstrip("/")


def _dirname(path: str) -> str:
    p = path.replace("\\", "/")
    return p.rsplit("/", 1)[0] if "/" in p else ""


def _date_epoch(value: str) -> int:
    return int(time.mktime(datetime.strptime(value, "%Y-%m-%d").timetuple()))


def _fmt_num(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if v == int(v) else repr(v)
    return str(v)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PlexMediaServer/" + PMS_VERSION
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls

    def log_message(self, format, *args):  # noqa: A002 - silence stderr
        pass

    def do_GET(self):
        self.server.emulator._handle(self, "GET")

    def do_PUT(self):
        self.server.emulator._handle(self, "PUT")

    def do_POST(self):
        self.server.emulator._handle(self, "POST")

    def do_DELETE(self):
        self.server.emulator._handle(self, "DELETE")

    def do_HEAD(self):
        self.server.emulator._handle(self, "HEAD")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    block_on_close = False

    def handle_error(self, request, client_address):  # keep test output clean
        pass


# ---------------------------------------------------------------------------
# Collections (issue 13): collections as PMS serves them.
#
# Evidence for the behaviour below:
# * An item edit that names a collection the section does not have makes PMS
#   create it: plexapi's own tests add a collection with ``addCollection``
#   (``collection[0].tag.tag=...&collection.locked=1``) and then count one more
#   item in the section (python-plexapi tests/test_library.py,
#   test_library_section_totalViewSize); mixins/edit.py builds those params.
# * PMS never deletes a collection that becomes empty: users of tools that
#   tag items into collections end up with empty ones to delete by hand
#   (ShaneIsrael/plex-auto-genres#34, Kometa-Team/Kometa#2795); deleting is
#   ``DELETE /library/collections/{ratingKey}`` (plexapi base.py delete() on
#   Collection.key) and removes the tag from its items.
# * Collections are listed by ``/library/sections/{id}/collections`` and by
#   ``/library/sections/{id}/all?type=18`` (plexapi library.py collections()),
#   as ``<Directory type="collection" key="/library/collections/{rk}/children">``
#   (plexapi collection.py strips ``/children``); ``/library/collections/{rk}``
#   is the collection, ``.../children`` its items.
# * A collection's poster is uploaded like an item's,
#   ``POST /library/metadata/{rk}/posters`` (plexapi mixins/resources.py
#   uploadPoster uses the ratingKey); its summary is edited like an item's,
#   ``PUT /library/sections/{id}/all?type=18&id={rk}&summary.value=..``
#   (plexapi base.py _edit, collection type 18).

class _Collection:
    __slots__ = ("rk", "section", "title", "summary", "locked", "added", "updated", "posters")

    def __init__(self, rk, section, title, now):
        self.rk = rk
        self.section = section
        self.title = title
        self.summary = None
        self.locked: set = set()
        self.added = self.updated = now
        self.posters: list = []        # upload:// keys; the last one is selected


class _CollectionsMixin:
    """PlexEmulator's collections; state lives in ``self._colls`` (rk -> _Collection)."""

    _COLLECTION_ROUTES = [
        ("GET", re.compile(r"^/library/sections/(\d+)/collections$"), "_get_collections"),
        ("GET", re.compile(r"^/library/collections/(\d+)$"), "_get_collection"),
        ("GET", re.compile(r"^/library/collections/(\d+)/children$"), "_get_collection_children"),
        ("DELETE", re.compile(r"^/library/collections/(\d+)$"), "_delete_collection"),
        ("POST", re.compile(r"^/library/metadata/(\d+)/(posters|arts)$"), "_post_collection_images"),
        ("GET", re.compile(r"^/library/metadata/(\d+)/posters$"), "_get_collection_posters"),
    ]

    # -- test API ---------------------------------------------------------------
    def add_collection(self, section: int, title: str, summary: str | None = None) -> int:
        """A collection made in Plex by the user (empty until items are tagged)."""
        with self._lock:
            coll = self._ensure_collection(self._section(section), title)
            coll.summary = summary
            return coll.rk

    def collections(self, section: int) -> list:
        """Snapshots of the section's collections, by title."""
        with self._lock:
            sec = self._section(section)
            return [self._coll_snapshot(c) for c in sorted(self._coll_state().values(), key=lambda c: c.title.lower())
                    if c.section is sec]

    def collection(self, section: int, title: str) -> dict | None:
        return next((c for c in self.collections(section) if c["title"].lower() == title.lower()), None)

    # -- state ------------------------------------------------------------------
    def _coll_state(self) -> dict:
        return self.__dict__.setdefault("_colls", {})

    def _coll_by_title(self, sec, title: str):
        return next((c for c in self._coll_state().values() if c.section is sec and c.title.lower() == title.lower()),
                    None)

    def _ensure_collection(self, sec, title: str):
        coll = self._coll_by_title(sec, title)
        if coll is None:
            rk = next(self._rk_counter)
            coll = self._coll_state()[rk] = _Collection(rk, sec, title, int(time.time()))
        return coll

    def _collections_from_items(self, sec, items) -> None:
        """PMS creates a collection for each new name an item is tagged with."""
        for it in items:
            for name in it.tags.get("collection", ()):
                self._ensure_collection(sec, name)

    def _coll_members(self, coll) -> list:
        low = coll.title.lower()
        return [it for it in self._sorted(coll.section.items.values(), None, coll.section)
                if any(n.lower() == low for n in it.tags.get("collection", ()))]

    def _coll_snapshot(self, coll) -> dict:
        return {"ratingKey": coll.rk, "title": coll.title, "summary": coll.summary,
                "childCount": len(self._coll_members(coll)), "locked": set(coll.locked),
                "posters": list(coll.posters), "items": [it.rk for it in self._coll_members(coll)]}

    def _coll_or_404(self, rk):
        coll = self._coll_state().get(int(rk))
        if coll is None:
            raise _HTTPError(404)
        return coll

    # -- XML --------------------------------------------------------------------
    def _coll_elem(self, parent, coll):
        sec = coll.section
        a = {"ratingKey": str(coll.rk), "key": f"/library/collections/{coll.rk}/children",
             "guid": f"collection://{hashlib.sha1(str(coll.rk).encode()).hexdigest()}",
             "type": "collection", "title": coll.title, "subtype": "movie", "index": str(coll.rk),
             "librarySectionID": str(sec.key), "librarySectionTitle": sec.title,
             "librarySectionKey": f"/library/sections/{sec.key}", "contentRating": "",
             "content": f"/library/sections/{sec.key}/all?collection={self._tag_id('collection', coll.title)}",
             "childCount": str(len(self._coll_members(coll))), "smart": "0",
             "addedAt": str(coll.added), "updatedAt": str(coll.updated),
             "thumb": f"/library/collections/{coll.rk}/composite/{coll.updated}"}
        if coll.summary:
            a["summary"] = coll.summary
        if coll.posters:
            a["thumb"] = f"/library/metadata/{coll.rk}/thumb/{coll.updated}"
        el = ET.SubElement(parent, "Directory", a)
        for name in sorted(coll.locked):
            ET.SubElement(el, "Field", locked="1", name=name)
        return el

    def _coll_listing(self, sec, query, headers):
        colls = sorted((c for c in self._coll_state().values() if c.section is sec), key=lambda c: c.title.lower())
        root = ET.Element("MediaContainer", allowSync="0", identifier=LIBRARY_IDENTIFIER,
                          librarySectionID=str(sec.key), librarySectionTitle=sec.title,
                          librarySectionUUID=sec.uuid, title1=sec.title, title2="Collections",
                          viewGroup="collection")
        if query.get("includeMeta", ["0"])[0] == "1":
            self._meta_elem(root, sec, collections=True)
        title = (query.get("title") or [None])[0]
        if title is not None:
            colls = [c for c in colls if title.lower() in c.title.lower()]
        start, size = self._page_params(query, headers)
        end = len(colls) if size is None else min(len(colls), start + size)
        page = colls[start:end] if start < end else []
        root.set("size", str(len(page)))
        root.set("totalSize", str(len(colls)))
        root.set("offset", str(start))
        for coll in page:
            self._coll_elem(root, coll)
        return 200, self._xml(root)

    # -- routes -----------------------------------------------------------------
    def _get_collections(self, sid, query, headers=None, **kw):
        sec = self._sections.get(int(sid))
        if sec is None:
            raise _HTTPError(404)
        return self._coll_listing(sec, query, headers)

    def _get_collection(self, rk, **kw):
        coll = self._coll_or_404(rk)
        root = ET.Element("MediaContainer", size="1", allowSync="1", identifier=LIBRARY_IDENTIFIER,
                          librarySectionID=str(coll.section.key), librarySectionTitle=coll.section.title,
                          librarySectionUUID=coll.section.uuid)
        self._coll_elem(root, coll)
        return 200, self._xml(root)

    def _get_collection_children(self, rk, query, headers=None, **kw):
        coll = self._coll_or_404(rk)
        root = ET.Element("MediaContainer", allowSync="1", identifier=LIBRARY_IDENTIFIER,
                          librarySectionID=str(coll.section.key), librarySectionTitle=coll.section.title,
                          librarySectionUUID=coll.section.uuid, title1=coll.section.title, title2=coll.title)
        self._listing(root, self._coll_members(coll), query, headers)
        return 200, self._xml(root)

    def _delete_collection(self, rk, **kw):
        coll = self._coll_or_404(rk)
        for it in self._coll_members(coll):
            it.tags["collection"] = [n for n in it.tags["collection"] if n.lower() != coll.title.lower()]
            it.tags = {k: v for k, v in it.tags.items() if v}
            self._touch(it)
        del self._coll_state()[coll.rk]
        return 200, None

    def _post_collection_images(self, rk, kind, query, body, **kw):
        coll = self._coll_state().get(int(rk))
        if coll is None:
            return self._post_images(rk, kind, query=query, body=body, **kw)
        if not body or kind != "posters":
            raise _HTTPError(400)
        coll.posters.append(f"upload://posters/{hashlib.sha1(body).hexdigest()}")
        coll.locked.add("thumb")
        coll.updated = max(int(time.time()), coll.updated + 1)
        return 200, None

    def _get_collection_posters(self, rk, **kw):
        coll = self._coll_state().get(int(rk))
        if coll is None:
            return self._get_images(rk, "posters", **kw)
        root = ET.Element("MediaContainer", size=str(len(coll.posters)), identifier=LIBRARY_IDENTIFIER)
        for i, key in enumerate(coll.posters):
            url = f"/library/metadata/{coll.rk}/file?url={quote(key, safe='')}"
            ET.SubElement(root, "Photo", key=url, ratingKey=key, thumb=url,
                          selected="1" if i == len(coll.posters) - 1 else "0")
        return 200, self._xml(root)

    def _put_collection_edit(self, sec, qsl):
        """``PUT /library/sections/{id}/all?type=18&id=..``: title/summary of collections."""
        params = {k: v for k, v in qsl if not k.startswith("X-Plex-") and k != "type"}
        ids = params.pop("id", "")
        colls = [self._coll_or_404(x) for x in ids.split(",") if x.strip().isdigit()]
        if not colls or any(c.section is not sec for c in colls):
            raise _HTTPError(400 if not colls else 404)
        for k, raw in params.items():
            m = re.fullmatch(r"(title|titleSort|summary|contentRating|thumb)\.(value|locked)", k)
            if not m:
                raise _HTTPError(400)
        for coll in colls:
            for k, raw in params.items():
                field, what = k.split(".")
                if what == "locked":
                    (coll.locked.add if raw == "1" else coll.locked.discard)(field)
                elif field == "summary":
                    coll.summary = raw or None
                elif field == "title" and raw:
                    coll.title = raw
            coll.updated = max(int(time.time()), coll.updated + 1)
        return 200, None


class PlexEmulator(_CollectionsMixin):
    """A fake PMS with a stateful library.  See module docstring."""

    def __init__(self, token: str = "plex-test-token-0123456789", latency: float = 0.0):
        self.token = token
        self.latency = float(latency)
        self.scan_delay = 0.0
        self.requests: list[RequestRecord] = []
        self.scans: list[str] = []
        self.full_scans = 0
        self.refreshes: list[int] = []
        self.connections = 0
        self.machine_identifier = hashlib.sha1(uuid.uuid4().bytes).hexdigest()
        self.friendly_name = "plexsync-emulator"
        self.url = ""
        self._lock = threading.RLock()
        self._log_lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._stop = threading.Event()
        self._sections: dict[int, _Section] = {}
        self._items: dict[int, _Item] = {}
        self._by_file: dict[str, int] = {}
        self._tag_ids: dict[tuple[str, str], int] = {}
        self._tag_counter = itertools.count(100)
        self._section_counter = itertools.count(1)
        self._rk_counter = itertools.count(1000)
        self._location_counter = itertools.count(1)
        self._timers: list[threading.Timer] = []
        self._started = int(time.time())
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "PlexEmulator":
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.emulator = self
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="plex-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._timers:
            t.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "PlexEmulator":
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ setup API
    def add_section(self, title: str, type: str = "movie", locations=("/data/stash",), *,
                    agent: str | None = None, scanner: str | None = None,
                    language: str = "xn") -> int:
        agent = agent or {"movie": "tv.plex.agents.none", "show": "tv.plex.agents.series",
                          "artist": "tv.plex.agents.music", "photo": "com.plexapp.agents.none"
                          }.get(type, "tv.plex.agents.none")
        scanner = scanner or {"movie": "Plex Video Files Scanner", "show": "Plex TV Series",
                              "artist": "Plex Music", "photo": "Plex Photo Scanner"
                              }.get(type, "Plex Video Files Scanner")
        if isinstance(locations, str):
            locations = [locations]
        with self._lock:
            key = next(self._section_counter)
            self._sections[key] = _Section(key, title, type, agent, scanner, language,
                                           [(next(self._location_counter), p) for p in locations],
                                           int(time.time()))
            return key

    def add_item(self, section: int, title: str, files, **attrs) -> int:
        with self._lock:
            sec = self._section(section)
            return self._create_item(sec, title, files, attrs).rk

    def stage_file(self, section: int, path: str, title: str | None = None) -> None:
        with self._lock:
            sec = self._section(section)
            if path in self._by_file:
                raise ValueError(f"{path} is already an item")
            sec.staged[path] = title if title is not None else _stem(path)

    def item(self, rating_key: int) -> dict:
        with self._lock:
            it = self._items.get(int(rating_key))
            if it is None:
                raise KeyError(rating_key)
            v = it.vals
            snap = {
                "ratingKey": it.rk, "type": it.type, "section": it.section.key,
                "title": v.get("title"), "titleSort": v.get("titleSort"),
                "originalTitle": v.get("originalTitle"), "summary": v.get("summary"),
                "studio": v.get("studio"), "tagline": v.get("tagline"),
                "contentRating": v.get("contentRating"),
                "originallyAvailableAt": v.get("originallyAvailableAt"),
                "year": v.get("year"), "userRating": v.get("userRating"),
                "rating": v.get("rating"), "lastRatedAt": v.get("lastRatedAt"),
                "addedAt": it.added, "updatedAt": it.updated,
                "locked": set(it.locked or ()), "files": list(it.files),
                "roles": dict(it.roles or {}),
            }
            for tag, (_, plural, _) in TAG_TYPES.items():
                snap[plural] = list(it.tags.get(tag, ()))
            for kind in ("posters", "arts"):
                entries, sel = self._images(it, kind)
                snap[kind] = [{"ratingKey": rk_, "provider": prov, "selected": i == sel}
                              for i, (rk_, prov) in enumerate(entries)]
            return snap

    def find_by_file(self, path: str) -> int | None:
        with self._lock:
            return self._by_file.get(path)

    def delete_item(self, rating_key: int):
        with self._lock:
            it = self._items.pop(int(rating_key))
            it.section.items.pop(it.rk, None)
            for f in it.files:
                self._by_file.pop(f, None)
            it.section.order_version += 1
            it.section.all_version += 1

    # -- matcher: renames and library folders (plex/matcher.py) -----------------
    def move_file(self, old: str, new: str) -> int:
        """A file renamed or moved on disk, then scanned: PMS keeps the item.

        The scanner logs "Part rename detected [old] was renamed [new]" and the
        item keeps its ratingKey and metadata, only ``Part@file`` changes
        (Plex Media Scanner.log quoted in ZeroQI/Absolute-Series-Scanner#441).
        Whether PMS raises the item's ``updatedAt`` then is not documented, so
        the emulator leaves it alone: PlexSync must not depend on it.
        """
        with self._lock:
            rk = self._by_file.pop(old)
            it = self._items[rk]
            it.files = [new if f == old else f for f in it.files]
            self._by_file[new] = rk
            it.section.all_version += 1
            return rk

    def add_location(self, section: int, path: str) -> None:
        """The user adds a folder to a library (Manage Library -> Edit -> Add folders)."""
        with self._lock:
            sec = self._section(section)
            sec.locations.append((next(self._location_counter), path))
            sec.updated = max(int(time.time()), sec.updated + 1)
    # -- end matcher ----------------------------------------------------------

    def clear_requests(self):
        with self._log_lock:
            self.requests.clear()

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        with self._log_lock:
            recs = list(self.requests)
        return sum(1 for r in recs
                   if (method is None or r.method == method.upper())
                   and (path_prefix is None or r.path.startswith(path_prefix)))

    def fault(self, *, status: int | None = None, reset: bool = False, hang: float | None = None,
              latency: float | None = None, times: int | None = None,
              path_prefix: str | None = None, method: str | None = None) -> None:
        if status is None and not reset and hang is None and latency is None:
            raise ValueError("fault() needs status, reset, hang or latency")
        with self._lock:
            self._faults.append(_Fault(status, reset, hang, latency, times, path_prefix, method))

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ internals: state
    def _section(self, key) -> _Section:
        sec = self._sections.get(int(key))
        if sec is None:
            raise KeyError(f"no section {key}")
        return sec

    def _tag_id(self, tag: str, name: str) -> int:
        k = (tag, name.lower())
        tid = self._tag_ids.get(k)
        if tid is None:
            tid = self._tag_ids[k] = next(self._tag_counter)
        return tid

    def _create_item(self, sec: _Section, title: str, files, attrs: dict) -> _Item:
        if isinstance(files, str):
            files = [files]
        files = list(files)
        for f in files:
            if f in self._by_file:
                raise ValueError(f"file {f} already belongs to item {self._by_file[f]}")
        attrs = dict(attrs)
        now = int(time.time())
        added = int(attrs.pop("addedAt", now))
        updated = int(attrs.pop("updatedAt", added))
        type_ = attrs.pop("type", "clip" if sec.type == "photo" else "movie")
        rk = next(self._rk_counter)
        it = _Item(rk, sec, type_, files, added, updated)
        it.vals["title"] = title
        locked = attrs.pop("locked", None)
        roles = attrs.pop("roles", None)
        for k, val in attrs.items():
            if k in PLURAL_TO_TAG:
                it.tags[PLURAL_TO_TAG[k]] = self._dedupe([str(x) for x in val])
            elif k in SCALAR_FIELDS or k in ("duration", "lastRatedAt"):
                if isinstance(val, (date, datetime)):
                    val = val.strftime("%Y-%m-%d")
                if k == "userRating" or k == "rating" or k == "audienceRating":
                    val = float(val)
                it.vals[k] = val
            else:
                raise TypeError(f"unknown item attribute {k!r}")
        it.tags = {k: v for k, v in it.tags.items() if v}
        if "year" not in it.vals and it.vals.get("originallyAvailableAt"):
            it.vals["year"] = int(str(it.vals["originallyAvailableAt"])[:4])
        if locked:
            it.locked = set(locked)
        if roles:
            it.roles = dict(roles)
        it.title_changed()
        sec.items[rk] = it
        self._items[rk] = it
        for f in files:
            self._by_file[f] = rk
        sec.order_version += 1
        sec.all_version += 1
        self._collections_from_items(sec, [it])  # see _CollectionsMixin
        return it

    @staticmethod
    def _dedupe(names):
        seen, out = set(), []
        for n in names:
            low = n.lower()
            if low not in seen:
                seen.add(low)
                out.append(n)
        return out

    def _images(self, it: _Item, kind: str):
        if it.images is None:
            it.images = {}
        if kind not in it.images:
            h = hashlib.sha1(f"{it.rk}/{kind}".encode()).hexdigest()
            name = "thumb1.jpg" if kind == "posters" else "art1.jpg"
            folder = "Thumbnails" if kind == "posters" else "Art"
            it.images[kind] = [[(f"media://{h[0]}/{h[1:]}.bundle/Contents/{folder}/{name}", None)], 0]
        return it.images[kind]

    def _touch(self, it: _Item):
        it.updated = max(int(time.time()), it.updated + 1)
        it.section.all_version += 1

    def _capture_baseline(self, it: _Item):
        if it.baseline is None:
            it.baseline = (dict(it.vals), {k: list(v) for k, v in it.tags.items()})

    # ------------------------------------------------------------------ internals: HTTP
    def _handle(self, h: _Handler, method: str):
        try:
            self._handle_inner(h, method)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True
        except Exception:  # pragma: no cover - last resort, never kill the server
            h.close_connection = True

    def _read_body(self, h: _Handler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = h.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            return b"".join(chunks)
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    def _handle_inner(self, h: _Handler, method: str):
        if getattr(h, "_emu_conn_seen", False) is False:
            h._emu_conn_seen = True
            with self._log_lock:
                self.connections += 1
        split = urlsplit(h.path)
        path = unquote(split.path)
        if len(path) > 1:
            path = path.rstrip("/")
        qsl = parse_qsl(split.query, keep_blank_values=True)
        query: dict[str, list[str]] = {}
        for k, v in qsl:
            query.setdefault(k, []).append(v)
        body = self._read_body(h)
        rec = RequestRecord(method, path, query, dict(h.headers.items()), len(body),
                            h.client_address[1] if h.client_address else 0)
        with self._log_lock:
            self.requests.append(rec)

        fault = None
        with self._lock:
            for f in self._faults:
                if f.matches(method, path):
                    fault = f
                    if f.times is not None:
                        f.times -= 1
                    break
            self._faults = [f for f in self._faults if f.times is None or f.times > 0]

        delay = self.latency + (fault.latency or 0 if fault else 0)
        if delay > 0:
            self._stop.wait(delay)
        if fault is not None:
            if fault.hang:
                self._stop.wait(fault.hang)
            if fault.reset:
                self._reset(h)
                return
            if fault.status is not None:
                self._send_error(h, fault.status)
                return

        if self.token:
            given = h.headers.get("X-Plex-Token") or (query.get("X-Plex-Token") or [None])[0]
            if given != self.token:
                self._send(h, 401, UNAUTHORIZED_BODY, "text/html")
                return

        try:
            with self._lock:
                status, payload = self._route(method, path, query, qsl, body, h.headers)
        except _HTTPError as e:
            self._send_error(h, e.status)
            return
        except Exception:
            self._send_error(h, 500)
            return
        if payload is None:
            self._send(h, status, b"", None)
        else:
            self._send(h, status, payload, XML_CTYPE)

    def _reset(self, h: _Handler):
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, h: _Handler, status: int, body: bytes, ctype: str | None, head_only=False):
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        h.send_response(status, phrase)
        if ctype:
            h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("X-Plex-Protocol", "1.0")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close" if h.close_connection else "Keep-Alive")
        h.end_headers()
        if body and h.command != "HEAD":
            h.wfile.write(body)
        h.wfile.flush()

    def _send_error(self, h: _Handler, status: int):
        if status == 401:
            self._send(h, 401, UNAUTHORIZED_BODY, "text/html")
        elif status == 503:
            root = ET.Element("Response", code="503", title="Maintenance",
                              status="Plex Media Server is currently running startup maintenance tasks.")
            self._send(h, 503, ET.tostring(root, encoding="utf-8", xml_declaration=True), XML_CTYPE)
        else:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Unknown"
            body = (f"<html><head><title>{phrase}</title></head><body><h1>{status} {phrase}"
                    f"</h1></body></html>").encode()
            self._send(h, status, body, "text/html")

    # ------------------------------------------------------------------ routing
    _ROUTES = [
        ("GET", re.compile(r"^/$"), "_get_root"),
        ("GET", re.compile(r"^/identity$"), "_get_identity"),
        ("GET", re.compile(r"^/library$"), "_get_library"),
        ("GET", re.compile(r"^/library/sections$"), "_get_sections"),
        ("GET", re.compile(r"^/library/sections/(\d+)$"), "_get_section"),
        ("GET", re.compile(r"^/library/sections/(\d+)/all$"), "_get_section_all"),
        ("PUT", re.compile(r"^/library/sections/(\d+)/all$"), "_put_section_all"),
        ("GET", re.compile(r"^/library/sections/(\d+)/refresh$"), "_get_refresh"),
        ("DELETE", re.compile(r"^/library/sections/(\d+)/refresh$"), "_ok"),
        ("PUT", re.compile(r"^/library/sections/(\d+)/analyze$"), "_ok"),
        ("PUT", re.compile(r"^/library/sections/(\d+)/emptyTrash$"), "_ok"),
        ("GET", re.compile(r"^/library/sections/(\d+)/(\w+)$"), "_get_filter_choices"),
        ("GET", re.compile(r"^/library/metadata/([\d,]+)$"), "_get_metadata"),
        ("DELETE", re.compile(r"^/library/metadata/(\d+)$"), "_delete_metadata"),
        ("PUT", re.compile(r"^/library/metadata/(\d+)/refresh$"), "_put_item_refresh"),
        ("PUT", re.compile(r"^/library/metadata/(\d+)/analyze$"), "_put_item_analyze"),
        ("GET", re.compile(r"^/library/metadata/(\d+)/(posters|arts)$"), "_get_images"),
        ("POST", re.compile(r"^/library/metadata/(\d+)/(posters|arts)$"), "_post_images"),
        ("PUT", re.compile(r"^/library/metadata/(\d+)/(poster|art)$"), "_put_image_select"),
        ("DELETE", re.compile(r"^/library/metadata/(\d+)/(thumb|art)$"), "_delete_image"),
        ("GET", re.compile(r"^/library/all$"), "_get_library_all"),
        ("GET", re.compile(r"^/library/recentlyAdded$"), "_get_recently_added"),
        ("GET", re.compile(r"^/hubs/search$"), "_get_hub_search"),
        ("GET", re.compile(r"^/activities$"), "_get_activities"),
        ("PUT", re.compile(r"^/:/rate$"), "_put_rate"),
    ]

    def _route(self, method, path, query, qsl, body, headers):
        lookup_method = "GET" if method == "HEAD" else method
        for m, rx, name in self._COLLECTION_ROUTES + self._ROUTES:
            if m != lookup_method:
                continue
            match = rx.match(path)
            if match:
                return getattr(self, name)(*match.groups(), query=query, qsl=qsl, body=body,
                                           headers=headers)
        raise _HTTPError(404)

    @staticmethod
    def _xml(root: ET.Element) -> bytes:
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)

    def _ok(self, *args, **kw):
        return 200, None

    # ------------------------------------------------------------------ simple GETs
    def _get_root(self, **kw):
        root = ET.Element("MediaContainer", {
            "size": "3", "allowCameraUpload": "1", "allowChannelAccess": "1",
            "allowMediaDeletion": "1", "allowSharing": "1", "allowSync": "1",
            "backgroundProcessing": "1", "certificate": "1", "companionProxy": "1",
            "eventStream": "1", "friendlyName": self.friendly_name, "hubSearch": "1",
            "machineIdentifier": self.machine_identifier, "multiuser": "1", "myPlex": "1",
            "myPlexMappingState": "mapped", "myPlexSigninState": "ok",
            "myPlexSubscription": "1", "myPlexUsername": "plexsync@example.invalid",
            "platform": "Linux", "platformVersion": "6.1.0", "pluginHost": "1",
            "readOnlyLibraries": "0", "requestParametersInCookie": "1",
            "streamingBrainVersion": "2", "sync": "1", "transcoderActiveVideoSessions": "0",
            "transcoderAudio": "1", "transcoderLyrics": "1", "transcoderPhoto": "1",
            "transcoderSubtitles": "1", "transcoderVideo": "1",
            "updatedAt": str(self._started), "updater": "1", "version": PMS_VERSION,
            "voiceSearch": "1"})
        for key in ("activities", "library", "hubs"):
            ET.SubElement(root, "Directory", count="1", key=key, title=key)
        return 200, self._xml(root)

    def _get_identity(self, **kw):
        root = ET.Element("MediaContainer", size="0", claimed="1",
                          machineIdentifier=self.machine_identifier, version=PMS_VERSION)
        return 200, self._xml(root)

    def _get_library(self, **kw):
        root = ET.Element("MediaContainer", size="3", allowSync="0", art="/:/resources/library-art.jpg",
                          content="1", identifier=LIBRARY_IDENTIFIER,
                          mediaTagPrefix="/system/bundle/media/flags/",
                          mediaTagVersion=str(self._started), title1="Plex Library", title2="")
        ET.SubElement(root, "Directory", key="sections", title="Library Sections")
        ET.SubElement(root, "Directory", key="recentlyAdded", title="Recently Added Content")
        ET.SubElement(root, "Directory", key="onDeck", title="On Deck Content")
        return 200, self._xml(root)

    def _section_elem(self, parent, sec: _Section):
        el = ET.SubElement(parent, "Directory", {
            "allowSync": "1", "art": "/:/resources/movie-fanart.jpg",
            "composite": f"/library/sections/{sec.key}/composite/{sec.updated}",
            "filters": "1", "refreshing": "1" if sec.pending else "0",
            "thumb": "/:/resources/video.png", "key": str(sec.key), "type": sec.type,
            "title": sec.title, "agent": sec.agent, "scanner": sec.scanner,
            "language": sec.language, "uuid": sec.uuid, "updatedAt": str(sec.updated),
            "createdAt": str(sec.created), "scannedAt": str(sec.scanned), "content": "1",
            "directory": "1", "contentChangedAt": str(sec.all_version), "hidden": "0"})
        for lid, p in sec.locations:
            ET.SubElement(el, "Location", id=str(lid), path=p)
        return el

    def _get_sections(self, **kw):
        root = ET.Element("MediaContainer", size=str(len(self._sections)), allowSync="0",
                          identifier=LIBRARY_IDENTIFIER, title1="Plex Library")
        for sec in self._sections.values():
            self._section_elem(root, sec)
        return 200, self._xml(root)

    def _get_section(self, sid, **kw):
        sec = self._sections.get(int(sid))
        if sec is None:
            raise _HTTPError(404)
        root = ET.Element("MediaContainer", size="0", allowSync="0", content="secondary",
                          identifier=LIBRARY_IDENTIFIER, librarySectionID=str(sec.key),
                          librarySectionTitle=sec.title, librarySectionUUID=sec.uuid,
                          title1=sec.title, viewGroup="secondary")
        for key, title in (("all", f"All {sec.title}"), ("recentlyAdded", "Recently Added"),
                           ("collections", "Collections")):
            ET.SubElement(root, "Directory", key=key, title=title)
        return 200, self._xml(root)

    def _get_activities(self, **kw):
        root = ET.Element("MediaContainer")
        n = 0
        for sec in self._sections.values():
            if sec.pending:
                n += 1
                ET.SubElement(root, "Activity", uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, sec.uuid)),
                              type="library.update.section", cancellable="1", userID="1",
                              title=f"Scanning {sec.title}", subtitle="", progress="0")
        root.set("size", str(n))
        return 200, self._xml(root)

    # ------------------------------------------------------------------ Meta
    def _meta_elem(self, parent, sec: _Section, collections: bool):
        meta = ET.SubElement(parent, "Meta")
        sk = sec.key
        if collections:
            t = ET.SubElement(meta, "Type", key=f"/library/sections/{sk}/collections",
                              type="collection", title="Collections", active="0")
            ET.SubElement(t, "Filter", filter="label", filterType="string",
                          key=f"/library/sections/{sk}/label?type=18", title="Labels", type="filter")
            ET.SubElement(t, "Sort", default="asc", defaultDirection="asc", descKey="titleSort:desc",
                          key="titleSort", title="Title")
            ET.SubElement(t, "Field", key="collection.title", title="Title", type="string")
        else:
            libtype = "clip" if sec.type == "photo" else (sec.type if sec.type in SEARCH_TYPES else "movie")
            tnum = SEARCH_TYPES.get(libtype, 1)
            t = ET.SubElement(meta, "Type", key=f"/library/sections/{sk}/all?type={tnum}",
                              type=libtype, title=libtype.capitalize() + "s", active="1")
            for flt, title in META_FILTERS:
                ftype = FILTER_FIELDS[flt]
                ET.SubElement(t, "Filter", filter=flt,
                              filterType="boolean" if ftype == "boolean" else ("integer" if ftype == "integer" else "string"),
                              key=f"/library/sections/{sk}/{flt}?type={tnum}", title=title, type="filter")
            for key, (direction, title) in SORTS.items():
                if key in ("title", "id", "updatedAt", "summary", "tagline", "guid", "index", "studio"):
                    continue  # plexapi adds these itself
                attrs = {"defaultDirection": direction, "descKey": f"{key}:desc", "key": key, "title": title}
                if key == "titleSort":
                    attrs.update(active="1", default="asc",
                                 firstCharacterKey=f"/library/sections/{sk}/firstCharacter")
                ET.SubElement(t, "Sort", attrs)
            for key, title in META_FIELDS:
                ET.SubElement(t, "Field", key=key, title=title, type=FILTER_FIELDS[key])
        for ftype, ops in OPERATORS.items():
            if ftype == "guid":
                continue  # plexapi adds the guid FieldType by hand
            fe = ET.SubElement(meta, "FieldType", type=ftype)
            for key, title in ops:
                ET.SubElement(fe, "Operator", key=key, title=title)
        return meta

    def _get_filter_choices(self, sid, tag, query, **kw):
        sec = self._sections.get(int(sid))
        if sec is None or tag not in FILTER_FIELDS or FILTER_FIELDS[tag] not in ("tag", "integer", "string"):
            raise _HTTPError(404)
        values: dict[str, str] = {}
        for it in sec.items.values():
            if tag in TAG_TYPES:
                names = it.tags.get(tag, ())
            elif tag == "decade":
                y = it.vals.get("year")
                names = [str(int(y) // 10 * 10)] if y else ()
            else:
                v = it.vals.get(tag)
                names = [str(v)] if v not in (None, "") else ()
            for n in names:
                values.setdefault(n.lower(), n)
        root = ET.Element("MediaContainer", size=str(len(values)), allowSync="0",
                          identifier=LIBRARY_IDENTIFIER, title1=sec.title, title2=tag,
                          viewGroup="secondary")
        for low, name in sorted(values.items()):
            key = str(self._tag_id(tag, name)) if tag in TAG_TYPES else name
            ET.SubElement(root, "Directory", fastKey=f"/library/sections/{sec.key}/all?{tag}={quote(key)}",
                          key=key, title=name, type=tag)
        return 200, self._xml(root)

    # ------------------------------------------------------------------ item XML
    def _item_elem(self, parent, it: _Item, full: bool, with_section: bool):
        v = it.vals
        rk = it.rk
        a = {"ratingKey": str(rk), "key": f"/library/metadata/{rk}", "guid": f"local://{rk}",
             "type": it.type, "title": v.get("title") or ""}
        if with_section:
            a["librarySectionTitle"] = it.section.title
            a["librarySectionID"] = str(it.section.key)
            a["librarySectionKey"] = f"/library/sections/{it.section.key}"
        for k in ("titleSort", "originalTitle", "editionTitle", "studio", "contentRating", "summary",
                  "tagline", "originallyAvailableAt"):
            val = v.get(k)
            if val not in (None, "") and (full or k not in ("titleSort", "tagline")):
                a[k] = str(val)
        for k in ("userRating", "rating", "audienceRating", "year", "lastRatedAt"):
            val = v.get(k)
            if val not in (None, ""):
                a[k] = _fmt_num(val)
        for kind, attr in (("posters", "thumb"), ("arts", "art")):
            entries, sel = self._images(it, kind) if it.images is not None else (None, 0)
            if sel is not None:
                a[attr] = f"/library/metadata/{rk}/{attr}/{it.updated}"
        duration = int(v.get("duration") or 1200000)
        a["duration"] = str(duration)
        a["addedAt"] = str(it.added)
        a["updatedAt"] = str(it.updated)
        self._watch_attrs(a, rk)  # viewOffset, viewCount, lastViewedAt (watch history block)
        el = ET.SubElement(parent, "Video", a)
        for i, f in enumerate(it.files):
            mid = rk * 10 + i
            ext = f.rsplit(".", 1)[-1].lower() if "." in f else "mp4"
            m = ET.SubElement(el, "Media", {
                "id": str(mid), "duration": str(duration), "bitrate": "8000", "width": "1920",
                "height": "1080", "aspectRatio": "1.78", "audioChannels": "2", "audioCodec": "aac",
                "videoCodec": "h264", "videoResolution": "1080", "container": ext,
                "videoFrameRate": "30p"})
            p = ET.SubElement(m, "Part", {
                "id": str(mid), "key": f"/library/parts/{mid}/{it.added}/file.{ext}",
                "duration": str(duration), "file": f, "size": "1468592128", "container": ext})
            if full:
                ET.SubElement(p, "Stream", id=str(mid * 10), streamType="1", codec="h264", index="0",
                              default="1", displayTitle="1080p (H.264)")
        for tag, (etag, _, cap) in TAG_TYPES.items():
            names = it.tags.get(tag)
            if not names:
                continue
            if full:
                for n in names:
                    tid = self._tag_id(tag, n)
                    ta = {"id": str(tid), "filter": f"{tag}={tid}", "tag": n}
                    if tag == "actor":
                        role, thumb = (it.roles or {}).get(n, ("", None))
                        ta["tagKey"] = hashlib.sha1(n.encode()).hexdigest()[:24]
                        ta["role"] = role or ""
                        if thumb:
                            ta["thumb"] = thumb
                    ET.SubElement(el, etag, ta)
            else:
                for n in names[:cap]:
                    ET.SubElement(el, etag, tag=n)
        if full:
            for name in sorted(it.locked or ()):
                ET.SubElement(el, "Field", locked="1", name=name)
        return el

    # ------------------------------------------------------------------ listings
    @staticmethod
    def _page_params(query, headers):
        def pick(name):
            if name in query:
                return query[name][0]
            return headers.get(name)
        start = pick("X-Plex-Container-Start")
        size = pick("X-Plex-Container-Size")
        start = int(start) if start not in (None, "") else 0
        size = int(size) if size not in (None, "") else None
        return max(start, 0), size

    def _filter_items(self, items, qsl, type_num_default=None):
        """Apply PMS filter params (incl. push/pop/and/or); returns list or raises 400."""
        tokens = []
        type_num = None
        sort = None
        limit = None
        file_dir = None
        for k, val in qsl:
            if k in ("type",):
                type_num = int(val) if val.isdigit() else None
                if type_num is None:
                    raise _HTTPError(400)
                continue
            if k == "sort":
                sort = val
                continue
            if k == "limit":
                limit = int(val) if val.isdigit() else None
                continue
            if k == "file":
                file_dir = _dirname(val)
                continue
            if k in ("push", "pop", "and", "or"):
                tokens.append(k)
                continue
            if k.startswith(IGNORED_PARAM_PREFIXES) or k in ("query", "sectionId", "contentDirectoryID"):
                continue
            tokens.append(self._make_predicate(k, val))
        out = items
        if type_num is not None:
            tname = {v: k for k, v in SEARCH_TYPES.items()}.get(type_num)
            out = [it for it in out if it.type == tname]
        if file_dir is not None:
            fd = _norm_dir(file_dir)
            out = [it for it in out
                   if any(_norm_dir(_dirname(f)) == fd or _norm_dir(_dirname(f)).startswith(fd + "/")
                          for f in it.files)]
        if tokens:
            pred = self._compile(tokens)
            out = [it for it in out if pred(it)]
        return out, sort, limit

    def _compile(self, tokens):
        pos = 0

        def group():
            nonlocal pos
            node = None
            op = "and"
            while pos < len(tokens):
                t = tokens[pos]
                pos += 1
                if t == "pop":
                    break
                if t in ("and", "or"):
                    op = t
                    continue
                term = group() if t == "push" else t
                if node is None:
                    node = term
                elif op == "or":
                    node = (lambda a, b: lambda it: a(it) or b(it))(node, term)
                else:
                    node = (lambda a, b: lambda it: a(it) and b(it))(node, term)
                op = "and"
            return node or (lambda it: True)

        return group()

    def _field_values(self, it: _Item, field: str):
        v = it.vals
        if field in TAG_TYPES:
            return it.tags.get(field, [])
        if field == "id":
            return [it.rk]
        if field == "addedAt":
            return [it.added]
        if field == "updatedAt":
            return [it.updated]
        if field == "originallyAvailableAt":
            d = v.get("originallyAvailableAt")
            return [_date_epoch(str(d))] if d else []
        if field == "decade":
            y = v.get("year")
            return [int(y) // 10 * 10] if y else []
        if field == "duration":
            return [int(v.get("duration") or 1200000)]
        if field in ("viewOffset", "viewCount"):
            return [0]
        if field == "guid":
            return [f"local://{it.rk}"]
        if field == "title":
            return [v.get("title") or ""]
        val = v.get(field)
        return [] if val in (None, "") else [val]

    def _make_predicate(self, key: str, raw: str):
        m = re.fullmatch(r"(?:([a-zA-Z]+)\.)?([a-zA-Z0-9]+)([!<>=]*)", key)
        if not m:
            raise _HTTPError(400)
        _libtype, field, opchars = m.groups()
        op = opchars + "="
        ftype = FILTER_FIELDS.get(field)
        if ftype is None or op not in [o for o, _ in OPERATORS[ftype]] + (["=", "!="] if ftype == "date" else []):
            raise _HTTPError(400)
        values = raw.split(",")
        negative = op.startswith("!")
        fv = self._field_values

        if ftype == "string":
            qs = [x.lower() for x in values]
            cmp = {"=": lambda s, q: q in s, "!=": lambda s, q: q in s,
                   "==": lambda s, q: s == q, "!==": lambda s, q: s == q,
                   "<=": lambda s, q: s.startswith(q), ">=": lambda s, q: s.endswith(q)}[op]
            if field == "title":  # hot path: title search over a large section
                if len(qs) == 1 and op == "=":
                    q0 = qs[0]
                    return lambda it: q0 in it.tlower

                def pred(it):
                    hit = any(cmp(it.tlower, q) for q in qs)
                    return not hit if negative else hit
                return pred

            def test(s, q):
                return cmp(str(s).lower(), q)
        elif ftype == "integer":
            try:
                qs = [float(x) for x in values]
            except ValueError:
                raise _HTTPError(400) from None
            cmp = {"=": lambda s, q: s == q, "!=": lambda s, q: s == q,
                   ">>=": lambda s, q: s > q, "<<=": lambda s, q: s < q}[op]

            def test(s, q):
                return cmp(float(s), q)
        elif ftype == "date":
            now = time.time()
            qs = []
            for x in values:
                rel = re.fullmatch(r"-?(\d+)(mon|[smhdwy])", x)
                if rel:
                    qs.append(now - int(rel.group(1)) * RELATIVE_UNITS[rel.group(2)])
                elif re.fullmatch(r"-?\d+", x):
                    qs.append(int(x))
                elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", x):
                    qs.append(_date_epoch(x))
                else:
                    raise _HTTPError(400)
            # matcher: ">>=" is strictly after, on epoch seconds (plexapi sends a
            # datetime as int(timestamp)). PMS accepts the unlisted "updatedAt"
            # date field (plexapi library.py _manualFields), and python-plexapi's
            # tests/test_library.py _test_library_search checks every date field
            # against a real PMS: found with ">>" its date minus a day, not found
            # with ">>" "1s" (changed more than a second ago). PlexSync's changes
            # listing (plex/matcher.py) relies on exactly this.
            test = {"=": lambda s, q: s == q, "!=": lambda s, q: s == q,
                    ">>=": lambda s, q: s > q, "<<=": lambda s, q: s < q}[op]
        elif ftype == "tag":
            qs = []
            for x in values:
                x = x.strip()
                if x.isdigit():
                    name = next((n for (t, n), i in self._tag_ids.items() if t == field and i == int(x)), None)
                    qs.append(name if name is not None else x.lower())
                else:
                    qs.append(x.lower())

            def test(s, q):
                return s.lower() == q
        elif ftype == "boolean":
            want = values[0] not in ("0", "false", "")
            if field == "unwatched":
                result = want if op == "=" else not want
            else:  # inProgress / unmatched: never true here
                result = (not want) if op == "=" else want
            return lambda it: result
        else:  # guid
            qs = values

            def test(s, q):
                return s == q

        def pred(it):
            vals = fv(it, field)
            hit = any(test(s, q) for s in vals for q in qs)
            return not hit if negative else hit
        return pred

    def _sorted(self, sec_items, sort: str | None, cache_owner: _Section | None):
        """Return items sorted by the PMS sort spec (default: titleSort asc, then id)."""
        spec = sort or "titleSort"
        if "random" in spec:
            cache_owner = None
        if cache_owner is not None:
            version = cache_owner.order_version if spec == "titleSort" else cache_owner.all_version
            cached = cache_owner._cache.get(spec)
            if cached and cached[0] == version and cached[1] == len(sec_items):
                return cached[2]
        keys = []
        for part in spec.split(","):
            part = part.strip()
            m = re.fullmatch(r"(?:([a-zA-Z]+)\.)?([a-zA-Z]+)(?::([a-zA-Z]*))?", part)
            if not m or m.group(2) not in SORTS:
                raise _HTTPError(400)
            field, direction = m.group(2), m.group(3) or SORTS[m.group(2)][0]
            if direction not in ("asc", "desc", "nullsLast"):
                raise _HTTPError(400)
            keys.append((field, direction))
        items = list(sec_items)
        items.sort(key=lambda it: it.rk)
        for field, direction in reversed(keys):
            if field == "random":
                random.shuffle(items)
                continue
            if field == "titleSort":
                items.sort(key=lambda it: it.sortkey, reverse=direction == "desc")
                continue
            if field == "title":
                items.sort(key=lambda it: it.tlower, reverse=direction == "desc")
                continue

            def k(it, field=field):
                vals = self._field_values(it, field)
                val = vals[0] if vals else None
                if isinstance(val, str):
                    val = val.lower()
                return (val is not None, val if val is not None else 0)
            present = [it for it in items if k(it)[0]]
            missing = [it for it in items if not k(it)[0]]
            present.sort(key=lambda it: k(it)[1], reverse=direction == "desc")
            items = present + missing if direction in ("desc", "nullsLast") else missing + present
        if cache_owner is not None:
            cache_owner._cache[spec] = (version, len(sec_items), items)
        return items

    def _listing(self, root, items, query, headers, full=False, with_section=False, limit=None):
        total = len(items)
        if limit is not None:
            total = min(total, limit)
        start, size = self._page_params(query, headers)
        end = total if size is None else min(total, start + size)
        page = items[start:end] if start < end else []
        root.set("size", str(len(page)))
        root.set("totalSize", str(total))
        root.set("offset", str(start))
        for it in page:
            self._item_elem(root, it, full=full, with_section=with_section)
        return root

    def _section_container(self, sec: _Section, title2: str):
        return ET.Element("MediaContainer", {
            "allowSync": "1", "art": f"/:/resources/{sec.type}-fanart.jpg",
            "identifier": LIBRARY_IDENTIFIER, "librarySectionID": str(sec.key),
            "librarySectionTitle": sec.title, "librarySectionUUID": sec.uuid,
            "mediaTagPrefix": "/system/bundle/media/flags/", "mediaTagVersion": str(self._started),
            "thumb": f"/:/resources/{sec.type}.png", "title1": sec.title, "title2": title2,
            "viewGroup": "movie" if sec.type == "movie" else sec.type, "viewMode": "65592"})

    def _get_section_all(self, sid, query, qsl, **kw):
        sec = self._sections.get(int(sid))
        if sec is None:
            raise _HTTPError(404)
        if query.get("type") == ["18"]:
            return self._coll_listing(sec, query, kw["headers"])  # collections: see _CollectionsMixin
        sort = next((v for k, v in reversed(qsl) if k == "sort"), None)
        ordered = self._sorted(sec.items.values(), sort, sec)
        items, _, limit = self._filter_items(ordered, qsl)
        root = self._section_container(sec, f"All {sec.title}")
        if query.get("includeMeta", ["0"])[0] == "1":
            self._meta_elem(root, sec, collections=False)
        self._listing(root, items, query, kw["headers"], limit=limit)
        return 200, self._xml(root)

    def _get_library_all(self, query, qsl, **kw):
        all_items = []
        for sec in self._sections.values():
            all_items.extend(self._sorted(sec.items.values(), None, sec))
        items, sort, limit = self._filter_items(all_items, qsl)
        items = self._sorted(items, sort or "titleSort", None)
        root = ET.Element("MediaContainer", allowSync="0", identifier=LIBRARY_IDENTIFIER,
                          mediaTagPrefix="/system/bundle/media/flags/",
                          mediaTagVersion=str(self._started))
        self._listing(root, items, query, kw["headers"], with_section=True, limit=limit)
        return 200, self._xml(root)

    def _get_recently_added(self, query, qsl, **kw):
        items = self._sorted(list(self._items.values()), "addedAt:desc", None)
        root = ET.Element("MediaContainer", allowSync="0", identifier=LIBRARY_IDENTIFIER,
                          mixedParents="1", title1="Recently Added")
        self._listing(root, items, query, kw["headers"], with_section=True)
        return 200, self._xml(root)

    def _get_hub_search(self, query, qsl, **kw):
        q = (query.get("query") or [""])[0].strip().lower()
        limit = int((query.get("limit") or ["10"])[0] or 10)
        section_id = (query.get("sectionId") or [None])[0]
        words = q.split()
        matches = []
        if q:
            for sec in self._sections.values():
                if section_id and str(sec.key) != section_id:
                    continue
                for it in self._sorted(sec.items.values(), None, sec):
                    if q in it.tlower or all(w in it.tlower for w in words):
                        matches.append(it)
        matches.sort(key=lambda it: (not it.tlower.startswith(q), it.tlower != q, it.sortkey, it.rk))
        root = ET.Element("MediaContainer", size="1", identifier=LIBRARY_IDENTIFIER)
        shown = matches[:limit]
        hub = ET.SubElement(root, "Hub", {
            "title": "Movies", "type": "movie", "hubIdentifier": "movie", "context": "",
            "size": str(len(shown)), "more": "1" if len(matches) > limit else "0", "style": "shelf",
            "hubKey": "/library/metadata/" + ",".join(str(it.rk) for it in shown)})
        for it in shown:
            self._item_elem(hub, it, full=False, with_section=True)
        return 200, self._xml(root)

    def _get_metadata(self, ids, query, **kw):
        found = []
        for x in ids.split(","):
            if not x:
                continue
            it = self._items.get(int(x))
            if it is not None:
                found.append(it)
        if not found:
            raise _HTTPError(404)
        secs = {it.section.key for it in found}
        if len(secs) == 1:
            sec = found[0].section
            root = ET.Element("MediaContainer", size=str(len(found)), allowSync="1",
                              identifier=LIBRARY_IDENTIFIER, librarySectionID=str(sec.key),
                              librarySectionTitle=sec.title, librarySectionUUID=sec.uuid,
                              mediaTagPrefix="/system/bundle/media/flags/",
                              mediaTagVersion=str(self._started))
        else:
            root = ET.Element("MediaContainer", size=str(len(found)), allowSync="1",
                              identifier=LIBRARY_IDENTIFIER)
        for it in found:
            self._item_elem(root, it, full=True, with_section=True)
        return 200, self._xml(root)

    def _delete_metadata(self, rk, **kw):
        if int(rk) not in self._items:
            raise _HTTPError(404)
        self.delete_item(int(rk))
        return 200, None

    # ------------------------------------------------------------------ edits
    def _put_section_all(self, sid, query, qsl, **kw):
        sec = self._sections.get(int(sid))
        if sec is None:
            raise _HTTPError(404)
        if dict(qsl).get("type") == "18":
            return self._put_collection_edit(sec, qsl)  # see _CollectionsMixin
        params = {}
        for k, v in qsl:
            params[k] = v  # last one wins, like PMS
        ids = params.pop("id", "")
        type_ = params.pop("type", "")
        for k in list(params):
            if k.startswith("X-Plex-"):
                params.pop(k)
        if not ids or not type_.isdigit():
            raise _HTTPError(400)
        targets = []
        for x in ids.split(","):
            if not x.strip().isdigit():
                raise _HTTPError(400)
            it = self._items.get(int(x))
            if it is None:
                raise _HTTPError(404)
            if it.section is not sec or SEARCH_TYPES.get(it.type) != int(type_):
                raise _HTTPError(400)
            targets.append(it)

        # parse and validate everything before applying anything
        values: dict[str, object] = {}
        locks: dict[str, bool] = {}
        tag_sets: dict[str, dict[int, str]] = {}
        tag_extras: dict[str, dict[int, dict]] = {}
        tag_removes: dict[str, list[str]] = {}
        for k, raw in params.items():
            m = re.fullmatch(r"([a-zA-Z]+)\.(value|locked)", k)
            if m:
                field, what = m.groups()
                if what == "locked":
                    if field not in SCALAR_FIELDS and field not in TAG_TYPES and field not in LOCK_ONLY_FIELDS:
                        raise _HTTPError(400)
                    if raw not in ("0", "1"):
                        raise _HTTPError(400)
                    locks[field] = raw == "1"
                else:
                    if field not in SCALAR_FIELDS:
                        raise _HTTPError(400)
                    values[field] = self._parse_value(field, raw)
                continue
            m = re.fullmatch(r"([a-zA-Z]+)\[(\d+)\]\.(tag\.tag|tag\.thumb|tagging\.text|tag\.tagKey)", k)
            if m:
                tag, idx, what = m.group(1), int(m.group(2)), m.group(3)
                if tag not in TAG_TYPES:
                    raise _HTTPError(400)
                if what == "tag.tag":
                    tag_sets.setdefault(tag, {})[idx] = raw
                else:
                    tag_extras.setdefault(tag, {}).setdefault(idx, {})[what] = raw
                continue
            m = re.fullmatch(r"([a-zA-Z]+)\[\]\.tag\.tag-", k)
            if m:
                tag = m.group(1)
                if tag not in TAG_TYPES:
                    raise _HTTPError(400)
                tag_removes[tag] = [unquote(x) for x in raw.split(",") if x != ""]
                continue
            raise _HTTPError(400)
        for tag in tag_extras:
            if tag not in tag_sets:
                raise _HTTPError(400)

        for it in targets:
            self._capture_baseline(it)
            for field, val in values.items():
                if val is None:
                    it.vals.pop(field, None)
                elif field == "addedAt":
                    it.added = int(val)
                else:
                    it.vals[field] = val
            for tag, by_idx in tag_sets.items():
                names = [by_idx[i] for i in sorted(by_idx)]
                names = self._dedupe([n for n in names if n != ""])
                it.tags[tag] = names
                if tag == "actor":
                    extras = tag_extras.get(tag, {})
                    roles = {}
                    for i in sorted(by_idx):
                        e = extras.get(i)
                        if e:
                            roles[by_idx[i]] = (e.get("tagging.text", ""), e.get("tag.thumb"))
                    it.roles = roles or None
            for tag, names in tag_removes.items():
                drop = {n.lower() for n in names}
                it.tags[tag] = [n for n in it.tags.get(tag, []) if n.lower() not in drop]
                if tag == "actor" and it.roles:
                    it.roles = {k: v for k, v in it.roles.items() if k.lower() not in drop} or None
            it.tags = {k: v for k, v in it.tags.items() if v}
            for field, on in locks.items():
                if on:
                    if it.locked is None:
                        it.locked = set()
                    it.locked.add(field)
                elif it.locked:
                    it.locked.discard(field)
            if "title" in values or "titleSort" in values:
                it.title_changed()
                sec.order_version += 1
            self._touch(it)
        self._collections_from_items(sec, targets)  # see _CollectionsMixin
        return 200, None

    @staticmethod
    def _parse_value(field, raw):
        if raw == "":
            return None
        kind = SCALAR_FIELDS[field]
        try:
            if kind == "str":
                return raw
            if kind == "date":
                datetime.strptime(raw, "%Y-%m-%d")
                return raw
            if kind == "int":
                return int(raw)
            if kind == "float":
                return float(raw)
            if kind == "epoch":
                return int(float(raw))
        except ValueError:
            raise _HTTPError(500) from None
        raise _HTTPError(400)

    def _put_rate(self, query, **kw):
        key = (query.get("key") or [""])[0]
        ident = (query.get("identifier") or [""])[0]
        rating = (query.get("rating") or [""])[0]
        if ident != LIBRARY_IDENTIFIER or not key.isdigit():
            raise _HTTPError(400)
        it = self._items.get(int(key))
        if it is None:
            raise _HTTPError(404)
        try:
            r = float(rating)
        except ValueError:
            raise _HTTPError(400) from None
        if r == -1:
            it.vals.pop("userRating", None)
            it.vals.pop("lastRatedAt", None)
        elif 0 <= r <= 10:
            it.vals["userRating"] = r
            it.vals["lastRatedAt"] = int(time.time())
        else:
            raise _HTTPError(400)
        it.section.all_version += 1
        return 200, None

    def _put_item_refresh(self, rk, **kw):
        it = self._items.get(int(rk))
        if it is None:
            raise _HTTPError(404)
        self._agent_refresh(it)
        self.refreshes.append(it.rk)
        return 200, None

    def _agent_refresh(self, it: _Item):
        """Re-run the (local) agent: unlocked values go back to the agent's values."""
        if it.baseline is not None:
            base_vals, base_tags = it.baseline
            locked = it.locked or set()
            for field in SCALAR_FIELDS:
                if field in locked or field == "addedAt":
                    continue
                if field in base_vals:
                    it.vals[field] = base_vals[field]
                else:
                    it.vals.pop(field, None)
            for tag in TAG_TYPES:
                if tag in locked:
                    continue
                if base_tags.get(tag):
                    it.tags[tag] = list(base_tags[tag])
                else:
                    it.tags.pop(tag, None)
                    if tag == "actor":
                        it.roles = None
            it.title_changed()
            it.section.order_version += 1
        self._touch(it)

    def _put_item_analyze(self, rk, **kw):
        if int(rk) not in self._items:
            raise _HTTPError(404)
        return 200, None

    # ------------------------------------------------------------------ images
    def _get_images(self, rk, kind, **kw):
        it = self._items.get(int(rk))
        if it is None:
            raise _HTTPError(404)
        entries, sel = self._images(it, kind)
        root = ET.Element("MediaContainer", size=str(len(entries)), identifier=LIBRARY_IDENTIFIER,
                          librarySectionID=str(it.section.key), librarySectionTitle=it.section.title,
                          librarySectionUUID=it.section.uuid, mediaTagPrefix="/system/bundle/media/flags/",
                          mediaTagVersion=str(self._started))
        for i, (erk, provider) in enumerate(entries):
            url = f"/library/metadata/{it.rk}/file?url={quote(erk, safe='')}"
            a = {"key": url, "ratingKey": erk, "selected": "1" if i == sel else "0", "thumb": url}
            if provider:
                a["provider"] = provider
            ET.SubElement(root, "Photo", a)
        return 200, self._xml(root)

    def _post_images(self, rk, kind, query, body, **kw):
        it = self._items.get(int(rk))
        if it is None:
            raise _HTTPError(404)
        url = (query.get("url") or [None])[0]
        if url:
            erk = url
        elif body:
            erk = f"upload://{kind}/{hashlib.sha1(body).hexdigest()}"
        else:
            raise _HTTPError(400)
        self._select_image(it, kind, erk, create=True)
        return 200, None

    def _select_image(self, it: _Item, kind: str, erk: str, create: bool):
        entries, _ = self._images(it, kind)
        idx = next((i for i, (r, _) in enumerate(entries) if r == erk), None)
        if idx is None:
            if not create:
                raise _HTTPError(400)
            entries.append((erk, None))
            idx = len(entries) - 1
        it.images[kind][1] = idx
        if it.locked is None:
            it.locked = set()
        it.locked.add("thumb" if kind == "posters" else "art")
        self._touch(it)

    def _put_image_select(self, rk, kind, query, **kw):
        it = self._items.get(int(rk))
        if it is None:
            raise _HTTPError(404)
        url = (query.get("url") or [""])[0]
        if not url:
            raise _HTTPError(400)
        self._select_image(it, kind + "s", url, create=False)
        return 200, None

    def _delete_image(self, rk, kind, **kw):
        it = self._items.get(int(rk))
        if it is None:
            raise _HTTPError(404)
        images = self._images(it, "posters" if kind == "thumb" else "arts")
        images[1] = None
        self._touch(it)
        return 200, None

    # ------------------------------------------------------------------ scanning
    def _get_refresh(self, sid, query, **kw):
        sec = self._sections.get(int(sid))
        if sec is None:
            raise _HTTPError(404)
        if (query.get("force") or ["0"])[0] == "1":
            for it in list(sec.items.values()):
                self._agent_refresh(it)
            return 200, None
        path = (query.get("path") or [None])[0]
        if path is not None:
            self.scans.append(path)
        else:
            self.full_scans += 1
        if self.scan_delay > 0:
            sec.pending += 1
            t = threading.Timer(self.scan_delay, self._finish_scan, args=(sec, path))
            t.daemon = True
            self._timers.append(t)
            t.start()
        else:
            self._scan(sec, path)
        return 200, None

    def _finish_scan(self, sec: _Section, path):
        with self._lock:
            try:
                self._scan(sec, path)
            finally:
                sec.pending = max(0, sec.pending - 1)

    def _scan(self, sec: _Section, path):
        folder = _norm_dir(path) if path is not None else None
        for f, title in list(sec.staged.items()):
            if folder is not None:
                d = _norm_dir(_dirname(f))
                if not (d == folder or d.startswith(folder + "/")):
                    continue
            del sec.staged[f]
            if f in self._by_file:
                continue
            self._create_item(sec, title, [f], {})
        sec.scanned = int(time.time())
        sec.updated = sec.scanned

    # ================================================================== watch history
    # Plays, resume points and accounts (PlexSync's history import, issue 14).
    # Sources: plexapi 4.18.3 server.py ``history()`` (sends ``sort``,
    # ``accountID``, ``metadataItemID``, ``librarySectionID`` and, for
    # ``mindate``, ``viewedAt>=<epoch>``; pages with X-Plex-Container-*),
    # base.py ``PlexHistory`` (entry attributes ``historyKey``, ``viewedAt``,
    # ``accountID``, ``deviceID``), server.py ``SystemAccount`` (``/accounts``,
    # the owner is account 1: library.py ``history`` passes ``accountID=1``),
    # ``continueWatching()`` (``/hubs/continueWatching/items``),
    # mixins/played_unplayed.py (``/:/scrobble``, ``/:/unscrobble``) and
    # base.py ``updateProgress`` (``/:/progress?key=&time=&state=``).
    # A deleted item's history entry keeps its play but loses ``key``
    # (pkkid/python-plexapi #1267/#1269). Marking an item played adds no
    # history entry (plexapi tests/test_history.py asserts an empty history
    # after ``markPlayed``). viewOffset/viewCount/lastViewedAt are the
    # owner's (the token's account) and PMS omits them while they are 0.

    def _watch_state(self):
        if not hasattr(self, "_hist"):
            self._hist = {"entries": [], "watch": {}, "ids": itertools.count(1),
                          "accounts": {1: "plexowner"}}
        return self._hist

    def add_account(self, account_id: int, name: str) -> None:
        with self._lock:
            self._watch_state()["accounts"][int(account_id)] = name

    def add_play(self, rating_key: int, viewed_at: int | None = None, account_id: int = 1,
                 *, device_id: int = 1) -> None:
        """A finished play, as PMS records it (``viewed_at`` None: an entry without a time)."""
        with self._lock:
            st = self._watch_state()
            it = self._items[int(rating_key)]
            st["entries"].append({"id": next(st["ids"]), "rk": it.rk, "section": it.section.key,
                                  "title": it.vals.get("title") or "", "type": it.type,
                                  "viewedAt": viewed_at, "accountID": int(account_id),
                                  "deviceID": device_id})
            if int(account_id) == 1:
                w = st["watch"].setdefault(it.rk, {})
                w["viewCount"] = w.get("viewCount", 0) + 1
                w["lastViewedAt"] = viewed_at or int(time.time())
                w.pop("viewOffset", None)

    def set_progress(self, rating_key: int, offset_ms: int) -> None:
        with self._lock:
            self._progress(int(rating_key), int(offset_ms))

    def watch_state(self, rating_key: int) -> dict:
        with self._lock:
            return dict(self._watch_state()["watch"].get(int(rating_key), {}))

    def _progress(self, rk: int, offset: int) -> None:
        if rk not in self._items:
            raise _HTTPError(404)
        w = self._watch_state()["watch"].setdefault(rk, {})
        w["viewOffset"] = offset
        w["lastViewedAt"] = int(time.time())

    def _watch_attrs(self, a: dict, rk: int) -> None:
        for k, val in self._watch_state()["watch"].get(rk, {}).items():
            if val:
                a[k] = str(val)

    def _entry_elem(self, parent, e: dict) -> None:
        a = {"historyKey": f"/status/sessions/history/{e['id']}", "ratingKey": str(e["rk"]),
             "librarySectionID": str(e["section"]), "title": e["title"], "type": e["type"],
             "accountID": str(e["accountID"]), "deviceID": str(e["deviceID"])}
        if e["rk"] in self._items:
            a["key"] = f"/library/metadata/{e['rk']}"
        if e["viewedAt"] is not None:
            a["viewedAt"] = str(e["viewedAt"])
        ET.SubElement(parent, "Video", a)

    _HISTORY_FILTERS = {
        "accountID": lambda e, v: e["accountID"] == int(v),
        "metadataItemID": lambda e, v: e["rk"] == int(v),
        "librarySectionID": lambda e, v: e["section"] == int(v),
        # PMS filter operators: ``>=``/``<=`` inclusive, ``>>=``/``<<=`` strict.
        "viewedAt>": lambda e, v: e["viewedAt"] is not None and e["viewedAt"] >= int(v),
        "viewedAt>>": lambda e, v: e["viewedAt"] is not None and e["viewedAt"] > int(v),
        "viewedAt<": lambda e, v: e["viewedAt"] is not None and e["viewedAt"] <= int(v),
        "viewedAt<<": lambda e, v: e["viewedAt"] is not None and e["viewedAt"] < int(v),
    }

    def _get_history(self, query, qsl, **kw):
        entries = list(self._watch_state()["entries"])
        for k, v in qsl:
            test = self._HISTORY_FILTERS.get(k)
            if test is not None:
                try:
                    entries = [e for e in entries if test(e, v)]
                except ValueError:
                    raise _HTTPError(400) from None
        sort = next((v for k, v in reversed(qsl) if k == "sort"), None)
        if sort:
            field, _, direction = sort.partition(":")
            if field != "viewedAt":
                raise _HTTPError(400)
            entries.sort(key=lambda e: (e["viewedAt"] or 0, e["id"]), reverse=direction == "desc")
        start, size = self._page_params(query, kw["headers"])
        end = len(entries) if size is None else min(len(entries), start + size)
        root = ET.Element("MediaContainer", size=str(max(0, end - start)), totalSize=str(len(entries)),
                          offset=str(start))
        for e in entries[start:end]:
            self._entry_elem(root, e)
        return 200, self._xml(root)

    def _get_accounts(self, **kw):
        accounts = self._watch_state()["accounts"]
        root = ET.Element("MediaContainer", size=str(len(accounts)), identifier="com.plexapp.system.accounts")
        for aid, name in sorted(accounts.items()):
            ET.SubElement(root, "Account", id=str(aid), key=f"/accounts/{aid}", name=name,
                          defaultAudioLanguage="en", autoSelectAudio="1", defaultSubtitleLanguage="en",
                          subtitleMode="0", thumb="")
        return 200, self._xml(root)

    def _get_continue_watching(self, query, qsl, **kw):
        watch = self._watch_state()["watch"]
        items = [self._items[rk] for rk, w in watch.items() if w.get("viewOffset") and rk in self._items]
        items.sort(key=lambda it: watch[it.rk].get("lastViewedAt", 0), reverse=True)
        root = ET.Element("MediaContainer", identifier=LIBRARY_IDENTIFIER,
                          hubKey="/hubs/continueWatching/items")
        self._listing(root, items, query, kw["headers"], with_section=True)
        return 200, self._xml(root)

    def _item_from_query(self, query) -> int:
        try:
            rk = int((query.get("key") or [""])[0])
        except ValueError:
            raise _HTTPError(400) from None
        if rk not in self._items:
            raise _HTTPError(404)
        return rk

    def _get_scrobble(self, query, **kw):
        w = self._watch_state()["watch"].setdefault(self._item_from_query(query), {})
        w["viewCount"] = w.get("viewCount", 0) + 1
        w["lastViewedAt"] = int(time.time())
        w.pop("viewOffset", None)
        return 200, None

    def _get_unscrobble(self, query, **kw):
        self._watch_state()["watch"].pop(self._item_from_query(query), None)
        return 200, None

    def _get_progress(self, query, **kw):
        rk = self._item_from_query(query)
        self._progress(rk, int((query.get("time") or ["0"])[0]))
        return 200, None

    _ROUTES = _ROUTES + [
        ("GET", re.compile(r"^/status/sessions/history/all$"), "_get_history"),
        ("GET", re.compile(r"^/accounts$"), "_get_accounts"),
        ("GET", re.compile(r"^/hubs/continueWatching/items$"), "_get_continue_watching"),
        ("GET", re.compile(r"^/:/scrobble$"), "_get_scrobble"),
        ("GET", re.compile(r"^/:/unscrobble$"), "_get_unscrobble"),
        ("GET", re.compile(r"^/:/progress$"), "_get_progress"),
    ]
    # ================================================================== end watch history
