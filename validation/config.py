"""PlexSync settings: one pydantic model, validated once, passed down.

Values come from Stash's ``configuration.plugins`` (keys the user never
touched are absent there and take the defaults below) plus the Stash
connection the plugin was launched with.
"""

import logging
from typing import Any, Dict, List, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import ConfigError

PLUGIN_ID = "PlexSync"


class PathMapping(BaseModel):
    """One Stash path prefix and the Plex path prefix it corresponds to."""

    stash: str
    plex: str


class PlexSyncConfig(BaseModel):
    """Every setting PlexSync reads, with its default and allowed range."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    plex_url: str = Field(description="Plex server URL, e.g. http://192.168.1.10:32400")
    plex_token: str = Field(min_length=10, description="X-Plex-Token of a Plex admin account")
    plex_library: str = Field("", description="Plex library (section) name; empty searches every video library; several separated by commas")
    enabled: bool = Field(True, description="Sync scenes to Plex when they change in Stash")
    max_retries: int = Field(5, ge=1, le=20, description="Retries of a transient error before a job goes to the DLQ")
    poll_interval: float = Field(30.0, ge=0.1, le=60, description="Seconds the background worker waits for new jobs before exiting")
    strict_matching: bool = Field(True, description="Skip (DLQ) scenes whose file matches several Plex items")
    preserve_plex_edits: bool = Field(False, description="Only fill fields that are empty in Plex")
    connect_timeout: float = Field(5.0, ge=1, le=30, description="Seconds to wait for a connection to Plex")
    read_timeout: float = Field(30.0, ge=5, le=120, description="Seconds to wait for Plex to answer a request")
    path_map: str = Field("", description="Stash=>Plex path prefixes, e.g. /data/stash=>/media/stash; several separated by ;")
    strict_mode: bool = Field(False, description="Reject invalid scene metadata (DLQ) instead of sanitizing it")
    dlq_retention_days: int = Field(30, ge=1, le=365, description="Days dead-letter entries are kept")
    # -- what is written (issue 13) --
    studio_collections: bool = Field(False, description="Put each scene in a Plex collection named after its studio and each parent studio")
    group_collections: bool = Field(False, description="Put each scene in a Plex collection for each Stash group it is in")
    tag_collections: str = Field("", description="Stash tag names, separated by commas, that each get a Plex collection")
    content_rating: str = Field("", description="Content rating written to every synced item, e.g. XXX; empty leaves Plex's value alone")
    skip_fields: str = Field("", description="Fields PlexSync never writes, separated by commas")
    exclude_tags: str = Field("", description="Stash tags never sent to Plex as genres, separated by commas")
    # -- Plex -> Stash watch history (history/) --
    import_watch_history: bool = Field(False, description="Also import Plex plays and resume points while the background worker runs")
    history_accounts: str = Field("", description="Plex accounts whose plays are imported: names separated by commas, or all; empty is the server owner")
    # -- end watch history --
    stash_url: str = Field("", description="Stash base URL (derived from the connection Stash passes)")
    stash_api_key: str = Field("", description="Stash API key (optional; the session cookie is used otherwise)")
    stash_session_cookie: str = Field("", description="Stash session cookie (passed by Stash on every run)")

    @field_validator("plex_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("plex_url is required (e.g. http://192.168.1.10:32400)")
        if not value.startswith(("http://", "https://")):
            raise ValueError("plex_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("plex_token", "plex_library", "stash_api_key", "stash_session_cookie", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        # Before the length check: "123456789 " is a 9-character token.
        return value.strip() if isinstance(value, str) else value

    @field_validator("path_map")
    @classmethod
    def _path_map(cls, value: str) -> str:
        parse_path_map(value)
        return value.strip()

    @field_validator("skip_fields")
    @classmethod
    def _skip_fields(cls, value: str) -> str:
        unknown = [n for n in _names(value) if n.lower() not in SKIPPABLE_FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; choose from {', '.join(SKIPPABLE_FIELDS)}")
        return value.strip()

    @field_validator("tag_collections", "content_rating", "exclude_tags")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        return value.strip()

    @property
    def skipped(self) -> frozenset:
        return frozenset(n.lower() for n in _names(self.skip_fields))

    @property
    def excluded_tags(self) -> frozenset:
        return frozenset(n.casefold() for n in _names(self.exclude_tags))

    @property
    def collection_tags(self) -> frozenset:
        return frozenset(n.casefold() for n in _names(self.tag_collections))

    @property
    def libraries(self) -> List[str]:
        return [name.strip() for name in self.plex_library.split(",") if name.strip()]

    @property
    def path_mappings(self) -> List[PathMapping]:
        return parse_path_map(self.path_map)

    @property
    def timeouts(self) -> Tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


# Names ``skip_fields`` accepts: the fields PlexSync writes.
SKIPPABLE_FIELDS = ("title", "summary", "date", "studio", "performers", "tags", "rating", "poster",
                    "collections", "content_rating")


def _names(text: str) -> List[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def parse_path_map(text: str) -> List[PathMapping]:
    """``/a=>/b; /c=>/d`` -> mappings; raises ValueError on a malformed rule."""
    rules = []
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        stash, sep, plex = part.partition("=>")
        if not sep or not stash.strip() or not plex.strip():
            raise ValueError(f"path_map rule {part!r} must look like /stash/prefix=>/plex/prefix")
        rules.append(PathMapping(stash=stash.strip(), plex=plex.strip()))
    return rules


# Settings shown in Stash's UI. Values of NUMBER settings arrive as int or
# float; a STRING the user cleared arrives as "" and means "use the default".
UI_SETTINGS = (
    "plex_url", "plex_token", "plex_library", "enabled", "max_retries",
    "poll_interval", "strict_matching", "preserve_plex_edits",
    "connect_timeout", "read_timeout", "path_map",
    "studio_collections", "group_collections", "tag_collections", "content_rating",
    "skip_fields", "exclude_tags",
    "import_watch_history", "history_accounts",
)


def zero_means_default(key: str, value: Any) -> bool:
    """A NUMBER setting at 0 whose minimum is above 0: what the page shows when unset."""
    field = PlexSyncConfig.model_fields.get(key)
    if key not in UI_SETTINGS or field is None or isinstance(value, bool) or value != 0:
        return False
    return any(getattr(rule, "ge", 0) > 0 or getattr(rule, "gt", -1) >= 0 for rule in field.metadata)


def load_config(settings: Optional[Dict[str, Any]], **connection: Any) -> PlexSyncConfig:
    """Validate Stash's plugin settings; raise ConfigError with a readable message."""
    values: Dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if value is None or (isinstance(value, str) and value.strip() == "" and key not in ("plex_url", "plex_token")):
            continue
        if zero_means_default(key, value):  # -- issue 11: Stash's page shows an unset NUMBER as 0
            logging.getLogger("plexsync.config").warning(
                "[PlexSync] Setting %s is 0, which it cannot be: using the default (%s)", key,
                PlexSyncConfig.model_fields[key].default)
            continue
        values[key] = value
    values.update({k: v for k, v in connection.items() if v})
    values.setdefault("plex_url", "")
    values.setdefault("plex_token", "")
    try:
        return PlexSyncConfig(**values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    """``field: message`` per problem, without echoing the rejected values."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "config"
        message = err.get("msg", "invalid")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


# -- struct: one place for setting defaults --------------------------------------
def setting_default(name: str):
    """The default of the user setting ``name`` (the model's field is the one place)."""
    return PlexSyncConfig.model_fields[name].default
