"""Scenes and Plex snapshots for tests of the writer's planning, without a server."""

from plex.writer import FIELD_MAP
from validation.scene import SceneData


def make_scene(file: str, **fields) -> SceneData:
    return SceneData(id=1, files=[file], **fields)


def make_snapshot(file: str, **values) -> dict:
    """A snapshot as ``writer.snapshot`` returns it: every mapped field empty unless given."""
    base = {f.plex: None for f in FIELD_MAP}
    base.update(files=[file], locked=set())
    base.update(values)
    return base
