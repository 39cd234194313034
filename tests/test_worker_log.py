"""worker.log stays bounded (rotated), and $PLEXSYNC_LOG_LEVEL adds the per-scene lines."""

import io
import logging

from common import defaults
from common import log as plog


def test_worker_log_is_rotated_and_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "WORKER_LOG_BYTES", 2000)
    path = tmp_path / "worker.log"
    plog.setup(log_file=str(path))
    try:
        for i in range(500):
            logging.getLogger("plexsync.worker").info("[PlexSync Worker] Batch of 50 jobs: line %d", i)
    finally:
        plog.setup(level=logging.INFO, stream=io.StringIO())  # drops (and closes) the file handler
    files = sorted(p.name for p in tmp_path.glob("worker.log*"))
    assert files == ["worker.log", "worker.log.1", "worker.log.2", "worker.log.3"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    assert "line 499" in path.read_text(encoding="utf-8")


def test_log_level_from_the_environment(monkeypatch):
    monkeypatch.delenv(plog.LEVEL_ENV, raising=False)
    assert plog.env_level() == logging.INFO
    monkeypatch.setenv(plog.LEVEL_ENV, "debug")
    assert plog.env_level() == logging.DEBUG
    monkeypatch.setenv(plog.LEVEL_ENV, "loud")  # a typo keeps the default
    assert plog.env_level() == logging.INFO
