"""Connecting to Plex, and the one place plexapi/requests errors become ours.

Every call into plexapi runs inside ``plex_errors()``; nothing else in the
project catches a third-party exception. The decision is made by exception
type and HTTP status only, never by message text. plexapi's exceptions carry
no status, so ``PlexSyncServer`` notes the status of every Plex response (a
``requests`` response hook) and attaches it to the exception ``query`` raises
as ``plexsync_status``.
"""

import contextlib
import json
import logging
import os
import ssl
import tempfile
import uuid
from pathlib import Path
from typing import Iterator, Optional
from xml.etree.ElementTree import ParseError

import requests
from plexapi.exceptions import BadRequest, NotFound, PlexApiException, Unauthorized
from plexapi.server import PlexServer

from common import defaults
from common.errors import (
    PlexAuthError,
    PlexTLSError,
    PlexBadRequest,
    PlexNotFound,
    PlexSyncError,
    PlexUnavailable,
)
from common.http import pin_environment
from common.jsonfile import replace
from common.log import register_secret, scrub

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")

PRODUCT = "PlexSync"
_OK = (200, 201, 204)  # what plexapi's query accepts
TLS_FIX = ("use http:// for a Plex server on your LAN, or the https://*.plex.direct address "
           "Plex shows under Settings -> Network")


class PlexSyncServer(PlexServer):
    """A PlexServer that identifies itself as one stable PlexSync device.

    plexapi's identifier comes from ``uuid.getnode()`` (random in many
    containers, so Plex lists a "new device" per run) and lives in a
    module-level dict; overriding ``_headers`` keeps ours on this instance.
    """

    def __init__(self, baseurl: str, token: str, *, client_id: str, session=None, timeout=None) -> None:
        # Before super(): the constructor already sends GET /.
        self._client_id = client_id
        self._last_status: Optional[int] = None
        session = session or requests.Session()
        session.hooks["response"].append(self._note_status)
        super().__init__(baseurl, token, session=session, timeout=timeout)

    def _note_status(self, response, *args, **kwargs):
        self._last_status = response.status_code
        return response

    def query(self, key, *args, **kwargs):
        """plexapi's query, with the HTTP status of a refused request on the exception."""
        self._last_status = None
        try:
            return super().query(key, *args, **kwargs)
        except (BadRequest, TypeError) as exc:  # TypeError: plexapi 4.18 on a status requests cannot name (520)
            status = self._last_status
            if status is None or status in _OK:
                raise
            if isinstance(exc, TypeError):
                raise PlexHTTPError(status) from exc
            exc.plexsync_status = status
            raise

    def _headers(self, **kwargs):
        headers = super()._headers()
        headers["X-Plex-Client-Identifier"] = self._client_id
        headers["X-Plex-Product"] = PRODUCT
        headers["X-Plex-Device-Name"] = PRODUCT
        headers.update(kwargs)
        return headers


def load_device_id(paths) -> str:
    """The persistent client identifier in ``paths.device_id`` (created once)."""
    path = Path(paths.device_id)
    existing = _read_device_id(path)
    if existing:
        return existing
    corrupt = path.exists()
    if corrupt:
        log.warning("[PlexSync] %s is unreadable; creating a new Plex device id", path.name)
    return _write_device_id(path, str(uuid.uuid4()), exclusive=not corrupt)


def _read_device_id(path) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return str(uuid.UUID(str(json.load(fh).get("device_id"))))
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _write_device_id(path, device_id: str, exclusive: bool) -> str:
    """Write atomically and owner-only; with ``exclusive``, never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".device_id.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"device_id": device_id}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if os.name == "posix":
            os.chmod(tmp, 0o600)
        if exclusive:
            # Two first runs racing must agree on one id: link() refuses to
            # overwrite, so the loser adopts the winner's id.
            try:
                os.link(tmp, path)
                return device_id
            except FileExistsError:
                winner = _read_device_id(path)
                if winner:
                    return winner
            except OSError:  # no hard links on this filesystem
                pass
        replace(tmp, path)
        return device_id
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def plex_session(url: str) -> requests.Session:
    """A requests Session for the one Plex server at ``url``, environment read once."""
    return pin_environment(requests.Session(), url)


def connect(config, device_id: str, session: Optional[requests.Session] = None) -> PlexServer:
    """Open the Plex server (one ``GET /``), identified as ``device_id``."""
    register_secret(config.plex_token)
    with plex_errors("connecting to Plex"):
        return PlexSyncServer(
            config.plex_url,
            config.plex_token,
            client_id=device_id,
            session=session or plex_session(config.plex_url),
            timeout=config.timeouts,
        )


class PlexHTTPError(BadRequest):
    """Plex answered a status plexapi could not handle itself; ``plexsync_status`` holds it."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.plexsync_status = status


def http_status(exc: BaseException) -> Optional[int]:
    """The HTTP status of a refused Plex request (noted by PlexSyncServer.query), if any."""
    status = getattr(exc, "plexsync_status", None)
    if status is None and isinstance(exc, requests.RequestException) and exc.response is not None:
        status = exc.response.status_code
    return status


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: chained causes, urllib3's ``reason``, requests' first arg."""
    seen = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__, getattr(current, "reason", None),
                                *current.args) if isinstance(e, BaseException))


def _tls_error(exc: BaseException, action: str) -> PlexTLSError:
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(exc)):
        problem = "Plex's TLS certificate is not trusted or not issued for this address"
    else:
        problem = "the TLS handshake with Plex failed (is plex_url https:// on a plain-http port?)"
    return PlexTLSError(f"{action}: {problem}; {TLS_FIX}")


def _from_status(status: Optional[int], exc: BaseException, action: str) -> PlexSyncError:
    if isinstance(exc, Unauthorized) or status in (401, 403):
        return PlexAuthError(f"{action}: Plex refused the request ({status or 401}); check plex_token")
    if isinstance(exc, NotFound) or status == 404:
        return PlexNotFound(f"{action}: Plex answered 404 (not found)")
    if status == 429 or (status is not None and status >= 500):
        return PlexUnavailable(f"{action}: Plex answered {status}")
    if status is not None:
        return PlexBadRequest(f"{action}: Plex answered {status} (bad request)")
    return PlexBadRequest(f"{action}: plexapi rejected the request ({type(exc).__name__})")


def translate(exc: BaseException, action: str = "talking to Plex") -> Optional[PlexSyncError]:
    """Our error for a third-party exception, or None if it is not a Plex failure."""
    if isinstance(exc, PlexSyncError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError) or (
            isinstance(exc, requests.RequestException) and any(isinstance(e, ssl.SSLError) for e in _causes(exc))):
        return _tls_error(exc, action)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        kind = "timed out" if isinstance(exc, requests.Timeout) else "is unreachable"
        return PlexUnavailable(f"{action}: Plex {kind} ({type(exc).__name__})")
    if isinstance(exc, requests.HTTPError) and http_status(exc) is not None:
        return _from_status(http_status(exc), exc, action)
    if isinstance(exc, requests.RequestException):
        return PlexUnavailable(f"{action}: request failed ({type(exc).__name__})")
    if isinstance(exc, ParseError):
        return PlexUnavailable(f"{action}: Plex sent a response that is not XML")
    if isinstance(exc, (BadRequest, NotFound)):  # Unauthorized is a BadRequest
        return _from_status(http_status(exc), exc, action)
    if isinstance(exc, PlexApiException):
        return PlexBadRequest(f"{action}: plexapi error ({type(exc).__name__})")
    return None


@contextlib.contextmanager
def plex_errors(action: str = "talking to Plex") -> Iterator[None]:
    """Run plexapi calls; re-raise their failures as PlexSync errors.

    The original exception is not chained: its text carries URLs and server
    bodies, which must not reach job records. It is logged, scrubbed, at debug.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - filtered by translate()
        ours = translate(exc, action)
        if ours is None or ours is exc:
            raise
        log.debug("[PlexSync] %s: %s", action, scrub(f"{type(exc).__name__}: {exc}"))
        raise type(ours)(scrub(str(ours))) from None


def section_pages(server, section_id: int, filters: str = ""):
    """The movie items of one library, as raw XML elements, one page of
    ``PLEX_PAGE_SIZE`` per request (no plexapi objects: cheap at 100,000 items).
    ``filters`` is appended to the query, e.g. ``&updatedAt%3E%3E=<epoch>``."""
    key = f"/library/sections/{int(section_id)}/all?includeGuids=0&type=1{filters}"
    start = 0
    while True:
        headers = {"X-Plex-Container-Start": str(start), "X-Plex-Container-Size": str(defaults.PLEX_PAGE_SIZE)}
        with plex_errors("listing a Plex library"):
            data = server.query(key, headers=headers)
        if data is None:
            return
        videos = [el for el in data if el.get("ratingKey")]
        yield videos
        start += len(videos)
        total = data.get("totalSize")
        if not videos or (start >= int(total) if total else len(videos) < defaults.PLEX_PAGE_SIZE):
            return
