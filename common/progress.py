"""A terminal progress bar for process_queue.py: count, rate, time left.

Standard library only, so the plugin runs without extra packages; the hook
never imports it. Log records printed while the bar shows go above it: the
bar's line is cleared first and drawn again after (``AboveBar``).
"""

import logging
import time
from typing import Callable, Optional, TextIO

CLEAR_LINE = "\r\x1b[K"  # carriage return, then erase to the end of the line


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar:
    """``[#####.....] 150/300  12.5/s  0:12 left`` on one line of a terminal."""

    def __init__(self, total: int, stream: TextIO, clock: Callable[[], float] = time.monotonic,
                 width: int = 30) -> None:
        self.total, self.done, self.stream, self.clock, self.width = max(total, 1), 0, stream, clock, width
        self.started = clock()
        self.shown = False

    def text(self) -> str:
        filled = int(min(1.0, self.done / self.total) * self.width)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
        elapsed = self.clock() - self.started
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            line += f"  {rate:.1f}/s  {_duration(max(0, self.total - self.done) / rate)} left"
        return line

    def advance(self, n: int) -> None:
        self.done += n
        self.draw()

    def draw(self) -> None:
        self.stream.write(CLEAR_LINE + self.text())
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


class AboveBar(logging.Handler):
    """Wraps a handler: clears the bar, lets the record print, draws the bar again."""

    def __init__(self, inner: logging.Handler, bar: ProgressBar) -> None:
        super().__init__(inner.level)
        self.inner, self.bar = inner, bar

    def handle(self, record: logging.LogRecord) -> bool:
        self.bar.clear()
        try:
            self.inner.handle(record)
            self.inner.flush()
        finally:
            if self.bar.shown:
                self.bar.draw()
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        self.inner.emit(record)


def show_logs_above(bar: ProgressBar, logger: Optional[logging.Logger] = None) -> Callable[[], None]:
    """Route ``logger``'s handlers through ``AboveBar``; returns the function that undoes it."""
    logger = logger or logging.getLogger("plexsync")
    original = list(logger.handlers)
    for handler in original:
        logger.removeHandler(handler)
        logger.addHandler(AboveBar(handler, bar))

    def restore() -> None:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in original:
            logger.addHandler(handler)
    return restore
