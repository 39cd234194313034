"""Stash scene fields -> one Plex edit per item, plus the poster.

``FIELD_MAP`` is the whole mapping. ``plan`` is pure: it compares a scene
with a snapshot of the Plex item (and with what PlexSync wrote before) and
returns only what must change. ``apply_edits`` sends those changes as ONE
``PUT /library/sections/{id}/all`` with every written field locked, so a
Plex metadata refresh keeps them; a cleared field is unlocked.

Tag sets go through plexapi's public ``editTags``: it resends the item's
current tags plus ours, and a second ``editTags(remove=True)`` in the same
batch drops what must go. The items are full fetches (every tag present), so
nothing a listing truncated is lost.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Dict, List, Optional, Tuple

from plex.pathnorm import default_titles
from validation.scene import normalize_date

# Under "plexsync" so common.log.setup() routes it to Stash.
log = logging.getLogger(f"plexsync.{__name__}")


@dataclass(frozen=True)
class FieldMap:
    stash: str    # SceneData attribute ("" when the value comes from a setting)
    plex: str     # Plex field / tag name in edits and locks
    attr: str     # plexapi attribute holding the current value
    kind: str     # text | date | rating | tags
    setting: str  # its name in skip_fields


FIELD_MAP = (
    FieldMap("title", "title", "title", "text", "title"),
    FieldMap("details", "summary", "summary", "text", "summary"),
    FieldMap("date", "originallyAvailableAt", "originallyAvailableAt", "date", "date"),
    FieldMap("studio", "studio", "studio", "text", "studio"),
    FieldMap("performers", "actor", "roles", "tags", "performers"),
    FieldMap("tags", "genre", "genres", "tags", "tags"),
    FieldMap("rating", "userRating", "userRating", "rating", "rating"),
    FieldMap("", "contentRating", "contentRating", "text", "content_rating"),
    FieldMap("", "collection", "collections", "tags", "collections"),
)
_BY_PLEX = {f.plex: f for f in FIELD_MAP}
# Never cleared: an item always has a title in Plex; an empty content_rating
# setting means "leave Plex alone"; collections follow _plan_collections.
_NOT_CLEARED = {"title", "contentRating", "collection"}


@dataclass(frozen=True)
class Options:
    """The settings that shape what is written (see docs/config.md)."""

    preserve_plex_edits: bool = False
    skipped: frozenset = frozenset()        # skip_fields names
    excluded_tags: frozenset = frozenset()  # case-folded
    content_rating: str = ""
    studio_collections: bool = False
    group_collections: bool = False
    collection_tags: frozenset = frozenset()  # case-folded

    @classmethod
    def from_config(cls, config) -> "Options":
        return cls(config.preserve_plex_edits, config.skipped, config.excluded_tags, config.content_rating,
                   config.studio_collections, config.group_collections, config.collection_tags)


@dataclass(frozen=True)
class Cleared:
    """A tag set to empty of PlexSync's values: ``keep`` are the others, left unlocked."""

    keep: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    edits: Dict[str, Any]                                # Plex field -> value (None: clear)
    record: Dict[str, Any] = field(default_factory=dict)  # what PlexSync wrote, to remember
    forget: Tuple[str, ...] = ()                         # fields no longer PlexSync's


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
    if want is None or have is None:
        return want is None and have is None
    if kind == "rating":
        return abs(want - have) < 0.05
    if kind == "tags":
        # Plex shares one tag per name, case-insensitively.
        return {n.casefold() for n in want} == {n.casefold() for n in have}
    return want == have


def _keys(names) -> set:
    return {n.casefold() for n in names or ()}


# -- planning -----------------------------------------------------------------


def snapshot(item) -> Dict[str, Any]:
    """The item's current values in ``plan`` form (item must be full)."""
    values: Dict[str, Any] = {f.plex: _NORMALIZE[f.kind](getattr(item, f.attr, None)) for f in FIELD_MAP}
    values["files"] = list(item.locations)
    values["locked"] = {f.name for f in item.fields if f.locked}
    return values


def wanted_collections(scene, options: Options) -> List[str]:
    """The collections PlexSync puts ``scene`` in, in order, without duplicates."""
    names: List[str] = []
    if options.studio_collections:
        names += [s.name for s in getattr(scene, "studios", ())]
    if options.group_collections:
        names += [g.name for g in getattr(scene, "groups", ())]
    if options.collection_tags:
        names += [t for t in scene.tags if t.casefold() in options.collection_tags]
    return _tags(names) or []


def desired(scene, options: Optional[Options] = None) -> Dict[str, Any]:
    """What Stash wants per Plex field; fields Stash leaves empty are absent."""
    options = options or Options()
    out = {}
    for fm in FIELD_MAP:
        if not fm.stash or fm.setting in options.skipped:
            continue
        raw = getattr(scene, fm.stash)
        if fm.plex == "genre" and options.excluded_tags:
            raw = [t for t in raw if t.casefold() not in options.excluded_tags]
        value = _NORMALIZE[fm.kind](raw)
        if value is not None:
            out[fm.plex] = value
    if options.content_rating and "content_rating" not in options.skipped:
        out["contentRating"] = options.content_rating
    return out


def _unset(field: str, have: Any, current: Dict[str, Any]) -> bool:
    if have is None:
        return True
    # Plex titles a new item after its file; that is not a user's edit.
    return field == "title" and any(have in default_titles(f) for f in current.get("files", ()))


def plan_edits(scene, current: Dict[str, Any], preserve_plex_edits: bool = False) -> Dict[str, Any]:
    """Plex field -> new value, for the fields that must change (no record, no options)."""
    return plan(scene, current, Options(preserve_plex_edits=preserve_plex_edits)).edits


def plan(scene, current: Dict[str, Any], options: Options, written: Optional[Dict[str, Any]] = None) -> Plan:
    """What to send for one item, and what to remember about it.

    A field Stash leaves empty is cleared only while Plex still holds the
    value PlexSync wrote (``written``); any other value stays. With
    ``preserve_plex_edits`` only fields that are empty in Plex (or still hold
    the file-name title) are filled.
    """
    written = written or {}
    edits: Dict[str, Any] = {}
    record: Dict[str, Any] = {}
    forget: List[str] = []
    want_all = desired(scene, options)
    for name, want in want_all.items():
        kind = _BY_PLEX[name].kind
        have = _NORMALIZE[kind](current.get(name))
        if options.preserve_plex_edits:
            change = _unset(name, have, current)
        else:
            change = have is None or not _same(kind, want, have)
        if change:
            edits[name] = record[name] = want
        elif _same(kind, want, have) and name not in written and name in current.get("locked", ()):
            record[name] = want  # equal and locked: written by PlexSync before it kept this record
    for fm in FIELD_MAP:
        if fm.plex in want_all or fm.plex in _NOT_CLEARED or fm.setting in options.skipped or fm.plex not in written:
            continue
        _plan_clear(fm, current, written[fm.plex], edits, forget)
    if "collections" not in options.skipped:
        _plan_collections(scene, current, options, written, edits, record, forget)
    return Plan(edits, record, tuple(forget))


def _plan_clear(fm: FieldMap, current, ours, edits, forget) -> None:
    have = _NORMALIZE[fm.kind](current.get(fm.plex))
    forget.append(fm.plex)
    if fm.kind == "tags":
        mine = _keys(ours)
        if have and _keys(have) & mine:
            edits[fm.plex] = Cleared(tuple(n for n in have if n.casefold() not in mine))
    elif have is not None and _same(fm.kind, _NORMALIZE[fm.kind](ours), have):
        edits[fm.plex] = None


def _plan_collections(scene, current, options, written, edits, record, forget) -> None:
    """Membership: ours follow Stash; the user's own collections stay on the item."""
    wanted = wanted_collections(scene, options)
    have = _tags(current.get("collection")) or []
    ours = _keys(written.get("collection"))
    want_keys, have_keys = _keys(wanted), _keys(have)
    keep = [n for n in have if n.casefold() not in ours or n.casefold() in want_keys]
    new = keep + [n for n in wanted if n.casefold() not in _keys(keep)]
    mine = [n for n in wanted if n.casefold() in ours or n.casefold() not in have_keys]
    if _keys(new) != have_keys:
        edits["collection"] = new if mine else Cleared(tuple(new))
    if mine:
        if _keys(mine) != ours:
            record["collection"] = mine
    elif ours:
        forget.append("collection")


# -- applying -----------------------------------------------------------------


def apply_edits(item, edits: Dict[str, Any], current: Dict[str, Any]) -> None:
    """Send every change for ``item`` in one PUT (no reload before or after).

    Written fields are locked; cleared ones (value None or ``Cleared``) unlocked.
    """
    if not edits:
        return
    item.batchEdits()
    for name, value in edits.items():
        if _BY_PLEX[name].kind == "tags":
            cleared = isinstance(value, Cleared)
            _edit_tags(item, name, list(value.keep) if cleared else value, current, locked=not cleared)
        else:
            item.editField(name, value, locked=value is not None)
    item.saveEdits()
    log.debug("[PlexSync Writer] item %s: wrote %s", item.ratingKey, ", ".join(sorted(edits)))


def _edit_tags(item, name: str, names: List[str], current: Dict[str, Any], locked: bool) -> None:
    """Make the item's ``name`` tags exactly ``names``, through plexapi's public verb.

    ``editTags`` prepends the item's current tags (an indexed list replaces
    the whole set in PMS); the removal then drops what must go.
    """
    have = _tags(current.get(name)) or []
    keep = _keys(names)
    item.editTags(name, [n for n in names if n.casefold() not in _keys(have)], locked=locked)
    gone = [n for n in have if n.casefold() not in keep]
    if gone:
        item.editTags(name, gone, locked=locked, remove=True)


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
        log.debug("[PlexSync Writer] item %s: keeping the poster chosen in Plex (preserve_plex_edits is on)", rating_key)
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
