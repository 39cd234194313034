"""Config validation (pure): defaults, ranges and readable errors."""

import pytest

from common.errors import ConfigError
from validation.config import PlexSyncConfig, load_config

GOOD = {"plex_url": "http://plex:32400/", "plex_token": "abcdefghij12"}


def test_defaults_for_absent_keys():
    cfg = load_config(GOOD)
    assert cfg.plex_url == "http://plex:32400"
    assert (cfg.enabled, cfg.max_retries, cfg.poll_interval, cfg.strict_matching, cfg.preserve_plex_edits,
            cfg.connect_timeout, cfg.read_timeout, cfg.dlq_retention_days, cfg.strict_mode) == (
        True, 5, 30.0, True, False, 5.0, 30.0, 30, False)
    assert cfg.timeouts == (5.0, 30.0)


@pytest.mark.parametrize("key,value,message", [
    ("plex_url", "plex:32400", "plex_url: plex_url must start with http:// or https://"),
    ("plex_token", "short", "plex_token: String should have at least 10 characters"),
    ("max_retries", -1, "max_retries"), ("max_retries", 21, "max_retries"),
    ("poll_interval", 0.05, "poll_interval"), ("poll_interval", 61, "poll_interval"),
    ("connect_timeout", 0.5, "connect_timeout"), ("connect_timeout", 31, "connect_timeout"),
    ("read_timeout", 4, "read_timeout"), ("read_timeout", 121, "read_timeout"),
    ("dlq_retention_days", 0, "dlq_retention_days"), ("dlq_retention_days", 366, "dlq_retention_days"),
    ("path_map", "/a/b", "path_map"),
])
def test_rules(key, value, message):
    with pytest.raises(ConfigError) as info:
        load_config({**GOOD, key: value})
    assert message in str(info.value)


def test_error_never_echoes_the_token():
    with pytest.raises(ConfigError) as info:
        load_config({"plex_url": "ftp://x", "plex_token": "secret-token-value"})
    assert "secret-token-value" not in str(info.value)


def test_empty_strings_take_defaults_and_required_fields_reported():
    cfg = load_config({**GOOD, "plex_library": "", "max_retries": ""})
    assert cfg.max_retries == 5
    with pytest.raises(ConfigError) as info:
        load_config({})
    assert "plex_url" in str(info.value) and "plex_token" in str(info.value)


def test_libraries_and_path_map_parse():
    cfg = load_config({**GOOD, "plex_library": " Stash , Other ", "path_map": "/data=>/media; /x=>/y"})
    assert cfg.libraries == ["Stash", "Other"]
    assert [(m.stash, m.plex) for m in cfg.path_mappings] == [("/data", "/media"), ("/x", "/y")]


def test_ui_settings_are_model_fields():
    from validation.config import UI_SETTINGS

    assert set(UI_SETTINGS) <= set(PlexSyncConfig.model_fields)
