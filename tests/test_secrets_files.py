"""Secrets and files: no credential in any output, log, DLQ row or data file;
owner-only files; images fetched only from the Stash server.
"""

import http.server
import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from common import log as plog
from common.errors import PlexAuthError
from sync_queue.dlq import DeadLetterQueue
from sync_queue.queue import make_job
from tests.e2e import PLEX_TOKEN, STASH_API_KEY, Env, env  # noqa: F401
from tests.emulators.stash import tiny_jpeg
from tests.reliability import record, wait_until
from tests.runner import scene_update
from worker.stash import StashClient

WRONG_TOKEN = "wrong-token-5f2a9c7e1b"


def _processed(env):
    stats = env.stats()
    return stats["ready"] == 0 and stats["in_progress"] == 0


def _proc_text(pid) -> str:
    """A running process's command line and environment, as `ps e` would show them."""
    parts = []
    for name in ("cmdline", "environ"):
        try:
            parts.append(Path(f"/proc/{pid}/{name}").read_bytes().decode("utf-8", "replace"))
        except OSError:
            pass
    return "\n".join(parts)


@pytest.mark.skipif(os.name != "posix", reason="owner-only modes and umask are POSIX")
def test_full_run_leaks_no_secret_and_creates_owner_only_files(tmp_path):
    saved_umask = os.umask(0)  # a Stash that creates world-writable files: the plugin must not follow
    try:
        env = Env(tmp_path, settings={"poll_interval": 1})
    finally:
        os.umask(saved_umask)
    texts = []  # everything a user or another local account could read
    try:
        os.umask(0)
        ok, ok_rk = env.scene_with_item(1)
        flaky, _ = env.scene_with_item(2)
        nofile = env.stash.add_scene(title="No file")
        missing = env.stash.add_scene(title="Not in Plex", files=["/data/stash/new/missing.mp4"])
        env.plex.fault(status=503, times=1, method="PUT")
        for sid in (ok, flaky, nofile, missing):
            texts.append(env.hook(sid, scene_update(sid, title="x")))
        pid = wait_until(env.runner.worker_pid, 30, 0.01, "a worker")
        texts.append(_proc_text(pid))
        wait_until(lambda: _processed(env), 60, message="the first round")
        env.make_retries_due()
        wait_until(lambda: _processed(env) and env.plex.item(ok_rk)["title"] == "Title 1", 60,
                   message="the retry")
        # A revoked token for a while: jobs fail for good, with the (wrong) token registered as a secret.
        env.runner.kill_workers()
        env.settings(plex_token=WRONG_TOKEN)
        env.stash.update_scene(ok, title="with the wrong token")
        texts.append(env.hook(ok, scene_update(ok, title="with the wrong token")))
        wait_until(lambda: any(e["error_type"] == "PlexAuthError" for e in env.dlq()), 60, message="a 401 in the DLQ")
        env.runner.kill_workers()
        env.settings(plex_token=PLEX_TOKEN)
        # Every task, and the command-line tool with its token in the environment.
        for task in ("Queue Status", "Retry Failed Jobs", "Sync All Scenes to Plex", "Process Queue", "Queue Status",
                     "Import Plex Watch History"):
            texts.append(env.runner.run_task(task))
        cli_env = dict(env.runner.env(), PLEX_TOKEN=PLEX_TOKEN, STASH_API_KEY=STASH_API_KEY)
        for args in (["--stats-only", "--json"], ["--dlq-list"], ["--dlq-list", "--json"],
                     ["--plex-url", env.plex.url, "--plex-library", "Stash", "--stash-url", env.stash.url]):
            proc = subprocess.run([sys.executable, str(env.runner.plugin_dir / "process_queue.py"), *args],
                                  capture_output=True, text=True, env=cli_env, timeout=120, cwd=str(tmp_path))
            texts.append(proc.stdout + proc.stderr)
        env.runner.kill_workers()
        texts.append(json.dumps(env.dlq()))
        dlq_rows = env.dlq()
    finally:
        os.umask(saved_umask)
        env.close()

    secrets = {"Plex token": PLEX_TOKEN, "wrong Plex token": WRONG_TOKEN, "Stash API key": STASH_API_KEY,
               "Stash session cookie": env.runner.cookie}
    blob = "\n".join(t.stdout + t.stderr if hasattr(t, "stdout") else str(t) for t in texts)
    leaks = [(name, "output") for name, value in secrets.items() if value in blob]
    files = dirs = size = 0
    loose = []
    data = env.runner.data_dir
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            loose.append(f"{path.relative_to(data.parent)} {oct(mode)}")
        if path.is_dir():
            dirs += 1
            continue
        files += 1
        content = path.read_bytes()
        size += len(content)
        # stash_session.json is the one credential store (docs/install.md): the newest
        # Stash cookie, for a running worker; owner-only like everything here.
        allowed = {"Stash session cookie"} if path.name == "stash_session.json" else set()
        leaks += [(name, path.name) for name, value in secrets.items()
                  if value.encode() in content and name not in allowed]
    record("secrets: full run (hooks, worker, 8 tasks, CLI)", outputs_checked=len(texts), data_files=files,
           data_dirs=dirs, bytes_scanned=size, dlq_rows=len(dlq_rows), secrets_found=len(leaks),
           files_not_owner_only=len(loose))
    assert {e["error_type"] for e in dlq_rows} >= {"SceneHasNoFile"}
    assert not leaks, leaks
    assert not loose, loose
    assert files >= 8  # queue db, DLQ, index, locks, state files, worker.log: all looked at


def test_secrets_are_scrubbed_in_every_sink(tmp_path):
    """The scrubber itself: Stash log lines, worker.log (with a traceback) and DLQ rows."""
    secret = "plex-secret-token-7d1e0b"
    plog.register_secret(secret)
    stream = io.StringIO()
    logger = logging.getLogger("plexsync.test")
    plog.setup(stream=stream)
    try:
        raise RuntimeError(f"GET http://plex/?X-Plex-Token={secret} failed")
    except RuntimeError:
        logger.exception("request with %s failed", secret)
    plog.setup(log_file=str(tmp_path / "worker.log"))
    try:
        raise RuntimeError(f"token {secret}")
    except RuntimeError:
        logger.exception("worker saw %s", secret)
    logging.getLogger("plexsync").handlers[0].close()
    plog.setup()
    dlq = DeadLetterQueue(tmp_path / "dlq.db")
    dlq.add(make_job(1, data={"note": secret}), PlexAuthError(f"refused {secret}"), f"trace {secret}")
    dumped = stream.getvalue() + (tmp_path / "worker.log").read_text() + json.dumps(dlq.list())
    assert "****" in stream.getvalue() and "****" in (tmp_path / "worker.log").read_text()
    assert secret not in dumped
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name


class _Foreign:
    """Another web server on this machine: it must never be asked for an image."""

    def __init__(self) -> None:
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                body = tiny_jpeg(b"foreign")
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_images_are_fetched_only_from_the_stash_origin(env):
    foreign = _Foreign()
    try:
        sid, rk = env.scene_with_item(1)
        env.stash.external_host = foreign.url  # Stash now builds screenshot URLs on another server
        env.hook(sid)
        env.settle()
        assert env.plex.item(rk)["title"] == "Title 1"  # the metadata still syncs
        assert env.plex.count("POST", f"/library/metadata/{rk}/posters") == 0
        assert "Not fetching image" in env.runner.worker_log()
        # The real client with URLs that try to look like Stash's.
        client = StashClient(env.stash.server_connection(env.stash.new_session_cookie()))
        sp, fp = env.stash.port, foreign.port
        tricks = [f"{foreign.url}/scene/{sid}/screenshot", f"http://127.0.0.1:{sp}@127.0.0.1:{fp}/scene/1/screenshot",
                  f"http://localhost:{fp}/scene/1/screenshot", f"https://127.0.0.1:{sp}/scene/1/screenshot",
                  f"http://127.0.0.1.nip.io:{sp}/x", f"//127.0.0.1:{fp}/scene/1/screenshot", "file:///etc/passwd",
                  f"http://[::1]:{fp}/scene/1/screenshot", f"HTTP://127.0.0.1:{fp}/scene/1/screenshot"]
        refused = [url for url in tricks if client.fetch_image(url) is None]
        own = client.fetch_image(f"{env.stash.url}/scene/{sid}/screenshot")  # control: Stash's own URL works
        record("secrets: images only from the Stash origin", foreign_urls_tried=len(tricks) + 1,
               foreign_requests=len(foreign.requests), refused=len(refused) + 1, own_origin_fetched=own is not None)
        assert foreign.requests == []
        assert refused == tricks
        assert own is not None and own.startswith(b"\xff\xd8")
    finally:
        foreign.close()

