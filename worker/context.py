"""Everything a drain needs, built from the validated config, and rebuilt when it changes."""

import logging
from dataclasses import dataclass
from typing import Any, Dict

from common.state import SyncTimestamps
from plex.sync import PlexSync
from sync_queue.dlq import DeadLetterQueue
from sync_queue.queue import JobQueue, open_queue
from validation.config import PlexSyncConfig
from worker.breaker import CircuitBreaker
from worker.stash import StashClient

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
    conn: Dict[str, Any]

    def reconfigure(self, config: PlexSyncConfig, conn: Dict[str, Any]) -> None:
        """New settings or a new Stash session: rebuild what depends on them, as a new worker would."""
        old, self.config = self.config, config
        if conn is not self.conn or (config.stash_api_key, config.read_timeout) != (old.stash_api_key,
                                                                                 old.read_timeout):
            self.conn = conn
            self.stash = StashClient(conn, api_key=config.stash_api_key, timeout=config.read_timeout)
        if _plex_view(config) != _plex_view(old):
            # Plex connection, timeouts, libraries, path_map, matching: all live in PlexSync.
            self.plex.close()
            self.plex = PlexSync(config, self.paths)

    def close(self) -> None:
        self.timestamps.flush()
        try:
            self.plex.close()
        finally:
            self.queue.close()


def _plex_view(config: PlexSyncConfig) -> Dict[str, Any]:
    """Every setting except the Stash credentials, which PlexSync (the Plex side) does not use."""
    return config.model_dump(exclude={"stash_session_cookie", "stash_api_key", "stash_url"})


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
        conn=server_connection,
    )
