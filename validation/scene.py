"""Scene metadata from Stash, validated and sanitized before it goes to Plex.

The worker fetches scenes with SCENE_FRAGMENT, turns each into a SceneData
(the "snapshot" stored on the job so a retry needs no second fetch), and the
Plex writer maps SceneData fields onto Plex fields.
"""

import re
import unicodedata
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from common.errors import InvalidSceneData

# What one sync needs, and nothing else (stashapi's default fragment lacks
# studio/performer names and is ~100x larger).
SCENE_FRAGMENT = (
    "id title details date rating100 organized updated_at "
    "studio { name } performers { name } tags { name } "
    "files { path basename } paths { screenshot }"
)

MAX_TITLE = 255
MAX_SUMMARY = 10_000
MAX_NAME = 255
MAX_TAGS = 500

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


class SceneData(BaseModel):
    """A scene as PlexSync syncs it. Empty values mean "leave Plex alone"."""

    model_config = ConfigDict(frozen=True)

    id: int
    title: Optional[str] = None
    details: Optional[str] = None
    date: Optional[str] = None  # always YYYY-MM-DD once validated
    studio: Optional[str] = None
    performers: List[str] = []
    tags: List[str] = []
    rating: Optional[float] = None  # Plex userRating, 0-10
    files: List[str] = []
    screenshot_url: Optional[str] = None
    updated_at: Optional[str] = None


def clean_text(value: Any, limit: int, *, multiline: bool = False, strict: bool = False, field: str = "") -> Optional[str]:
    """Normalize text; drop control characters; enforce ``limit``.

    In strict mode a value that would need changing is rejected instead.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    text = unicodedata.normalize("NFC", value)
    if not multiline:
        text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    else:
        text = text.replace("\r\n", "\n")
    cleaned = _CONTROL.sub("", text).strip()
    if len(cleaned) > limit:
        if strict:
            raise InvalidSceneData(f"{field} is {len(cleaned)} characters long (limit {limit})")
        cleaned = cleaned[:limit].rstrip()
    if strict and cleaned != value.strip() and _CONTROL.search(value):
        raise InvalidSceneData(f"{field} contains control characters")
    return cleaned or None


def normalize_date(value: Any, *, strict: bool = False) -> Optional[str]:
    """Stash dates may be YYYY, YYYY-MM or YYYY-MM-DD; Plex wants a full date."""
    if not value:
        return None
    match = _DATE.match(str(value).strip())
    if not match:
        if strict:
            raise InvalidSceneData(f"date {str(value)[:40]!r} is not YYYY, YYYY-MM or YYYY-MM-DD")
        return None
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31) or int(year) < 1800:
        if strict:
            raise InvalidSceneData(f"date {value!r} is out of range")
        return None
    return f"{year}-{month}-{day}"


def _names(items: Any, limit: int, *, strict: bool, field: str) -> List[str]:
    names: List[str] = []
    seen = set()
    for item in items if isinstance(items, list) else []:
        raw = item.get("name") if isinstance(item, dict) else item
        name = clean_text(raw, MAX_NAME, strict=strict, field=field)
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    if len(names) > limit:
        if strict:
            raise InvalidSceneData(f"{field}: {len(names)} entries (limit {limit})")
        names = names[:limit]
    return names


def scene_from_stash(raw: Dict[str, Any], *, strict: bool = False) -> SceneData:
    """Validate one ``findScene(s)`` result (fetched with SCENE_FRAGMENT)."""
    if not isinstance(raw, dict):
        raise InvalidSceneData("scene data is not an object")
    try:
        scene_id = int(str(raw.get("id")))
    except (TypeError, ValueError):
        raise InvalidSceneData(f"scene id {str(raw.get('id'))[:40]!r} is not a number") from None
    rating = raw.get("rating100")
    if rating is not None:
        try:
            rating = max(0.0, min(10.0, round(float(rating) / 10.0, 1)))
        except (TypeError, ValueError):
            if strict:
                raise InvalidSceneData(f"rating100 {rating!r} is not a number") from None
            rating = None
    studio = raw.get("studio") or {}
    files = raw.get("files")
    files = [f.get("path") for f in files if isinstance(f, dict) and f.get("path")] if isinstance(files, list) else []
    paths = raw.get("paths") or {}
    try:
        return SceneData(
            id=scene_id,
            title=clean_text(raw.get("title"), MAX_TITLE, strict=strict, field="title"),
            details=clean_text(raw.get("details"), MAX_SUMMARY, multiline=True, strict=strict, field="details"),
            date=normalize_date(raw.get("date"), strict=strict),
            studio=clean_text(studio.get("name") if isinstance(studio, dict) else None, MAX_NAME, strict=strict, field="studio"),
            performers=_names(raw.get("performers"), MAX_TAGS, strict=strict, field="performers"),
            tags=_names(raw.get("tags"), MAX_TAGS, strict=strict, field="tags"),
            rating=rating,
            files=[str(p) for p in files],
            screenshot_url=paths.get("screenshot") if isinstance(paths, dict) else None,
            updated_at=raw.get("updated_at"),
        )
    except ValidationError as exc:
        raise InvalidSceneData(f"scene {scene_id}: {exc.errors()[0].get('msg')}") from None
