"""Self-tests of the Stash stand-in, driven by the REAL, unmodified stashapi
(stashapp-tools 0.2.59) and plain requests, the way PlexSync talks to Stash."""

import re
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.emulators.stash import DEFAULT_SCHEMA_DIR, PLACEHOLDER_SVG, StashEmulator, validate_documents  # noqa: E402
from stashapi.stashapp import StashInterface  # noqa: E402

FRAGMENT = ("id title details date rating100 urls organized updated_at studio{name} "
            "performers{name} tags{name} files{path basename} paths{screenshot}")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
REAL_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "stash-schema"
needs_real_schema = pytest.mark.skipif(not (REAL_SCHEMA_DIR / "schema.graphql").is_file(),
                                       reason=f"Stash's schema is not available at {REAL_SCHEMA_DIR}")


@pytest.fixture
def emu():
    with StashEmulator() as emulator:
        yield emulator


@pytest.fixture
def secured():
    with StashEmulator(api_key="secret-key", require_auth=True) as emulator:
        yield emulator


def connect(emulator, *, cookie=None, api_key=None):
    conn = {"scheme": "http", "host": emulator.host, "port": emulator.port}
    if cookie is not None:
        conn["SessionCookie"] = {"Name": "session", "Value": cookie}
    if api_key is not None:
        conn["ApiKey"] = api_key
    return StashInterface(conn)


def gql(emulator, query, variables=None, **kwargs):
    payload = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return requests.post(emulator.url + "/graphql", json=payload, timeout=10, **kwargs)


# ---------------------------------------------------------------- connection

def test_constructs_with_session_cookie_like_a_plugin(emu):
    cookie = emu.new_session_cookie()
    stash = connect(emu, cookie=cookie)
    assert str(stash.version).startswith("v0.30.1")
    queries = [d["query"] for d in emu.documents]
    assert any("version" in q and "build_time" in q for q in queries)
    assert any("getApiKey" in q for q in queries)
    assert any("__schema" in q for q in queries)
    assert "Scene" in stash.fragments and "VideoFile" in stash.fragments
    assert all(f"session={cookie}" in headers.get("Cookie", "") for _, _, headers in emu.requests)


def test_constructs_with_api_key_when_auth_is_required(secured):
    stash = connect(secured, api_key="secret-key")
    apikey = stash.call_GQL("query getApiKey{ configuration { general { apiKey } } }")
    assert apikey["configuration"]["general"]["apiKey"] == "secret-key"
    assert all(headers.get("ApiKey") == "secret-key" for _, _, headers in secured.requests)


def test_constructs_with_session_cookie_when_auth_is_required(secured):
    stash = connect(secured, cookie=secured.new_session_cookie())
    assert stash.find_plugin_config("PlexSync") == {}


def test_api_key_is_empty_string_when_none_is_configured(emu):
    stash = connect(emu)
    result = stash.call_GQL("query { configuration { general { apiKey } } }")
    assert result["configuration"]["general"]["apiKey"] == ""


# ------------------------------------------------------------ plugin settings

def test_plugin_config_is_empty_until_set_then_typed_like_stash(emu):
    stash = connect(emu, cookie=emu.new_session_cookie())
    assert stash.find_plugin_config("PlexSync") == {}
    emu.set_plugin_settings("PlexSync", {"plexHost": "http://plex:32400", "enabled": True, "batchSize": 50,
                                         "ratio": 0.5})
    emu.set_plugin_settings("Other", {"x": "y"})
    emu.set_plugin_settings("Blank", {})
    config = stash.find_plugin_config("PlexSync")
    assert config == {"plexHost": "http://plex:32400", "enabled": True, "batchSize": 50, "ratio": 0.5}
    assert type(config["enabled"]) is bool and type(config["batchSize"]) is int
    assert "plexToken" not in config                          # never set -> absent, no defaults
    both = stash.find_plugins_config(["PlexSync", "Blank", "Missing"])
    assert set(both) == {"PlexSync"}                          # include: only non-empty configs
    everything = stash.call_GQL("query { configuration { plugins } }")["configuration"]["plugins"]
    assert set(everything) == {"PlexSync", "Other", "Blank"}  # no include: all


def test_configure_plugin_mutation_replaces_the_map(emu):
    stash = connect(emu)
    emu.set_plugin_settings("PlexSync", {"a": 1})
    assert stash.configure_plugin("PlexSync", {"b": "two"}) == {"a": 1, "b": "two"}   # stashapi merges
    stash.call_GQL("mutation($p: ID!, $i: Map!){ configurePlugin(plugin_id: $p, input: $i) }",
                   {"p": "PlexSync", "i": {"c": False}})
    assert emu.plugin_settings("PlexSync") == {"c": False}


def test_configure_plugin_rewrites_config_yml_in_the_config_dir(emu, tmp_path):
    emu.config_dir = str(tmp_path)
    connect(emu).configure_plugin("PlexSync", {"enabled": False})
    first = (tmp_path / "config.yml").stat()
    assert '"enabled": false' in (tmp_path / "config.yml").read_text()
    connect(emu).configure_plugin("PlexSync", {"enabled": True})
    again = (tmp_path / "config.yml").stat()
    assert (again.st_mtime_ns, again.st_size) != (first.st_mtime_ns, first.st_size)


# ---------------------------------------------------------------- findScene

def test_find_scene_with_the_project_fragment(emu):
    sid = emu.add_scene(title="Beach Day", details="Long\ntext", date="2024-05-06", rating100=80,
                        urls=["https://example.org/a"], organized=True, studio="Acme",
                        performers=["Ann", "Bo"], tags=["outdoor", "sun"],
                        files=["/media/videos/beach day.mp4", r"C:\vids\copy.mkv"])
    stash = connect(emu, cookie=emu.new_session_cookie())
    scene = stash.find_scene(sid, fragment=FRAGMENT)
    stored = emu.scene(sid)
    assert scene["id"] == str(sid)
    assert (scene["title"], scene["details"], scene["date"], scene["rating100"]) == \
        ("Beach Day", "Long\ntext", "2024-05-06", 80)
    assert scene["urls"] == ["https://example.org/a"] and scene["organized"] is True
    assert scene["studio"] == {"name": "Acme"}
    assert scene["performers"] == [{"name": "Ann"}, {"name": "Bo"}]
    assert scene["tags"] == [{"name": "outdoor"}, {"name": "sun"}]
    assert scene["files"] == [{"path": "/media/videos/beach day.mp4", "basename": "beach day.mp4"},
                              {"path": r"C:\vids\copy.mkv", "basename": "copy.mkv"}]
    assert RFC3339.match(scene["updated_at"]) and scene["updated_at"] == stored["updated_at"]
    unix = int(datetime.fromisoformat(scene["updated_at"]).timestamp())
    assert scene["paths"]["screenshot"] == f"http://{emu.host}:{emu.port}/scene/{sid}/screenshot?t={unix}"


def test_find_scene_unset_fields_and_unknown_id(emu):
    sid = emu.add_scene()
    stash = connect(emu)
    scene = stash.find_scene(sid, fragment=FRAGMENT)
    assert scene["title"] == "" and scene["details"] == ""        # Go strings: "" not null
    assert scene["date"] is None and scene["rating100"] is None and scene["studio"] is None
    assert scene["performers"] == [] and scene["files"] == [] and scene["urls"] == []
    assert stash.find_scene(sid + 100, fragment=FRAGMENT) is None


def test_find_scene_with_stashapis_default_fragment(emu):
    sid = emu.add_scene(title="x", tags=["t"], files=["/a/b.mp4"], studio="S")
    scene = connect(emu).find_scene(sid)
    assert scene["tags"][0]["name"] == "t" and scene["studio"] == {"id": "1"}
    assert scene["files"][0]["basename"] == "b.mp4" and scene["files"][0]["size"] > 0
    assert scene["paths"]["preview"].endswith(f"/scene/{sid}/preview")


def test_screenshot_url_uses_the_host_header(emu):
    sid = emu.add_scene()
    result = gql(emu, "query($id: ID){ findScene(id: $id){ paths { screenshot stream } } }", {"id": sid},
                 headers={"Host": "stash.lan:9999"}).json()
    assert result["data"]["findScene"]["paths"]["screenshot"].startswith(f"http://stash.lan:9999/scene/{sid}/screenshot?t=")


# ---------------------------------------------------------------- findScenes

def _add_timeline(emu):
    """Eight scenes; scenes 4-6 share one updated_at and tie-break on title (NATURAL_CI)."""
    stamps = ["2024-01-01T10:00:01+02:00", "2024-01-01T10:00:02+02:00", "2024-01-01T10:00:03+02:00",
              "2024-01-01T10:00:04+02:00", "2024-01-01T10:00:04+02:00", "2024-01-01T10:00:04+02:00",
              "2024-01-01T10:00:05+02:00", "2024-01-01T10:00:06+02:00"]
    titles = ["a", "b", "c", "item 10", "Item 9", "item 2", "g", "h"]
    return [emu.add_scene(title=t, updated_at=s) for t, s in zip(titles, stamps)]


def test_find_scenes_pages_by_updated_at(emu):
    ids = _add_timeline(emu)
    stash = connect(emu, cookie=emu.new_session_cookie())
    seen, counts = [], set()
    for page in range(1, 5):
        count, scenes = stash.find_scenes(
            f={"updated_at": {"value": "2024-01-01T10:00:01+02:00", "modifier": "GREATER_THAN"}},
            filter={"page": page, "per_page": 2, "sort": "updated_at", "direction": "ASC"},
            fragment=FRAGMENT, get_count=True)
        counts.add(count)
        assert len(scenes) == (2 if page < 4 else 1)
        seen += [int(s["id"]) for s in scenes]
    assert counts == {7}
    # 10:00:04 ties ordered by title, naturally and case-insensitively: item 2, Item 9, item 10
    assert seen == [ids[1], ids[2], ids[5], ids[4], ids[3], ids[6], ids[7]]
    _, beyond = stash.find_scenes(f={}, filter={"page": 9, "per_page": 2, "sort": "updated_at"},
                                  fragment="id", get_count=True)
    assert beyond == []


def test_find_scenes_desc_keeps_title_tiebreak_ascending(emu):
    ids = _add_timeline(emu)
    scenes = connect(emu).find_scenes(filter={"per_page": -1, "sort": "updated_at", "direction": "DESC"},
                                      fragment="id")
    assert [int(s["id"]) for s in scenes] == [ids[7], ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]]


@pytest.mark.parametrize("criterion,expected", [
    ({"value": "2024-01-01T10:00:03+02:00", "modifier": "LESS_THAN"}, [0, 1]),
    ({"value": "2024-01-01T10:00:04+02:00", "modifier": "EQUALS"}, [3, 4, 5]),
    ({"value": "2024-01-01T10:00:02+02:00", "value2": "2024-01-01T10:00:03+02:00", "modifier": "BETWEEN"}, [1, 2]),
    ({"value": "2024-01-01T10:00:05+02:00", "modifier": "GREATER_THAN"}, [7]),
    ({"value": "2024-01-01", "modifier": "GREATER_THAN"}, [0, 1, 2, 3, 4, 5, 6, 7]),
])
def test_updated_at_criterion_modifiers(emu, criterion, expected):
    ids = _add_timeline(emu)
    scenes = connect(emu).find_scenes(f={"updated_at": criterion}, filter={"per_page": -1, "sort": "id"},
                                      fragment="id")
    assert [int(s["id"]) for s in scenes] == [ids[i] for i in expected]


def test_updated_at_is_compared_as_text_like_stash_does(emu):
    """Same instant, other notation: Stash's SQLite compares strings, so 'Z' misleads."""
    _add_timeline(emu)
    stash = connect(emu)
    same_instant_utc = "2024-01-01T08:00:05Z"   # == 10:00:05+02:00
    scenes = stash.find_scenes(f={"updated_at": {"value": same_instant_utc, "modifier": "GREATER_THAN"}},
                               filter={"per_page": -1}, fragment="id")
    assert len(scenes) == 8


def test_update_scene_bumps_updated_at_strictly(emu):
    sid = emu.add_scene(title="t")
    other = emu.add_scene(title="u")
    first = emu.scene(sid)["updated_at"]
    stamps = [first]
    for n in range(4):
        emu.update_scene(sid if n % 2 else other, title=f"t{n}")
        stamps.append(max(emu.scene(sid)["updated_at"], emu.scene(other)["updated_at"]))
    assert all(RFC3339.match(s) and s.endswith("+02:00") for s in stamps)
    instants = [datetime.fromisoformat(s) for s in stamps]
    assert all(a < b for a, b in zip(instants, instants[1:]))
    stash = connect(emu)
    newer = stash.find_scenes(f={"updated_at": {"value": first, "modifier": "GREATER_THAN"}},
                              filter={"per_page": -1}, fragment="id title")
    assert {s["id"] for s in newer} == {str(sid), str(other)}
    emu.delete_scene(other)
    assert stash.find_scene(other, fragment="id") is None


def test_find_scenes_by_scene_ids_and_ids(emu):
    ids = [emu.add_scene(title=f"s{i}") for i in range(5)]
    stash = connect(emu)
    query = ("query($filter: FindFilterType, $scene_ids: [Int!], $ids: [ID!]){ findScenes(filter: $filter, "
             "scene_ids: $scene_ids, ids: $ids){ count scenes { id } } }")
    result = stash.call_GQL(query, {"scene_ids": [ids[3], ids[0]], "filter": {"per_page": 1, "page": 2}})
    assert result["findScenes"] == {"count": 2, "scenes": [{"id": str(ids[3])}, {"id": str(ids[0])}]}
    result = stash.call_GQL(query, {"ids": [str(ids[4])], "scene_ids": [ids[1]]})
    assert result["findScenes"]["scenes"] == [{"id": str(ids[4])}]
    response = gql(emu, query, {"ids": ["999"]}).json()
    assert response["data"] is None and "scene with id 999 not found" in response["errors"][0]["message"]


def test_find_scenes_search_sort_and_per_page_defaults(emu):
    for title in ("Scene 10", "scene 9", "Other", "Scene 1"):
        emu.add_scene(title=title, files=[f"/m/{title}.mp4"])
    stash = connect(emu)
    count, scenes = stash.find_scenes(q="scene", filter={"per_page": -1, "sort": "title"},
                                      fragment="title", get_count=True)
    assert count == 3 and [s["title"] for s in scenes] == ["Scene 1", "scene 9", "Scene 10"]
    for i in range(30):
        emu.add_scene()
    result = stash.call_GQL("query{ findScenes{ count scenes { id } } }")
    assert result["findScenes"]["count"] == 34 and len(result["findScenes"]["scenes"]) == 25
    assert [s["id"] for s in result["findScenes"]["scenes"][:3]] == ["1", "2", "3"]   # no sort: by id
    bad = gql(emu, "query{ findScenes(filter: {sort: \"bogus\"}){ count } }").json()
    assert bad["data"] is None and "invalid sort: bogus" in bad["errors"][0]["message"]


def test_scene_filter_other_criteria(emu):
    a = emu.add_scene(title="alpha", rating100=90, organized=True, date="2023-02", files=["/x/a.mp4"])
    b = emu.add_scene(title="beta", rating100=40, date="2024-01-01", files=["/y/b.mp4"])
    c = emu.add_scene(title="", details="gamma")
    stash = connect(emu)

    def ids(f):
        return [int(s["id"]) for s in stash.find_scenes(f=f, filter={"per_page": -1, "sort": "id"}, fragment="id")]

    assert ids({"rating100": {"value": 50, "modifier": "GREATER_THAN"}}) == [a]
    assert ids({"organized": True}) == [a]
    assert ids({"title": {"value": "", "modifier": "IS_NULL"}}) == [c]
    assert ids({"path": {"value": "/y/", "modifier": "INCLUDES"}}) == [b]
    assert ids({"date": {"value": "2023-06-01", "modifier": "GREATER_THAN"}}) == [b]
    assert ids({"id": {"value": a, "value2": b, "modifier": "BETWEEN"}}) == [a, b]
    assert ids({"organized": False, "OR": {"rating100": {"value": 90, "modifier": "EQUALS"}}}) == [a, b, c]
    assert ids({"NOT": {"title": {"value": "a", "modifier": "INCLUDES"}}}) == [c]


def test_find_scenes_pages_over_100k_scenes():
    # Its speed at this size is a benchmark figure (bench/bulk_sync.py --scenes 100000), not asserted here.
    with StashEmulator() as emulator:
        for i in range(100_000):
            emulator.add_scene(title=f"Scene {i}", studio=f"Studio {i % 50}", performers=[f"P{i % 300}"],
                               tags=["a", "b"], files=[f"/media/{i}.mp4"])
        emulator.update_scene(50_000, title="changed")
        stash = connect(emulator)
        for page in (1, 2, 100):
            count, scenes = stash.find_scenes(
                f={"updated_at": {"value": "2000-01-01T00:00:00+02:00", "modifier": "GREATER_THAN"}},
                filter={"page": page, "per_page": 1000, "sort": "updated_at", "direction": "ASC"},
                fragment=FRAGMENT, get_count=True)
            assert count == 100_000 and len(scenes) == 1000
        assert scenes[-1]["id"] == "50000"   # the updated scene sorts last


# ---------------------------------------------------------------- auth

def test_graphql_auth_paths(secured):
    query = "query{ version { version } }"
    assert gql(secured, query).status_code == 401                                    # no credentials
    assert gql(secured, query, headers={"ApiKey": "wrong"}).status_code == 401       # wrong key
    cookie = secured.new_session_cookie()
    assert gql(secured, query, cookies={"session": cookie}).status_code == 200
    assert gql(secured, query, cookies={"session": cookie}, headers={"ApiKey": "wrong"}).status_code == 401
    assert requests.post(secured.url + "/graphql?apikey=secret-key", json={"query": query}).status_code == 200
    assert gql(secured, query, cookies={"session": "forged"}).status_code == 401


def test_wrong_api_key_is_rejected_even_without_credentials(emu):
    assert gql(emu, "query{ version { version } }").status_code == 200
    assert gql(emu, "query{ version { version } }", headers={"ApiKey": "nope"}).status_code == 401


def test_expired_session_cookie(secured):
    cookie = secured.new_session_cookie()
    stash = connect(secured, cookie=cookie)
    assert stash.find_plugin_config("PlexSync") == {}
    secured.expire_sessions()
    with pytest.raises(Exception):
        stash.find_plugin_config("PlexSync")
    assert gql(secured, "query{ version { version } }", cookies={"session": cookie}).status_code == 401
    fresh = secured.new_session_cookie()
    assert gql(secured, "query{ version { version } }", cookies={"session": fresh}).status_code == 200


def test_constructor_fails_without_credentials(secured):
    with pytest.raises(Exception):
        connect(secured)


def test_unauthenticated_screenshot_redirects_to_login(secured):
    sid = secured.add_scene(screenshot=b"\xff\xd8jpeg-bytes\xff\xd9")
    path = f"/scene/{sid}/screenshot?t=123"
    raw = requests.get(secured.url + path, allow_redirects=False)
    assert raw.status_code == 302
    assert raw.headers["Location"] == "/login?returnURL=%2Fscene%2F1%2Fscreenshot%3Ft%3D123"
    followed = requests.get(secured.url + path)
    assert followed.status_code == 200 and followed.headers["Content-Type"].startswith("text/html")
    assert b"<html" in followed.content
    authed = requests.get(secured.url + path, cookies={"session": secured.new_session_cookie()})
    assert authed.status_code == 200 and authed.content == b"\xff\xd8jpeg-bytes\xff\xd9"
    by_key = requests.get(secured.url + path, headers={"ApiKey": "secret-key"})
    assert by_key.headers["Content-Type"] == "image/jpeg"
    assert requests.get(secured.url + path, headers={"ApiKey": "bad"}).status_code == 401


# ---------------------------------------------------------------- screenshots

def test_screenshot_bytes_placeholder_and_404(emu):
    png = b"\x89PNG\r\n\x1a\nfake"
    with_png = emu.add_scene(screenshot=png, screenshot_type="image/png")
    default = emu.add_scene()
    without = emu.add_scene(screenshot=None)
    got = requests.get(f"{emu.url}/scene/{with_png}/screenshot")
    assert got.status_code == 200 and got.headers["Content-Type"] == "image/png" and got.content == png
    jpeg = requests.get(f"{emu.url}/scene/{default}/screenshot")
    assert jpeg.headers["Content-Type"] == "image/jpeg"
    assert jpeg.content[:2] == b"\xff\xd8" and jpeg.content[-2:] == b"\xff\xd9"
    assert jpeg.content != requests.get(f"{emu.url}/scene/{with_png}/screenshot").content
    svg = requests.get(f"{emu.url}/scene/{without}/screenshot")
    assert svg.status_code == 200 and svg.headers["Content-Type"] == "image/svg+xml"
    assert svg.content == PLACEHOLDER_SVG
    assert requests.get(f"{emu.url}/scene/999/screenshot").status_code == 404
    emu.update_scene(without, screenshot=b"new", screenshot_type="image/webp")
    assert requests.get(f"{emu.url}/scene/{without}/screenshot").content == b"new"


# ---------------------------------------------------------------- recording and validation

def test_documents_and_requests_are_recorded(emu):
    sid = emu.add_scene()
    stash = connect(emu, cookie=emu.new_session_cookie())
    emu.documents.clear()
    emu.requests.clear()
    stash.find_scene(sid, fragment="id")
    assert len(emu.documents) == 1
    assert "findScene" in emu.documents[0]["query"] and emu.documents[0]["variables"] == {"scene_id": sid}
    method, path, headers = emu.requests[0]
    assert (method, path) == ("POST", "/graphql") and "Cookie" in headers


def test_concurrent_requests_are_all_recorded(emu):
    emu.add_scene()
    errors = []

    def worker():
        session = requests.Session()
        for _ in range(10):
            r = session.post(emu.url + "/graphql", json={"query": "query{ findScenes{ count } }"})
            if r.status_code != 200:
                errors.append(r.status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(emu.documents) == 80 and len(emu.requests) == 80


def test_invalid_documents_answer_422_like_gqlgen(emu):
    bogus = gql(emu, "query{ findScenes{ count nonsense } }")
    assert bogus.status_code == 422
    assert bogus.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    broken = gql(emu, "query{ findScenes{ ")
    assert broken.status_code == 422 and broken.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert requests.post(emu.url + "/graphql", data=b"not json").status_code == 400
    assert len(emu.documents) == 2


@needs_real_schema
def test_recorded_stashapi_documents_validate_against_real_stash_schema(emu):
    emu.add_scene(title="x", files=["/a.mp4"])
    stash = connect(emu, cookie=emu.new_session_cookie())
    stash.find_scene(1, fragment=FRAGMENT)
    stash.find_scene(1)
    stash.find_plugin_config("PlexSync")
    stash.find_scenes(f={"updated_at": {"value": "2024-01-01T00:00:00+02:00", "modifier": "GREATER_THAN"}},
                      filter={"page": 1, "per_page": 2, "sort": "updated_at", "direction": "ASC"},
                      fragment=FRAGMENT, get_count=True)
    assert len(emu.documents) >= 7
    assert validate_documents(emu.documents, REAL_SCHEMA_DIR) == []
    assert DEFAULT_SCHEMA_DIR == REAL_SCHEMA_DIR


@needs_real_schema
def test_validate_documents_reports_problems():
    good = {"query": "query($id: ID){ findScene(id: $id){ id title } }", "variables": {"id": 1}}
    bogus_field = {"query": "query{ findScene(id: 1){ id plexRating } }"}
    bad_variable = {"query": "query($f: SceneFilterType){ findScenes(scene_filter: $f){ count } }",
                    "variables": {"f": {"updated_at": {"value": "x", "modifier": "AFTER"}}}}
    not_graphql = {"query": "findScene"}
    assert validate_documents([good], REAL_SCHEMA_DIR) == []
    problems = validate_documents([good, bogus_field, bad_variable, not_graphql], REAL_SCHEMA_DIR)
    assert len(problems) == 3
    assert "document #1" in problems[0] and "plexRating" in problems[0]
    assert "document #2" in problems[1] and "AFTER" in problems[1]
    assert "document #3" in problems[2] and "Syntax Error" in problems[2]


# ---------------------------------------------------------------- faults and latency

def test_status_fault_for_n_requests(emu):
    emu.fault(status=502, times=2, path_prefix="/graphql")
    statuses = [gql(emu, "query{ version { version } }").status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    emu.add_scene()
    emu.fault(status=503, path_prefix="/scene/")
    assert gql(emu, "query{ version { version } }").status_code == 200
    assert requests.get(emu.url + "/scene/1/screenshot").status_code == 503
    emu.clear_faults()
    assert requests.get(emu.url + "/scene/1/screenshot").status_code == 200


def test_stashapi_raises_on_fault(emu):
    stash = connect(emu)
    emu.fault(status=502, times=1)
    with pytest.raises(Exception):
        stash.find_plugin_config("PlexSync")
    assert stash.find_plugin_config("PlexSync") == {}


def test_down_refuses_connections_until_cleared(emu):
    session = requests.Session()
    assert session.post(emu.graphql_url, json={"query": "{ version { version } }"}).status_code == 200
    port = emu.port
    emu.fault(down=True)
    with pytest.raises(requests.ConnectionError):
        requests.post(emu.graphql_url, json={"query": "{ version { version } }"}, timeout=2)
    with pytest.raises(requests.ConnectionError):
        session.post(emu.graphql_url, json={"query": "{ version { version } }"}, timeout=2)  # kept-alive too
    emu.clear_faults()
    assert emu.port == port
    assert session.post(emu.graphql_url, json={"query": "{ version { version } }"}).status_code == 200


def test_latency(emu):
    emu.latency = 0.2
    started = time.perf_counter()
    assert gql(emu, "{ version { version } }").status_code == 200
    assert time.perf_counter() - started >= 0.2
