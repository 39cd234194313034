"""Every fixed number PlexSync runs with, one documented constant each.

User settings and their defaults are the fields of
``validation.config.PlexSyncConfig`` (read one with
``validation.config.setting_default``); nothing here is a setting. Standard library only: the hook imports it.
"""

# -- the job loop (worker.drainer) -------------------------------------------------
BATCH_SIZE = 50           # jobs per batch: one Stash request, one Plex round per batch
POLL = 0.5                # s between looks at the queue while a worker idles
LOCK_WAIT = 1.0           # s to retry a lock past another process's brief probe
TASK_LOCK_WAIT = 600.0    # s a task waits for the background worker to hand over the queue
STASH_FAILURES_TO_EXIT = 3  # batches in a row with Stash down before a worker exits

# -- waiting without using a retry (worker.policy) ---------------------------------------
STASH_RETRY_DELAY = 15.0    # s: Stash is restarting or the session expired
CONFIG_RETRY_DELAY = 300.0  # s: the settings are wrong; the user has to act

# -- retry schedules: full jitter, uniform(0, min(cap, base * 2**attempt)) (worker.backoff) --
PLEX_RETRY_BASE = 5.0
PLEX_RETRY_CAP = 80.0
# Plex has not scanned the file yet: a library scan can take a while, so wait
# longer and more often: 12 retries, each wait drawn from 0 up to 30 s, 60 s,
# ... capped at 10 min, so at most ~85 min in all (~43 min on average).
NOT_FOUND_RETRY_BASE = 30.0
NOT_FOUND_RETRY_CAP = 600.0
NOT_FOUND_RETRIES = 12

# -- circuit breaker (worker.breaker) ------------------------------------------------
BREAKER_THRESHOLD = 5     # failed batches in a row that open it
BREAKER_RECOVERY = 60.0   # s Plex is left alone before one trial batch

# -- tasks ------------------------------------------------------------------------------
PLEX_PAGE_SIZE = 500      # items per library listing request (raw XML, partial items)
STASH_PAGE_SIZE = 250     # scenes per findScenes request: bounded, never per_page -1
RECENT_HOURS = 24         # Sync Recent's window
TIMESTAMP_FLUSH = 5.0     # s between writes of sync_timestamps.json during a drain

# -- watch-history import (history/) ---------------------------------------------------
HISTORY_PAGE_SIZE = 100     # Plex history entries per request (plexapi's container size)
HISTORY_EVERY = 300.0       # s between imports by a background worker (import_watch_history)
HISTORY_FUTURE_SLACK = 300  # s a play may lie ahead of our clock (clock skew) before it is skipped

# -- worker.log (common.log): rotated, so it stays bounded -----------------------------
WORKER_LOG_BYTES = 1_000_000  # size at which worker.log is rotated
WORKER_LOG_BACKUPS = 3        # old files kept: worker.log.1 .. worker.log.3

# -- SQLite -------------------------------------------------------------------------------
SQLITE_BUSY_TIMEOUT = 30.0  # s a connection waits for another process's write lock
HOOK_QUEUE_WAIT = 5.0       # s a hook waits for the queue; then the save is kept in pending/ (Stash waits for the hook)

