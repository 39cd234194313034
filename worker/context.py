"""Everything a drain needs, built once per process from the validated config."""

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional

from common.errors import ConfigError
from common.log import register_secret
from common.state import ConfigState, SyncTimestamps
from plex.sync import PlexSync
from sync_queue.dlq import DeadLetterQueue
from sync_queue.queue import JobQueue, open_queue
from validation.config import PLUGIN_ID, PlexSyncConfig, load_config
from worker.breaker import CircuitBreaker
from worker.stash import StashClient, fetch_plugin_settings, session_cookie, stash_url

log = logging.getLogger("plexsync")


@dataclass
class WorkerContext:
    config: PlexSyncConfig
    paths: Any
    queue: JobQueue
    dlq: DeadLetterQueue
    breaker: CircuitBreaker
    timestamps: SyncTimestamps
    stash: StashClient
    plex: PlexSync

    def close(self) -> None:
        self.timestamps.flush()
        try:
            self.plex.close()
        finally:
            self.queue.close()


def read_config(server_connection: Dict[str, Any], paths, settings: Optional[Dict[str, Any]] = None) -> PlexSyncConfig:
    """Fetch and validate the settings; remember the verdict for the hook."""
    if settings is None:
        settings = fetch_plugin_settings(server_connection, PLUGIN_ID)
    register_secret(settings.get("plex_token"))
    state = ConfigState(paths.ensure().config_state)
    try:
        config = load_config(settings, stash_url=stash_url(server_connection),
                             stash_session_cookie=session_cookie(server_connection))
    except ConfigError as exc:
        state.write(enabled=bool(settings.get("enabled", True)), error=str(exc))
        raise
    state.write(enabled=config.enabled)
    register_secret(config.plex_token)
    register_secret(config.stash_session_cookie)
    register_secret(config.stash_api_key)
    return config


def build_context(config: PlexSyncConfig, paths, server_connection: Dict[str, Any]) -> WorkerContext:
    paths.ensure()
    queue = open_queue(paths)
    dlq = DeadLetterQueue(paths.dlq_db)
    purged = dlq.purge_older_than(config.dlq_retention_days)
    if purged:
        log.info("[PlexSync] Removed %d dead-letter entries older than %d days", purged, config.dlq_retention_days)
    return WorkerContext(
        config=config,
        paths=paths,
        queue=queue,
        dlq=dlq,
        breaker=CircuitBreaker(paths.queue_db),
        timestamps=SyncTimestamps(paths.timestamps),
        stash=StashClient(server_connection, api_key=config.stash_api_key, timeout=config.read_timeout),
        plex=PlexSync(config, paths),
    )
