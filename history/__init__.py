"""Plex -> Stash: plays and resume points (the watch-history import)."""
