"""The Stash emulator's studio parents, groups and images, through the real stashapi
(see _StudiosGroupsMixin), with the fragment PlexSync sends."""

import pytest
import requests
from stashapi.stashapp import StashInterface

from tests.emulators.stash import DEFAULT_SCHEMA_DIR, PLACEHOLDER_SVG, StashEmulator, tiny_jpeg, validate_documents
from validation.scene import SCENE_FRAGMENT, scene_from_stash

IMAGE = tiny_jpeg(b"studio image")


@pytest.fixture
def emu():
    with StashEmulator(api_key="secret-key", require_auth=True) as e:
        yield e


def connect(emu):
    return StashInterface({"scheme": "http", "host": emu.host, "port": emu.port, "ApiKey": "secret-key"})


def test_studio_parents_groups_and_images_in_one_scene_query(emu):
    emu.set_studio("Network", details="Net")
    emu.set_studio("Site", parent="Network", details="The site", image=IMAGE)
    emu.set_group("Series", synopsis="A series", front_image=tiny_jpeg(b"front"))
    emu.set_group("Bare")
    sid = emu.add_scene(title="x", studio="Site", groups=["Series", "Bare"], files=["/data/a.mp4"])
    raw = connect(emu).find_scene(sid, fragment=SCENE_FRAGMENT)
    site = raw["studio"]
    assert (site["name"], site["details"], site["parent_studio"]["name"]) == ("Site", "The site", "Network")
    assert "default=true" not in site["image_path"] and "default=true" in site["parent_studio"]["image_path"]
    assert site["parent_studio"]["parent_studio"] is None
    groups = [g["group"] for g in raw["groups"]]
    assert [(g["name"], g["synopsis"]) for g in groups] == [("Series", "A series"), ("Bare", None)]
    assert "default=true" not in groups[0]["front_image_path"] and "default=true" in groups[1]["front_image_path"]
    scene = scene_from_stash(raw)
    assert [s.name for s in scene.studios] == ["Site", "Network"]
    assert scene.studios[1].image_url is None and scene.groups[1].image_url is None
    if (DEFAULT_SCHEMA_DIR / "schema.graphql").is_file():  # Stash's real schema, when ../shared is there
        assert validate_documents(emu.documents, DEFAULT_SCHEMA_DIR) == []


def test_images_need_credentials_and_change_url_with_the_image(emu):
    emu.set_studio("Site", image=IMAGE)
    emu.add_scene(title="x", studio="Site", performers=["Jane"])
    stash = connect(emu)
    url = stash.find_scenes(fragment="studio { image_path } performers { image_path }")[0]["studio"]["image_path"]
    anonymous = requests.get(url, allow_redirects=False, timeout=5)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert stash.s.get(url, timeout=5).content == IMAGE
    emu.set_studio("Site", image=tiny_jpeg(b"new"))
    new_url = stash.find_scenes(fragment="studio { image_path }")[0]["studio"]["image_path"]
    assert new_url != url and stash.s.get(new_url, timeout=5).content == tiny_jpeg(b"new")


def test_performer_and_group_images(emu):
    emu.set_performer_image("Jane", tiny_jpeg(b"jane"))
    emu.set_group("G")
    emu.add_scene(title="x", performers=["Jane", "Joe"], groups=["G"])
    stash = connect(emu)
    raw = stash.find_scenes(fragment="performers { image_path } groups { group { front_image_path } }")[0]
    jane, joe = (p["image_path"] for p in raw["performers"])
    assert stash.s.get(jane, timeout=5).content == tiny_jpeg(b"jane")
    assert "default=true" in joe and stash.s.get(joe, timeout=5).content == PLACEHOLDER_SVG
    front = raw["groups"][0]["group"]["front_image_path"]
    assert stash.s.get(front, timeout=5).content == PLACEHOLDER_SVG
