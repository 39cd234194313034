"""The import's own record in the data folder (``history_state.json``).

* ``watermark``: epoch seconds of the newest history entry read; the next run
  asks Plex for entries at or after it. ``edge`` lists the (ratingKey,
  account) of the entries of that very second already read, so only the
  others of that second count as new (a play is also never added twice:
  Stash's play history is checked first).
* ``resume``: ratingKey -> the ``viewOffset`` (ms) Plex reported at the last
  import. Stash keeps no time for ``resume_time``, so this is what tells a
  changed resume point from one the user set in Stash since.
* ``links``: ratingKey -> Stash scene id, found once by file path.

Written only after Stash took every write of a run, so a failure mid-run
leaves the previous state and the next run does the same work again.
"""

import time
from typing import Any, Dict, Optional, Set, Tuple

from common.jsonfile import read_json, write_json


class HistoryState:
    def __init__(self, path) -> None:
        self.path = path
        data = read_json(path, {})
        data = data if isinstance(data, dict) else {}
        self.watermark: Optional[int] = _int(data.get("watermark"))
        self.resume: Dict[int, int] = _int_map(data.get("resume"))
        self.links: Dict[int, int] = _int_map(data.get("links"))
        self.edge: Set[Tuple[int, int]] = _pairs(data.get("edge"))
        self.last_run: Optional[float] = data.get("last_run") if isinstance(data.get("last_run"), (int, float)) else None

    def save(self) -> None:
        self.last_run = time.time()
        write_json(self.path, {
            "watermark": self.watermark,
            "resume": {str(k): v for k, v in self.resume.items()},
            "links": {str(k): v for k, v in self.links.items()},
            "edge": sorted(self.edge),
            "last_run": self.last_run,
        })


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int_map(value: Any) -> Dict[int, int]:
    out: Dict[int, int] = {}
    for key, val in (value or {}).items() if isinstance(value, dict) else ():
        if str(key).isdigit() and _int(val) is not None:
            out[int(key)] = val
    return out


def _pairs(value: Any) -> Set[Tuple[int, int]]:
    out: Set[Tuple[int, int]] = set()
    for pair in value if isinstance(value, list) else ():
        if isinstance(pair, list) and len(pair) == 2 and all(_int(x) is not None for x in pair):
            out.add((pair[0], pair[1]))
    return out
