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
    # Collections (issue 13): the studio with two levels of parents (site,
    # network), and the scene's groups, each with its artwork and text.
    " studio { %s parent_studio { %s parent_studio { %s } } }"
    " groups { group { name front_image_path synopsis } }"
) % (("name image_path details",) * 3)

MAX_TITLE = 255
MAX_SUMMARY = 10_000
MAX_NAME = 255
MAX_TAGS = 500
MAX_STUDIO_DEPTH = 3

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


class CollectionSource(BaseModel):
    """A Stash studio or group a scene's collection is named after."""

    model_config = ConfigDict(frozen=True)

    name: str
    image_url: Optional[str] = None  # None when Stash has no image (its URL says default=true)
    summary: Optional[str] = None


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
    studios: List[CollectionSource] = []  # the studio, then its parents
    groups: List[CollectionSource] = []


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


def _image_url(value: Any) -> Optional[str]:
    # Stash appends default=true when the entity has no image of its own
    # (internal/api/urlbuilders/studio.go, group.go): nothing to upload.
    if not isinstance(value, str) or not value or "default=true" in value:
        return None
    return value


def _source(raw: Any, image_key: str, text_key: str, *, strict: bool) -> Optional[CollectionSource]:
    if not isinstance(raw, dict):
        return None
    name = clean_text(raw.get("name"), MAX_NAME, strict=strict, field="collection name")
    if not name:
        return None
    return CollectionSource(name=name, image_url=_image_url(raw.get(image_key)),
                            summary=clean_text(raw.get(text_key), MAX_SUMMARY, multiline=True, strict=strict,
                                               field=text_key))


def _studios(raw: Any, *, strict: bool) -> List[CollectionSource]:
    out: List[CollectionSource] = []
    while isinstance(raw, dict) and len(out) < MAX_STUDIO_DEPTH:
        source = _source(raw, "image_path", "details", strict=strict)
        if source is None or any(s.name.casefold() == source.name.casefold() for s in out):
            break
        out.append(source)
        raw = raw.get("parent_studio")
    return out


def _groups(raw: Any, *, strict: bool) -> List[CollectionSource]:
    out: List[CollectionSource] = []
    for entry in raw if isinstance(raw, list) else []:
        group = entry.get("group") if isinstance(entry, dict) else None
        source = _source(group, "front_image_path", "synopsis", strict=strict)
        if source and all(s.name.casefold() != source.name.casefold() for s in out):
            out.append(source)
    return out[:MAX_TAGS]


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
            studios=_studios(studio, strict=strict),
            groups=_groups(raw.get("groups"), strict=strict),
        )
    except ValidationError as exc:
        raise InvalidSceneData(f"scene {scene_id}: {exc.errors()[0].get('msg')}") from None
