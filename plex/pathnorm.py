"""Path keys for matching Stash files to Plex parts.

Stash and Plex often see the same file under different mounts, operating
systems and spellings. A key is the path in one canonical form: Unicode NFC,
``/`` separators, no ``\\\\?\\`` long-path prefix, and case-folded when the
path is a Windows one (NTFS/SMB compare names without case).
"""

import posixpath
import re
import unicodedata
from typing import Iterable, List, Tuple

_DRIVE = re.compile(r"^[A-Za-z]:([\\/]|$)")
_SPLIT = re.compile(r"[\\/]+")


def strip_long_prefix(path: str) -> str:
    r"""``\\?\C:\x`` -> ``C:\x`` and ``\\?\UNC\srv\share`` -> ``\\srv\share``."""
    if path.startswith(("\\\\?\\UNC\\", "//?/UNC/")):
        return "\\\\" + path[8:]
    if path.startswith(("\\\\?\\", "//?/")):
        return path[4:]
    return path


def is_windows(path: str) -> bool:
    path = strip_long_prefix(path)
    return bool(_DRIVE.match(path)) or path.startswith("\\\\") or ("\\" in path and "/" not in path)


def path_key(path: str) -> str:
    """The canonical full-path key of ``path``."""
    path = unicodedata.normalize("NFC", strip_long_prefix(path.strip()))
    if is_windows(path):
        # normpath keeps the two leading slashes of a UNC path.
        return posixpath.normpath(path.replace("\\", "/")).casefold()
    return posixpath.normpath(path)


def basename_key(path: str) -> str:
    """The case-folded file name: matches one file seen through different mounts."""
    name = _SPLIT.split(path.strip())[-1]
    return unicodedata.normalize("NFC", name).casefold()


def _parts(path: str) -> Tuple[List[str], bool]:
    path = unicodedata.normalize("NFC", strip_long_prefix(path.strip()))
    windows = is_windows(path)
    parts = _SPLIT.split(path) if windows else path.split("/")
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    return parts, windows


def map_path(path: str, mappings: Iterable) -> str:
    """Rewrite a Stash path to the Plex side with the longest matching prefix.

    Prefixes match whole path components (``/data/a`` never matches
    ``/data/ab``). The rest of the path keeps its spelling, so the result can
    be handed to Plex (a partial scan needs the real folder name).
    """
    parts, windows = _parts(path)
    fold = (lambda s: s.casefold()) if windows else (lambda s: s)
    best = None
    for rule in mappings:
        prefix, _ = _parts(rule.stash)
        if len(prefix) <= len(parts) and all(fold(a) == fold(b) for a, b in zip(prefix, parts)):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, rule.plex)
    if best is None:
        return path
    prefix, target = best
    rest = parts[len(prefix):]
    if not rest:
        return target
    sep = "\\" if is_windows(target) and "/" not in target else "/"
    return target.rstrip("\\/") + sep + sep.join(rest)


def parent_folder(path: str) -> str:
    """The folder holding ``path``, in the path's own spelling."""
    stripped = path.rstrip("\\/")
    cut = max(stripped.rfind("/"), stripped.rfind("\\"))
    if cut <= 0:
        return stripped[: cut + 1] or stripped
    folder = stripped[:cut]
    return folder + "\\" if _DRIVE.match(folder + "\\") and len(folder) == 2 else folder


def is_under(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` (both compared as keys)."""
    p, f = path_key(path), path_key(folder).rstrip("/")
    return p == f or p.startswith(f + "/")


def file_stem(path: str) -> str:
    """The file name without its extension."""
    name = _SPLIT.split(path.strip())[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def title_from_filename(path: str) -> str:
    """The file name as a title: the stem with ``.``/``_`` as spaces."""
    return " ".join(file_stem(path).replace("_", " ").replace(".", " ").split())


def default_titles(path: str) -> "set[str]":
    """Titles a Plex scanner may have given the file (raw or cleaned stem)."""
    return {file_stem(path), title_from_filename(path)}
