"""PlexSync queue tool, for stalled queues: run it from a terminal with the plugin's Python.

    python process_queue.py --plex-url http://plex:32400 --plex-library Stash   # token from $PLEX_TOKEN
    python process_queue.py --stats-only [--json]
    python process_queue.py --dlq-list | --dlq-requeue [SCENE_ID] | --dlq-purge [--days N] | --dlq-clear
    python process_queue.py --import-history --stash-url http://localhost:9999 [--json]   # for cron

Every command takes --json (the result as one JSON object on stdout).
"""

import argparse
import json
import logging
import os
import sys
import time
from urllib.parse import urlsplit

from common import log as plog
from common import pending
from common.deps import MissingDependency, ensure
from common.errors import ConfigError, StashUnavailable
from common.locking import FileLock
from common.log import register_secret
from common.paths import DataPaths
from common.progress import ProgressBar, show_logs_above

# Modules that import third-party packages (persist-queue, pydantic, plexapi)
# are imported inside the commands, after ensure() has installed them.

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_WAITING, EXIT_BUSY = 0, 1, 2, 3, 4
CODES_HELP = """Exit codes (for cron and set -e):
  0  done: nothing to do, or every due job synced or already up to date
  1  some jobs failed (they are in the dead-letter queue: see --dlq-list)
  2  configuration error: bad settings or arguments, no data folder
  3  some jobs wait for a retry (see --stats-only for when)
  4  busy: another PlexSync worker or task is processing the queue"""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="process_queue.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=CODES_HELP)
    p.add_argument("--data-dir", default=None,
                   help="PlexSync data folder (default: $STASH_PLUGIN_DATA, else <plugin>/data)")
    p.add_argument("--stats-only", "-s", action="store_true", help="print queue and DLQ statistics and exit")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object (any command)")
    p.add_argument("--plex-url", default=os.environ.get("PLEX_URL"), help="Plex URL (or $PLEX_URL)")
    p.add_argument("--plex-token", default=None,
                   help="Plex token; prefer $PLEX_TOKEN so it does not show in the process list")
    p.add_argument("--plex-library", default=None, help="Plex library name(s), comma separated")
    p.add_argument("--stash-url", default=os.environ.get("STASH_URL"),
                   help="Stash URL, e.g. http://localhost:9999 (or $STASH_URL); needed for jobs not yet fetched "
                        "and to read the plugin settings")
    p.add_argument("--stash-api-key", default=None, help="Stash API key; prefer $STASH_API_KEY")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--dlq-list", action="store_true", help="list dead-letter entries with their reasons")
    group.add_argument("--dlq-requeue", nargs="?", const="all", metavar="SCENE_ID",
                       help="move dead-letter entries (all, or one scene's) back to the queue")
    group.add_argument("--dlq-purge", action="store_true", help="delete dead-letter entries older than --days")
    group.add_argument("--dlq-clear", action="store_true", help="delete every dead-letter entry")
    group.add_argument("--import-history", action="store_true",
                       help="import new Plex plays and resume points into Stash (needs --stash-url)")
    p.add_argument("--days", type=int, default=None,
                   help="age for --dlq-purge (default: the dlq_retention_days default, 30)")
    args = p.parse_args(argv)
    args.plex_token = args.plex_token or os.environ.get("PLEX_TOKEN")
    args.stash_api_key = args.stash_api_key or os.environ.get("STASH_API_KEY")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.name == "posix":
        os.umask(0o077)
    # Under a progress bar, a line per scene would garble it: warnings and errors only.
    plog.terminal_stderr()  # PythonDepManager and stashapi print Stash's \x01 codes: plain lines here
    plog.setup(level=logging.WARNING if sys.stdout.isatty() else logging.INFO, plain=True)
    try:
        ensure(install=True)  # finds PythonDepManager's packages itself; installs what is missing
    except MissingDependency as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    paths = DataPaths(args.data_dir)
    if not os.path.isdir(paths.root):
        # A typo must not silently create (and report on) an empty data folder.
        return fail(args, EXIT_CONFIG, f"No PlexSync data folder at {paths.root}; pass the plugin's data folder "
                    "with --data-dir (or set $STASH_PLUGIN_DATA)")
    if args.stats_only:  # read-only: creates no file
        return stats(paths, args.json)
    if args.dlq_list:
        return dlq_list(paths, args.json)
    paths.ensure()
    if args.dlq_requeue or args.dlq_purge or args.dlq_clear:
        return dlq_command(paths, args)
    if args.import_history:
        return import_history_command(paths, args)
    return process(paths, args)


def import_history_command(paths, args) -> int:
    """Plex -> Stash watch history (history/); the counts on stdout."""
    from history.importer import ImportBusy  # plexapi and stashapi: after ensure()
    from history.run import run_import
    from worker.context import build_context

    register_secret(args.plex_token)
    register_secret(args.stash_api_key)
    if not args.stash_url:
        print("--import-history writes to Stash: pass --stash-url (and the API key in $STASH_API_KEY)",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        config, conn = load_cli_config(args)
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    ctx = build_context(config, paths, conn)
    try:
        summary, error = run_import(ctx)
    finally:
        ctx.close()
    if summary is None:
        print(error, file=sys.stderr)
        return EXIT_BUSY if isinstance(error, ImportBusy) else EXIT_FAILED
    print(json.dumps(summary.counts(), indent=2) if args.json else summary.text())
    return EXIT_OK


def stats(paths, as_json: bool) -> int:
    from worker.status import format_status, status_report

    report = status_report(paths)
    print(json.dumps(report, indent=2, default=str) if as_json else format_status(report))
    return EXIT_OK


def say(args, text: str, result: dict) -> None:
    """The outcome on stdout: ``text`` for a person, ``result`` as JSON with --json."""
    print(json.dumps(result, indent=2, default=str) if args.json else text)


def fail(args, code: int, message: str) -> int:
    """An error: the message on stderr, and with --json also {"error", "exit_code"} on stdout."""
    print(message, file=sys.stderr)
    if args.json:
        print(json.dumps({"error": message, "exit_code": code}))
    return code


def dlq_list(paths, as_json: bool) -> int:
    """Read-only: a data folder without dlq.db has no entries (and keeps having no file)."""
    from sync_queue.dlq import DeadLetterQueue

    entries = DeadLetterQueue(paths.dlq_db).list(limit=1000) if os.path.exists(paths.dlq_db) else []
    if as_json:
        print(json.dumps(entries, indent=2, default=str))
        return EXIT_OK
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["failed_at"]))
        print(f"#{e['id']} scene {e['scene_id']} {when} after {e['retry_count']} retries: "
              f"{e['error_type']}: {e['error_message']}")
    if not entries:
        print("Dead-letter queue is empty")
    return EXIT_OK


def dlq_command(paths, args) -> int:
    from sync_queue.dlq import DeadLetterQueue
    from sync_queue.queue import open_queue
    from validation.config import setting_default

    dlq = DeadLetterQueue(paths.dlq_db)
    if args.dlq_clear:
        n = dlq.clear()
        say(args, f"Cleared {n} dead-letter entries", {"cleared": n})
        return EXIT_OK
    if args.dlq_purge:
        days = setting_default("dlq_retention_days") if args.days is None else args.days
        n = dlq.purge_older_than(days)
        say(args, f"Purged {n} dead-letter entries older than {days} days", {"purged": n, "days": days})
        return EXIT_OK
    scene = None
    if args.dlq_requeue != "all":
        if not args.dlq_requeue.isdigit():
            return fail(args, EXIT_CONFIG, f"--dlq-requeue takes a scene id or nothing, not {args.dlq_requeue!r}")
        scene = int(args.dlq_requeue)
    queue = open_queue(paths)
    try:
        moved = dlq.requeue(queue, scene)
    finally:
        queue.close()
    say(args, f"Moved {moved} dead-letter entries back to the queue" + (" (run process_queue.py to sync them)"
        if moved else ""), {"moved": moved})
    return EXIT_OK


def _stash_connection(url: str):
    parts = urlsplit(url)
    return {"Scheme": parts.scheme or "http", "Host": parts.hostname or "localhost",
            "Port": parts.port or (443 if parts.scheme == "https" else 9999)}


def load_cli_config(args):
    from worker import settings as plugin_settings  # the one configuration entry point

    settings = {}
    conn = _stash_connection(args.stash_url) if args.stash_url else {}
    if conn:
        try:
            settings = plugin_settings.fetch(conn, api_key=args.stash_api_key or "")
        except StashUnavailable as exc:
            print(f"Could not read the plugin settings from Stash ({exc}); using the command line only",
                  file=sys.stderr)
    flags = {key: value for key, value in (("plex_url", args.plex_url), ("plex_token", args.plex_token),
                                           ("plex_library", args.plex_library)) if value}
    config = plugin_settings.load(conn, None, settings, overrides=flags, url=args.stash_url or "",
                                  api_key=args.stash_api_key or "")
    return config, conn


def process(paths, args) -> int:
    from sync_queue.queue import open_queue
    from worker.context import build_context
    from worker.processor import BatchResult

    register_secret(args.plex_token)
    register_secret(args.stash_api_key)
    busy = _busy(paths)
    if busy:
        return fail(args, EXIT_BUSY, busy)
    pending.replay(paths)  # saves a hook kept in pending/ when it could not queue them
    queue = open_queue(paths)
    stats = queue.stats()
    queue.close()
    # No drainer holds the locks, so rows still in progress were left by a
    # killed one: they are resumed and processed too.
    todo = stats["ready"] + stats["in_progress"]
    if not todo:
        return _report(BatchResult(), paths, args, _stash_connection(args.stash_url) if args.stash_url else {})
    try:
        config, conn = load_cli_config(args)
    except ConfigError as exc:
        return fail(args, EXIT_CONFIG, f"Configuration error: {exc}")
    ctx = build_context(config, paths, conn)
    try:
        total = _drain(ctx, todo, args)
    except BlockingIOError as exc:
        return fail(args, EXIT_BUSY, f"{exc}")
    finally:
        ctx.close()
    return _report(total, paths, args, conn)


def _drain(ctx, todo: int, args):
    """Drain in the foreground: a bar on a terminal (log lines print above it), else a line per batch."""
    from worker.drainer import Drainer

    progress = Progress(todo, quiet=args.json)
    try:
        return Drainer(ctx, foreground=True).drain_foreground(lambda r: progress.advance(sum(r.counts.values()),
                                                                                          r.counts))
    finally:
        progress.close()


def _busy(paths) -> str:
    """Why another process holds a worker, drain or task lock; "" when none does."""
    for name in ("worker_lock", "drain_lock", "task_lock"):
        lock = FileLock(getattr(paths, name))
        if lock.is_locked_elsewhere():
            pid = lock.holder_pid()
            return (f"A PlexSync worker is already processing the queue{f' (pid {pid})' if pid else ''}; "
                    "let it finish (see --stats-only) and run this again if the queue stays stalled.")
    return ""


def _report(total, paths, args, conn) -> int:
    """Print a run's summary (the queue's figures as --stats-only reads them); the exit code for it."""
    from worker.drainer import left_queued
    from worker.status import status_report

    c = total.counts
    after = status_report(paths)
    left = left_queued(after["waiting_retry"], after["pending"])
    # Nothing due (c empty) is success, even with retries waiting: this run left none.
    code = (EXIT_CONFIG if total.config_error else EXIT_FAILED if c.get("failed")
            else EXIT_WAITING if (left or after["in_progress"]) and c else EXIT_OK)
    if conn and args.stash_api_key:
        conn = dict(conn, ApiKey=args.stash_api_key)  # for the worker's Stash requests; never written to a file
    handoff = _hand_off(paths, conn, after) if left else ""
    text = (f"Done: {c.get('synced', 0)} synced, {c.get('unchanged', 0)} unchanged, {c.get('not_found', 0)} "
            f"not found, {c.get('failed', 0)} failed, {left} waiting to retry")
    if not c:
        text = "Nothing to do: no jobs are due" + (f" ({left} waiting to retry)" if left else "")
    say(args, "\n".join(filter(None, (text, handoff))),
        {"counts": dict(c), "queue": after, "handoff": handoff or None, "exit_code": code})
    if total.stash_down and not args.stash_url:
        print("Some jobs need their scene fetched from Stash: pass --stash-url (and the API key in "
              "$STASH_API_KEY or --stash-api-key)", file=sys.stderr)
    if c.get("failed"):
        print("Failed jobs are in the dead-letter queue: see --dlq-list", file=sys.stderr)
    return code


def _hand_off(paths, conn, after) -> str:
    """Retries not due yet go to a background worker; without a Stash connection, say how they will run."""
    from worker.launch import ensure_worker, worker_running

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(after["next_retry_at"] or time.time()))
    if conn:
        ensure_worker(paths, conn)
        return f"A background worker runs the retries (next at {when}); its log: {paths.worker_log}"
    if worker_running(paths):
        return f"The running background worker takes the retries (next at {when}); its log: {paths.worker_log}"
    return (f"No background worker was started (no --stash-url): the retries run with the next save in Stash "
            f"or PlexSync task, or when you run this command again after {when}")


class Progress:
    """A progress bar on a terminal; one plain line per batch otherwise (logs, cron); nothing with --json."""

    def __init__(self, total: int, stream=None, quiet: bool = False) -> None:
        self.total, self.done, self.stream, self.quiet = max(total, 1), 0, stream or sys.stdout, quiet
        self.counts: dict = {}
        self.bar = ProgressBar(total, self.stream) if self.stream.isatty() and not quiet else None
        self._restore = None
        if self.bar is not None:
            self.bar.draw()
            self._restore = show_logs_above(self.bar)

    def advance(self, n: int, counts) -> None:
        self.done += n
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        if self.bar is not None:
            self.bar.advance(n)
        elif not self.quiet:
            detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(self.counts.items()))
            self.stream.write(f"processed {self.done}/{self.total}: {detail}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self._restore()
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
