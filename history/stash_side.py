"""What the import reads from and writes to Stash.

``sceneAddPlay`` and ``sceneSaveActivity`` fire no plugin hook and leave the
scene's ``updated_at`` alone (stashapp/stash cf3489e:
internal/api/resolver_mutation_scene.go ``SceneAddPlay``/``SceneSaveActivity``
call ``AddViews``/``SaveActivity`` only, pkg/sqlite/history.go and
scene.go; no ``ExecutePostHooks``). So nothing here syncs back to Plex or
makes the scene look changed to PlexSync.

``sceneAddPlay`` with no times adds a play *now*, and does not
de-duplicate; it stores whole seconds (pkg/sqlite/table.go ``addDates``).
"""

from datetime import datetime, timezone
from typing import Dict, Iterable, Iterator, List, Set, Tuple

from common import defaults
from common.errors import StashUnavailable

ACTIVITY = ("query PlexSyncPlayActivity($ids: [ID!]) { findScenes(ids: $ids) {"
            " scenes { id play_history resume_time } } }")
ONE_ACTIVITY = "query PlexSyncPlayActivityOne($id: ID) { findScene(id: $id) { id play_history resume_time } }"
FILES = ("query PlexSyncSceneFiles($filter: FindFilterType) { findScenes(filter: $filter) {"
         " count scenes { id files { path } } } }")
ADD_PLAY = ("mutation PlexSyncAddPlay($id: ID!, $times: [Timestamp!]) {"
            " sceneAddPlay(id: $id, times: $times) { count } }")
SAVE_RESUME = ("mutation PlexSyncSaveResume($id: ID!, $resume_time: Float) {"
               " sceneSaveActivity(id: $id, resume_time: $resume_time) }")


def scene_files(stash) -> Iterator[Tuple[int, List[str]]]:
    """(scene id, file paths) of every scene, a page of 250 at a time."""
    page, seen = 1, 0
    while True:
        result = stash.graphql(FILES, {"filter": {"page": page, "per_page": defaults.STASH_PAGE_SIZE, "sort": "id",
                                                  "direction": "ASC"}})
        found = result.get("findScenes") or {}
        scenes = found.get("scenes") or []
        for scene in scenes:
            yield int(scene["id"]), [f["path"] for f in scene.get("files") or [] if f.get("path")]
        seen += len(scenes)
        if not scenes or seen >= int(found.get("count") or 0):
            return
        page += 1


def activity(stash, scene_ids: Iterable[int]) -> Dict[int, Tuple[Set[int], float]]:
    """Scene id -> (play times in epoch seconds, resume_time); deleted scenes are absent.

    ``findScenes(ids:)`` fails as a whole when one id is gone; then one by one.
    """
    ids = sorted(set(scene_ids))
    out: Dict[int, Tuple[Set[int], float]] = {}
    for start in range(0, len(ids), defaults.STASH_PAGE_SIZE):
        chunk = ids[start:start + defaults.STASH_PAGE_SIZE]
        try:
            scenes = (stash.graphql(ACTIVITY, {"ids": [str(i) for i in chunk]}).get("findScenes") or {}).get("scenes")
        except StashUnavailable:  # one id is gone, or Stash is: findScene tells which
            scenes = [stash.graphql(ONE_ACTIVITY, {"id": str(i)}).get("findScene") for i in chunk]
        for scene in scenes or []:
            if scene:
                times = {_epoch(t) for t in scene.get("play_history") or []}
                out[int(scene["id"])] = (times, float(scene.get("resume_time") or 0.0))
    return out


def add_plays(stash, scene_id: int, times: List[int]) -> None:
    if times:  # no times would add a play "now"
        stash.graphql(ADD_PLAY, {"id": str(scene_id), "times": [_rfc3339(t) for t in sorted(times)]})


def save_resume(stash, scene_id: int, seconds: float) -> None:
    stash.graphql(SAVE_RESUME, {"id": str(scene_id), "resume_time": float(seconds)})


def _epoch(value: str) -> int:
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
