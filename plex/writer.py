"""Stash scene fields -> one Plex edit per item, plus the poster.

``FIELD_MAP`` is the whole mapping. ``plan_edits`` is pure: it compares a
scene with a snapshot of the Plex item and returns only what must change.
``apply_edits`` sends those changes as ONE ``PUT /library/sections/{id}/all``
with every written field locked, so a Plex metadata refresh keeps them.

Tag sets are sent as the exact desired list (PMS replaces the whole set on
an indexed list) plus an explicit removal of what must go. plexapi's
``editTags``/``addGenre`` would instead resend the item's current tags merged
with ours, which both keeps tags Stash dropped and, on a listing item whose
tags are truncated, loses the ones the listing left out.
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Dict, List, Optional

from plexapi.mixins import EditTagsMixin

from plex.pathnorm import default_titles
from validation.scene import normalize_date

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")


@dataclass(frozen=True)
class FieldMap:
    stash: str  # SceneData attribute
    plex: str   # Plex field / tag name in edits and locks
    attr: str   # plexapi attribute holding the current value
    kind: str   # text | date | rating | tags


FIELD_MAP = (
    FieldMap("title", "title", "title", "text"),
    FieldMap("details", "summary", "summary", "text"),
    FieldMap("date", "originallyAvailableAt", "originallyAvailableAt", "date"),
    FieldMap("studio", "studio", "studio", "text"),
    FieldMap("performers", "actor", "roles", "tags"),
    FieldMap("tags", "genre", "genres", "tags"),
    FieldMap("rating", "userRating", "userRating", "rating"),
)
_BY_PLEX = {f.plex: f for f in FIELD_MAP}


# -- values -------------------------------------------------------------------


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).replace("\r\n", "\n").strip()
    return text or None


def _date(value: Any) -> Optional[str]:
    if isinstance(value, (datetime, date)):
        return value.strftime("%Y-%m-%d")
    return normalize_date(value) if value else None


def _rating(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    number = round(min(10.0, float(value)), 1)
    return number if number > 0 else None  # plexapi sends 0 as "", which clears


def _tags(value: Any) -> Optional[List[str]]:
    names, seen = [], set()
    for raw in value or []:
        name = _text(getattr(raw, "tag", raw))
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    return names or None


_NORMALIZE = {"text": _text, "date": _date, "rating": _rating, "tags": _tags}


def _same(kind: str, want: Any, have: Any) -> bool:
    if kind == "rating":
        return abs(want - have) < 0.05
    if kind == "tags":
        # Plex shares one tag per name, case-insensitively.
        return {n.casefold() for n in want} == {n.casefold() for n in have}
    return want == have


# -- planning -----------------------------------------------------------------


def snapshot(item) -> Dict[str, Any]:
    """The item's current values in ``plan_edits`` form (item must be full)."""
    values: Dict[str, Any] = {f.plex: _NORMALIZE[f.kind](getattr(item, f.attr)) for f in FIELD_MAP}
    values["files"] = list(item.locations)
    values["locked"] = {f.name for f in item.fields if f.locked}
    return values


def desired(scene) -> Dict[str, Any]:
    """What Stash wants per Plex field; fields Stash leaves empty are absent."""
    out = {}
    for field in FIELD_MAP:
        value = _NORMALIZE[field.kind](getattr(scene, field.stash))
        if value is not None:
            out[field.plex] = value
    return out


def _unset(field: str, have: Any, current: Dict[str, Any]) -> bool:
    if have is None:
        return True
    # Plex titles a new item after its file; that is not a user's edit.
    return field == "title" and any(have in default_titles(f) for f in current.get("files", ()))


def plan_edits(scene, current: Dict[str, Any], preserve_plex_edits: bool = False) -> Dict[str, Any]:
    """Plex field -> new value, for the fields that must change.

    An empty Stash value never clears Plex. With ``preserve_plex_edits`` only
    fields that are empty in Plex (or still hold the file-name title) are filled.
    """
    edits = {}
    for name, want in desired(scene).items():
        have = _NORMALIZE[_BY_PLEX[name].kind](current.get(name))
        if preserve_plex_edits:
            if _unset(name, have, current):
                edits[name] = want
        elif have is None or not _same(_BY_PLEX[name].kind, want, have):
            edits[name] = want
    return edits


# -- applying -----------------------------------------------------------------


def apply_edits(item, edits: Dict[str, Any], current: Dict[str, Any]) -> None:
    """Send every change for ``item`` in one locked PUT (no reload before or after)."""
    if not edits:
        return
    item.batchEdits()
    for name, value in edits.items():
        if _BY_PLEX[name].kind == "tags":
            item.edit(**EditTagsMixin._tagHelper(name, value, locked=True))
            keep = {n.casefold() for n in value}
            gone = [n for n in _tags(current.get(name)) or [] if n.casefold() not in keep]
            if gone:
                item.edit(**EditTagsMixin._tagHelper(name, gone, locked=True, remove=True))
        else:
            item.editField(name, value, locked=True)
    item.saveEdits()
    log.debug("[PlexSync Writer] item %s: wrote %s", item.ratingKey, ", ".join(sorted(edits)))


def upload_poster(item, image: Optional[bytes], store, *, preserve_plex_edits: bool = False,
                  locked: Optional[set] = None) -> bool:
    """Upload ``image`` unless it is the one PlexSync last uploaded to this item.

    With ``preserve_plex_edits`` a poster someone chose in Plex stays: see
    ``poster_is_replaceable``. ``locked`` is the item's locked fields.
    """
    if not image:
        return False
    digest = hashlib.sha1(image).hexdigest()
    rating_key = int(item.ratingKey)
    ours = store.poster_sha1(rating_key)
    if ours == digest:
        return False
    if preserve_plex_edits and not poster_is_replaceable(item, ours, locked or set()):
        log.info("[PlexSync Writer] item %s: keeping the poster chosen in Plex (preserve_plex_edits is on)", rating_key)
        return False
    item.uploadPoster(filepath=image)
    store.set_poster_sha1(rating_key, digest)
    return True


def poster_is_replaceable(item, ours: Optional[str], locked: set) -> bool:
    """Whether the item's poster is Plex's own or the last one PlexSync uploaded.

    Choosing or uploading a poster in Plex locks ``thumb``; Plex's own
    poster is unlocked. A locked poster is ours only when Plex still has our
    upload selected (its ratingKey ends with our image's sha1); this costs
    one request, made only in this mode and only when the Stash cover changed.
    """
    if "thumb" not in locked:
        return True
    if not ours:
        return False
    selected = [p for p in item.posters() if p.selected]
    return not selected or str(selected[0].ratingKey).endswith(ours)
