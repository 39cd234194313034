"""Pin requests' per-request environment reads on a session bound to one server.

With ``trust_env`` on, requests reads the proxy variables, ``no_proxy``, the
CA bundle variables and ~/.netrc again on every request: a third of its CPU
time per request in a bulk sync (docs/performance.md). A session whose
requests all go to one server (Plex, or Stash) gets the same answers every
time, so they are resolved once, the way requests resolves them, and pinned.

Not imported by the hook: it imports requests.
"""

import requests


def pin_environment(session: requests.Session, url: str) -> requests.Session:
    """Resolve proxies, CA bundle and netrc auth for ``url`` once; stop re-reading them."""
    settings = session.merge_environment_settings(url, {}, None, None, None)
    netrc_auth = requests.utils.get_netrc_auth(url) if session.auth is None else None
    session.trust_env = False
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    if netrc_auth:
        session.auth = netrc_auth
    return session
