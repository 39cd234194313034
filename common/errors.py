"""Every error PlexSync raises, named for what the caller does next.

The worker decides retry / wait-for-scan / dead-letter by exception type only,
never by message text. This module imports nothing from the project.
"""


class PlexSyncError(Exception):
    """Base class of every PlexSync error."""


class ConfigError(PlexSyncError):
    """The plugin settings are invalid; nothing can run until they are fixed."""


class PlexTLSError(ConfigError):
    """Plex's TLS certificate is not trusted or not for this address: fix plex_url."""


class TransientError(PlexSyncError):
    """Retry later with backoff: network trouble, 5xx, 429, timeouts."""


class PlexUnavailable(TransientError):
    """Plex did not answer or answered 5xx/429; counts toward the circuit breaker."""


class StashUnavailable(TransientError):
    """Stash did not answer (restarting, expired session). Not a Plex failure."""


class PlexNotFound(TransientError):
    """The scene's file is not (yet) in Plex: wait for a library scan.

    Retried on its own long schedule and never counted as a breaker failure.
    """


class NotInPlexLibrary(PlexSyncError):
    """The file lies outside every folder of the chosen Plex libraries (after
    path_map): report it once and settle the job. Neither retried nor
    dead-lettered; the next save or Sync All tries again."""


class PermanentError(PlexSyncError):
    """Retrying cannot help; the job goes to the dead-letter queue."""


class PlexAuthError(PermanentError):
    """Plex answered 401/403: the token is wrong or lacks access."""


class PlexBadRequest(PermanentError):
    """Plex answered 400: a bug on our side or a value Plex refuses."""


class InvalidSceneData(PermanentError):
    """Scene metadata failed validation (strict_mode) or is unusable."""


class SceneHasNoFile(PermanentError):
    """The scene has no file, so there is nothing to match in Plex."""


class AmbiguousMatch(PermanentError):
    """Several Plex items match the file and strict_matching is on."""


class SceneDeleted(PlexSyncError):
    """The scene no longer exists in Stash; the job is dropped."""
