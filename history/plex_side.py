"""What the import reads from Plex: accounts, watch history, resume points.

Every call runs inside ``plex_errors`` (plex/client.py), the one place
plexapi's errors become ours.

* ``/accounts`` (plexapi ``systemAccounts``) names the server's accounts;
  the owner is account 1 (plexapi's own ``library.history`` and
  ``MyPlexAccount.history`` pass ``accountID=1`` for the owner).
* ``/status/sessions/history/all`` (plexapi ``server.history``) lists plays;
  plexapi sends ``sort``, ``accountID`` and ``viewedAt>`` (``mindate``) and
  pages with X-Plex-Container-Start/Size. We ask for one page per request,
  oldest first, so plays added while we page land after the ones we read.
* ``/hubs/continueWatching/items`` (plexapi ``continueWatching``) lists the
  partly watched items with their ``viewOffset``.
"""

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

from plexapi.utils import joinArgs

from common import defaults
from plex.client import plex_errors

HISTORY_KEY = "/status/sessions/history/all"


@dataclass(frozen=True)
class Play:
    rating_key: Optional[int]  # None: the item was deleted from Plex
    viewed_at: Optional[int]   # epoch seconds; None when Plex gave none
    account_id: Optional[int]


def accounts(server) -> Dict[int, str]:
    """Account id -> name, as the server knows them."""
    with plex_errors("listing Plex accounts"):
        return {int(a.id): str(a.name or "") for a in server.systemAccounts() if a.id is not None}


def history_pages(server, since: Optional[int], account_id: Optional[int] = None,
                  page_size: int = defaults.HISTORY_PAGE_SIZE) -> Iterator[List[Play]]:
    """Plays at or after ``since``, oldest first, one page (one request) at a time."""
    args = {"sort": "viewedAt:asc"}
    if since is not None:
        args["viewedAt>"] = since  # plexapi's mindate form; PMS reads it as viewedAt >= since
    if account_id is not None:
        args["accountID"] = account_id
    key = HISTORY_KEY + joinArgs(args)
    start = 0
    while True:
        with plex_errors("reading the Plex watch history"):
            page = server.fetchItems(key, container_start=start, container_size=page_size, maxresults=page_size)
        yield [_play(entry) for entry in page]
        if len(page) < page_size:
            return
        start += page_size


def _play(entry) -> Play:
    # A deleted item's entry has no key (pkkid/python-plexapi #1267, #1269).
    rating_key = _whole(entry.ratingKey) if getattr(entry, "key", None) else None
    return Play(rating_key=rating_key, viewed_at=_epoch(getattr(entry, "viewedAt", None)),
                account_id=_whole(getattr(entry, "accountID", None)))


def _whole(value) -> Optional[int]:
    """plexapi casts a malformed number to NaN: that is no id."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _epoch(when) -> Optional[int]:
    try:
        return int(when.timestamp()) if when is not None else None
    except (OverflowError, OSError, ValueError):  # a time outside what the platform represents
        return None


def resume_points(server) -> Dict[int, int]:
    """ratingKey -> viewOffset (ms) of the owner's partly watched items."""
    with plex_errors("reading Continue Watching"):
        items = server.continueWatching()
    return {int(i.ratingKey): int(i.viewOffset or 0) for i in items if i.ratingKey and i.viewOffset}
