"""The Plex session reads the environment once (plex.client.plex_session) and still honours it.

Real plexapi against the Plex emulator, which also answers proxy-form
requests (``GET http://host/path``), so it can stand in for an HTTP proxy.
"""

import pytest
import requests

from common.errors import PlexUnavailable
from plex.client import connect, plex_session
from validation.config import PlexSyncConfig

DEVICE_ID = "0d6cbbd2-8a36-4c59-9c4e-5e0d1bb7d3a4"
UNRESOLVABLE = "http://plex.invalid:32400"  # .invalid never resolves (RFC 2606)
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "REQUEST_METHOD")


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_an_http_proxy_from_the_environment_is_used(clean_env, emu):
    clean_env.setenv("HTTP_PROXY", emu.url)
    config = PlexSyncConfig(plex_url=UNRESOLVABLE, plex_token=emu.token, connect_timeout=2)
    server = connect(config, DEVICE_ID)  # only reachable through the "proxy"
    assert server.friendlyName == emu.friendly_name
    assert not server._session.trust_env  # no per-request environment reads


def test_no_proxy_still_bypasses_the_proxy(clean_env, emu):
    clean_env.setenv("HTTP_PROXY", emu.url)
    clean_env.setenv("NO_PROXY", "plex.invalid")
    config = PlexSyncConfig(plex_url=UNRESOLVABLE, plex_token=emu.token, connect_timeout=2)
    with pytest.raises(PlexUnavailable):
        connect(config, DEVICE_ID)
    assert emu.requests == []


@pytest.mark.parametrize("env", [
    {},
    {"HTTPS_PROXY": "http://proxy.example:3128", "HTTP_PROXY": "http://proxy.example:3128"},
    {"HTTP_PROXY": "http://proxy.example:3128", "NO_PROXY": "10.0.0.0/8,plex.lan"},
    {"REQUESTS_CA_BUNDLE": "/etc/custom-ca.pem"},
    {"CURL_CA_BUNDLE": "/etc/curl-ca.pem"},
])
@pytest.mark.parametrize("url", ["http://10.1.2.3:32400", "https://plex.lan:32400", "https://plex.example.org"])
def test_pinned_settings_equal_what_requests_reads_per_request(clean_env, env, url):
    for name, value in env.items():
        clean_env.setenv(name, value)
    target = url + "/library/sections/1/all?type=1"
    expected = requests.Session().merge_environment_settings(target, {}, None, None, None)
    pinned = plex_session(url).merge_environment_settings(target, {}, None, None, None)
    assert dict(pinned["proxies"]) == dict(expected["proxies"])
    assert pinned["verify"] == expected["verify"]


# -- the Stash session (worker.stash.StashClient) is pinned the same way ------------

DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens, a proxied request fails at once


@pytest.fixture
def stash():
    from tests.emulators.stash import StashEmulator

    with StashEmulator(api_key="stash-api-key-123", require_auth=True) as emulator:
        yield emulator


def _stash_client(stash):
    from worker.stash import StashClient

    return StashClient(stash.server_connection(), timeout=5)


def test_stash_session_reads_the_environment_once_and_honours_no_proxy(clean_env, stash):
    clean_env.setenv("HTTP_PROXY", DEAD_PROXY)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    sid = stash.add_scene(title="pinned", files=["/data/a.mp4"])
    client = _stash_client(stash)
    assert client.scenes([sid])[sid]["title"] == "pinned"
    assert not client.stash.s.trust_env  # no per-request environment reads
    assert client.fetch_image(f"{stash.url}/scene/{sid}/screenshot")


def test_stash_session_still_uses_a_proxy_from_the_environment(clean_env, stash):
    from common.errors import StashUnavailable

    clean_env.setenv("HTTP_PROXY", DEAD_PROXY)
    with pytest.raises(StashUnavailable):
        _stash_client(stash).stash  # noqa: B018 - connecting goes through the (dead) proxy
    assert stash.documents == []


def test_stash_session_pins_what_it_read_at_connect(clean_env, stash):
    sid = stash.add_scene(title="pinned", files=["/data/a.mp4"])
    client = _stash_client(stash)
    assert client.scenes([sid])[sid]["title"] == "pinned"
    clean_env.setenv("HTTP_PROXY", DEAD_PROXY)  # read once: later changes do not apply
    assert client.scenes([sid])[sid]["title"] == "pinned"
