"""Logging in Stash's plugin protocol, with secrets scrubbed in one place.

Stash reads the plugin's stderr line by line; a line ``\\x01<level>\\x02msg``
is logged at that level, and ``\\x01p\\x02<0..1>`` moves a task's progress bar.
stdout is reserved for the single JSON result, so nothing here touches it.
"""

import logging
import os
import sys

from common import defaults

# Stash's bufio.Scanner stops reading at 64 KiB; stay well below it.
MAX_LINE = 60000

_LEVELS = (
    (logging.ERROR, "e"),
    (logging.WARNING, "w"),
    (logging.INFO, "i"),
    (logging.DEBUG, "d"),
)

_secrets: "set[str]" = set()


def register_secret(value: "object") -> None:
    """Never let ``value`` (a token, cookie or API key) reach a log line."""
    text = str(value or "")
    if len(text) >= 4:
        _secrets.add(text)


def scrub(text: str) -> str:
    """Replace every registered secret in ``text`` with ``****``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "****")
    return text


class SecretsFilter(logging.Filter):
    """Scrubs secrets from the fully formatted message, args included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = scrub(record.getMessage())
            record.args = ()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrub(record.exc_text)
        return True


class StashHandler(logging.StreamHandler):
    """Writes records as ``\\x01<level>\\x02message`` lines to stderr."""

    def __init__(self, stream=None) -> None:
        super().__init__(stream or sys.stderr)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        code = next((c for lvl, c in _LEVELS if record.levelno >= lvl), "t")
        lines = [line for line in text.splitlines() if line.strip()] or [""]
        return "\n".join(f"\x01{code}\x02{line[:MAX_LINE]}" for line in lines)


LEVEL_ENV = "PLEXSYNC_LOG_LEVEL"  # DEBUG adds a line per scene (Stash's environment, or the CLI's)


def env_level(default: int = logging.INFO) -> int:
    """The level named by $PLEXSYNC_LOG_LEVEL, else ``default``."""
    named = logging.getLevelName(os.environ.get(LEVEL_ENV, "").strip().upper() or "-")
    return named if isinstance(named, int) else default


def setup(level: "int | None" = None, stream=None, log_file=None, plain: bool = False) -> logging.Logger:
    """Route the ``plexsync`` loggers to Stash (stderr), a log file, or a terminal (plain)."""
    root = logging.getLogger("plexsync")
    root.setLevel(env_level() if level is None else level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if log_file is not None:
        from logging.handlers import RotatingFileHandler

        handler = RotatingFileHandler(log_file, maxBytes=defaults.WORKER_LOG_BYTES,
                                      backupCount=defaults.WORKER_LOG_BACKUPS, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    elif plain:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        handler = StashHandler(stream)
    handler.addFilter(SecretsFilter())
    root.addHandler(handler)
    return root


def progress(fraction: float, stream=None) -> None:
    """Move the Stash task progress bar (0..1)."""
    out = stream or sys.stderr
    out.write(f"\x01p\x02{min(1.0, max(0.0, fraction)):.4f}\n")
    out.flush()


class PlainLines:
    """A text stream that turns Stash's ``\\x01<level>\\x02msg`` lines into ``LEVEL msg``.

    For a terminal: PythonDepManager and stashapi log in Stash's protocol
    whatever runs them; progress lines are dropped.
    """

    _NAMES = {"t": "TRACE", "d": "DEBUG", "i": "INFO", "w": "WARNING", "e": "ERROR"}

    def __init__(self, stream) -> None:
        self._stream = stream
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            plain = self._plain(line)
            if plain is not None:
                self._stream.write(plain + "\n")
        return len(text)

    def _plain(self, line: str) -> "str | None":
        if len(line) >= 3 and line[0] == "\x01" and line[2] == "\x02":
            if line[1] == "p":
                return None
            return f"{self._NAMES.get(line[1], 'INFO')} {line[3:].strip()}"
        return line

    def flush(self) -> None:
        if self._partial:
            self.write("\n")
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def terminal_stderr() -> None:
    """Make sys.stderr plain for a person (the CLI); idempotent."""
    if not isinstance(sys.stderr, PlainLines):
        sys.stderr = PlainLines(sys.stderr)
