"""The one configuration entry point: everything that reads PlexSync's settings comes here.

* ``load``: fetch (unless given) and validate the settings, and record the
  verdict for the hook. The hook's re-check, every worker and task, and the
  command-line tool call it.
* ``SettingsWatch``: a running worker's look before each batch. One
  plugin-settings request (standard library, a few ms), compared with what
  the worker runs with; a change rebuilds what depends on it, ``enabled:
  false`` or invalid settings stop the drain, jobs stay queued. It also
  takes up the newest Stash session cookie a hook or task left
  (``common.state.StashSession``), so an expired session does not strand
  the worker.
"""

import hashlib
import json
import logging
from typing import Any, Dict, Optional

from common.errors import ConfigError, StashUnavailable
from common.log import register_secret
from common.state import ConfigState, StashSession, config_file_stamp
from validation.config import PLUGIN_ID, PlexSyncConfig, load_config
from worker.stash import fetch_plugin_settings, session_cookie, stash_url

log = logging.getLogger("plexsync.worker")


def fingerprint(settings: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def fetch(conn: Dict[str, Any], api_key: str = "") -> Dict[str, Any]:
    """The raw plugin settings from Stash (one request); StashUnavailable when it fails."""
    settings = fetch_plugin_settings(conn, PLUGIN_ID, api_key=api_key)
    register_secret(settings.get("plex_token"))
    register_secret(settings.get("stash_api_key"))
    return settings


def load(conn: Dict[str, Any], paths=None, settings: Optional[Dict[str, Any]] = None, *,
         overrides: Optional[Dict[str, Any]] = None, url: Optional[str] = None, api_key: str = "") -> PlexSyncConfig:
    """Fetch (unless given) and validate the settings.

    With ``paths`` the verdict is recorded for the hook, stamped with Stash's
    config.yml as it was before the read (a change during the read makes the
    next hook look again). ``overrides``, ``url`` and ``api_key``: the CLI's flags.
    """
    stamp = config_file_stamp(conn)
    if settings is None:
        settings = fetch(conn, api_key)
    settings = {**settings, **(overrides or {})}
    register_secret(settings.get("plex_token"))
    state = ConfigState(paths.ensure().config_state) if paths is not None else None
    extra = {"stash_api_key": api_key} if api_key else {}
    try:
        config = load_config(settings, stash_url=stash_url(conn) if url is None else url,
                             stash_session_cookie=session_cookie(conn), **extra)
    except ConfigError as exc:
        if state is not None:
            state.write(enabled=bool(settings.get("enabled", True)), error=str(exc), stamp=stamp)
        raise
    if state is not None:
        state.write(enabled=config.enabled, stamp=stamp)
    for secret in (config.plex_token, config.stash_session_cookie, config.stash_api_key):
        register_secret(secret)
    return config


class SettingsWatch:
    """A running worker's look at the settings before each batch."""

    def __init__(self, ctx, settings: Optional[Dict[str, Any]] = None) -> None:
        self.ctx = ctx  # worker.context.WorkerContext
        self.fp = fingerprint(settings) if settings is not None else ""

    def check(self) -> bool:
        """True: go on with the batch (settings applied); False: stop draining."""
        ctx = self.ctx
        conn = self._freshest_connection()
        try:
            settings = fetch(conn, ctx.config.stash_api_key or ctx.stash.api_key_in_use())
        except StashUnavailable:
            return True  # the batch's own Stash request meets it, and the policy table decides
        fp = fingerprint(settings)
        if fp == self.fp and conn is ctx.conn:
            return True
        try:
            config = load(conn, ctx.paths, settings)
        except ConfigError as exc:
            log.error("[PlexSync] Configuration error: %s; queued jobs are kept", exc)
            return False
        if not config.enabled:
            log.info("[PlexSync] Plugin is disabled via configuration")
            return False
        if fp != self.fp and self.fp:
            log.info("[PlexSync Worker] Settings changed; the next batch uses them")
        self.fp = fp
        ctx.reconfigure(config, conn)
        return True

    def _freshest_connection(self) -> Dict[str, Any]:
        """The worker's connection, with the newest cookie a hook or task left, if it differs."""
        ctx = self.ctx
        cookie = StashSession(ctx.paths.stash_session).read()
        if not cookie or cookie == session_cookie(ctx.conn):
            return ctx.conn
        register_secret(cookie)
        conn = dict(ctx.conn)
        conn["SessionCookie"] = {**(conn.get("SessionCookie") or {}), "Name": "session", "Value": cookie}
        return conn
