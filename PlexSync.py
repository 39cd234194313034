"""PlexSync: keeps Plex metadata in step with Stash. Stash runs this file.

* Hook (``Scene.Update.Post``): queue the scene and return in milliseconds.
* Task (``args.mode``): run a task from Stash's Tasks page in the foreground.
* ``--worker``: the detached background worker the hook starts.

stdout carries exactly one JSON object ``{"output": ..., "error": ...}``;
every log line goes to stderr in Stash's ``\\x01<level>\\x02`` protocol.
"""

import json
import os
import sys


def _emit(output, error=None) -> None:
    sys.stdout.write(json.dumps({"output": output, "error": error}))
    sys.stdout.flush()


def main(argv) -> int:
    if os.name == "posix":
        os.umask(0o077)  # data files hold job data: owner-only
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import log
    from common.deps import MissingDependency, ensure
    from common.paths import DataPaths

    worker_mode = "--worker" in argv
    raw = sys.stdin.read() if not sys.stdin.isatty() else ""
    try:
        payload = json.loads(raw) if raw.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("input is not a JSON object")
        for key in ("args", "server_connection"):
            if not isinstance(payload.get(key) or {}, dict):
                raise ValueError(f"{key} is not a JSON object")
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        log.setup()
        log.logging.getLogger("plexsync").error("[PlexSync] Invalid plugin input: %s", exc)
        _emit(None, f"Invalid plugin input: {exc}")
        return 0

    paths = DataPaths()
    args = payload.get("args") or {}
    try:
        if worker_mode:
            ensure()
            from worker.drainer import run_background

            return run_background(payload, paths)
        log.setup()
        if "hookContext" in args:
            # The hook imports persist-queue, and pydantic when it re-checks the
            # settings: look both up (pydantic without importing it, too slow
            # for every save) so a missing one is named, never a traceback.
            ensure(("persistqueue", "pydantic"), probe=True)
            from hooks.handler import handle

            output, error = handle(payload, paths)
        else:
            ensure()
            from worker.tasks import run_task

            output, error = run_task(payload, paths)
    except MissingDependency as exc:
        # The detached worker has no stderr to Stash: it says so in worker.log.
        log.setup(log_file=paths.ensure().worker_log if worker_mode else None)
        log.logging.getLogger("plexsync").error("[PlexSync] %s", exc)
        output, error = None, str(exc)
    except Exception as exc:  # last resort: Stash must still get one JSON object
        import traceback

        logger = log.logging.getLogger("plexsync")
        logger.error("[PlexSync] Unexpected error: %s: %s", type(exc).__name__, exc)
        logger.debug("%s", traceback.format_exc())
        output, error = None, f"{type(exc).__name__}: {log.scrub(str(exc))}"
    if not worker_mode:
        _emit(output, error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
