"""TLS failures are a configuration error with the fix, never an outage to retry.

Real plexapi and requests: once against the plain-http Plex emulator reached
with https://, once against a local TLS server with a self-signed certificate
(made with the openssl command line, skipped without it).
"""

import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from common.errors import ConfigError, PlexTLSError, PlexUnavailable
from plex.client import TLS_FIX, connect
from sync_queue.queue import JobQueue
from tests.e2e import env  # noqa: F401
from validation.config import PlexSyncConfig
from worker.breaker import CircuitBreaker


def https_config(url: str) -> PlexSyncConfig:
    return PlexSyncConfig(plex_url=url, plex_token="token-1234567890", connect_timeout=5)


@pytest.fixture
def self_signed(tmp_path):
    """An https server on 127.0.0.1 whose certificate nobody trusts; yields its URL."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=plex.example", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:  # the client aborts the handshake: that is the point
                    context.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    thread.join(5)


def test_an_untrusted_certificate_is_a_config_error_with_the_fix(self_signed):
    with pytest.raises(PlexTLSError) as info:
        connect(https_config(self_signed), "device")
    assert isinstance(info.value, ConfigError) and not isinstance(info.value, PlexUnavailable)
    assert "not trusted" in str(info.value) and TLS_FIX in str(info.value)


def test_https_to_a_plain_http_plex_is_a_config_error(env):  # noqa: F811
    url = env.plex.url.replace("http://", "https://")
    with pytest.raises(PlexTLSError, match="TLS handshake") as info:
        connect(https_config(url), "device")
    assert TLS_FIX in str(info.value)


def test_a_tls_failure_takes_the_config_error_path_not_the_retry_path(env):  # noqa: F811
    sid, rk = env.scene_with_item(1)
    env.settings(plex_url=env.plex.url.replace("http://", "https://"))
    env.hook(sid)
    env.settle()
    log = env.runner.worker_log()
    assert "Configuration error: connecting to Plex: the TLS handshake with Plex failed" in log
    assert "plex.direct" in log and "Plex is unreachable" not in log
    assert env.dlq() == [] and env.stats()["waiting_retry"] == 1  # kept for after the fix
    queue = JobQueue(str(env.runner.data_dir / "queue"))
    try:
        assert [job["attempts"] for job in queue.pending_jobs()] == [0]  # postponed: no retry used
    finally:
        queue.close()
    assert CircuitBreaker(env.runner.data_dir / "queue" / "data.db").status()["failures"] == 0
    assert env.plex.item(rk)["title"] == "scene_1"
