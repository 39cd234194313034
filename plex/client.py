"""Connecting to Plex, and the one place plexapi/requests errors become ours.

Every call into plexapi runs inside ``plex_errors()``; nothing else in the
project catches a third-party exception. The decision is made by exception
type and HTTP status only. plexapi has no status attribute, so the status is
read from the ``(NNN)`` prefix plexapi puts on its messages; that prefix is
the only message text ever read.
"""

import contextlib
import json
import logging
import os
import re
import tempfile
import traceback
import uuid
from pathlib import Path
from typing import Iterator, Optional
from xml.etree.ElementTree import ParseError

import requests
from plexapi.exceptions import BadRequest, NotFound, PlexApiException, Unauthorized
from plexapi.server import PlexServer

from common.errors import (
    PlexAuthError,
    PlexBadRequest,
    PlexNotFound,
    PlexSyncError,
    PlexUnavailable,
)
from common.http import pin_environment
from common.log import register_secret, scrub

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")

PRODUCT = "PlexSync"
_STATUS = re.compile(r"^\((\d{3})\)")


class PlexSyncServer(PlexServer):
    """A PlexServer that identifies itself as one stable PlexSync device.

    plexapi's identifier comes from ``uuid.getnode()`` (random in many
    containers, so Plex lists a "new device" per run) and lives in a
    module-level dict; overriding ``_headers`` keeps ours on this instance.
    """

    def __init__(self, baseurl: str, token: str, *, client_id: str, session=None, timeout=None) -> None:
        self._client_id = client_id  # before super(): the constructor already sends GET /
        super().__init__(baseurl, token, session=session, timeout=timeout)

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
        os.replace(tmp, path)
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


def http_status(exc: BaseException) -> Optional[int]:
    """The HTTP status plexapi put at the start of its message, if any."""
    match = _STATUS.match(str(exc))
    return int(match.group(1)) if match else None


def _from_plexapi_query(exc: TypeError) -> bool:
    """plexapi 4.18 crashes with TypeError on a status ``requests`` has no name for (e.g. 520)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].name == "query" and frames[-1].filename.replace("\\", "/").endswith("plexapi/server.py")


def translate(exc: BaseException, action: str = "talking to Plex") -> Optional[PlexSyncError]:
    """Our error for a third-party exception, or None if it is not a Plex failure."""
    if isinstance(exc, PlexSyncError):
        return exc
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        kind = "timed out" if isinstance(exc, requests.Timeout) else "is unreachable"
        return PlexUnavailable(f"{action}: Plex {kind} ({type(exc).__name__})")
    if isinstance(exc, requests.RequestException):
        return PlexUnavailable(f"{action}: request failed ({type(exc).__name__})")
    if isinstance(exc, ParseError):
        return PlexUnavailable(f"{action}: Plex sent a response that is not XML")
    if isinstance(exc, TypeError) and _from_plexapi_query(exc):
        return PlexUnavailable(f"{action}: Plex answered a non-standard HTTP status")
    if isinstance(exc, NotFound):
        return PlexNotFound(f"{action}: Plex answered 404 (not found)")
    if isinstance(exc, BadRequest):
        status = http_status(exc)
        if isinstance(exc, Unauthorized) or status in (401, 403):
            return PlexAuthError(f"{action}: Plex refused the request ({status or 401}); check plex_token")
        if status == 429 or (status is not None and status >= 500):
            return PlexUnavailable(f"{action}: Plex answered {status}")
        if status is not None:
            return PlexBadRequest(f"{action}: Plex answered {status} (bad request)")
        return PlexBadRequest(f"{action}: plexapi rejected the request ({type(exc).__name__})")
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
