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

MIN_PYTHON = (3, 10)


def _emit(output, error=None) -> None:
    sys.stdout.write(json.dumps({"output": output, "error": error}))
    sys.stdout.flush()


def _too_old() -> str:
    return ("PlexSync needs Python %d.%d or newer; Stash runs %s (Python %d.%d). Install a newer Python and set "
            "it as Stash's python_path (Settings > System > Application Paths)."
            % (MIN_PYTHON + (sys.executable,) + tuple(sys.version_info[:2])))


def _read_input() -> dict:
    """One JSON object from Stash, UTF-8 encoded (never the console's code page)."""
    buffer = getattr(sys.stdin, "buffer", None)  # None: an in-memory text stream (tests)
    if sys.stdin.isatty():
        raw = ""
    else:
        raw = buffer.read().decode("utf-8") if buffer is not None else sys.stdin.read()
    payload = json.loads(raw) if raw.strip() else {}
    if not isinstance(payload, dict):
        raise ValueError("input is not a JSON object")
    for key in ("args", "server_connection"):
        if not isinstance(payload.get(key) or {}, dict):
            raise ValueError(f"{key} is not a JSON object")
    return payload


def main(argv) -> int:
    if sys.version_info < MIN_PYTHON:
        sys.stderr.write("\x01e\x02[PlexSync] " + _too_old() + "\n")
        _emit(None, _too_old())
        return 0
    if os.name == "posix":
        os.umask(0o077)  # data files hold job data: owner-only
    for stream in (sys.stdout, sys.stderr):  # Stash reads UTF-8, whatever the console's code page
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import log
    from common.deps import MissingDependency
    from common.paths import DataPaths

    worker_mode = "--worker" in argv
    try:
        payload = _read_input()
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        log.setup()
        log.logging.getLogger("plexsync").error("[PlexSync] Invalid plugin input: %s", exc)
        _emit(None, f"Invalid plugin input: {exc}")
        return 0

    paths = DataPaths()
    try:
        output, error = _dispatch(payload, paths, worker_mode)
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


def _dispatch(payload, paths, worker_mode: bool):
    from common import log
    from common.deps import InstallNeeded, ensure

    args = payload.get("args") or {}
    if worker_mode:
        log.setup(log_file=paths.ensure().worker_log)
        _install_then_replay(paths, ensure)
        _first_contact(payload, paths)
        from worker.drainer import run_background

        return run_background(payload, paths), None
    log.setup()
    if "hookContext" in args:
        # The hook imports persist-queue, and pydantic when it re-checks the
        # settings: look both up (pydantic without importing it, too slow
        # for every save) so a missing one is named, never a traceback.
        try:
            ensure(("persistqueue", "pydantic"), probe=True)
        except InstallNeeded:
            return _hook_before_install(payload, paths)
        from hooks.handler import handle  # first contact is on its slow path, with the settings check

        return handle(payload, paths)
    _install_then_replay(paths, ensure, progress=_task_progress)
    from worker.tasks import OFFLINE_TASKS, run_task

    if str(args.get("mode") or "") not in OFFLINE_TASKS:  # Queue Status and the DLQ tasks write no file
        _first_contact(payload, paths)
    return run_task(payload, paths)


def _install_then_replay(paths, ensure, progress=None) -> None:
    """Install what is missing (PythonDepManager), then queue saves kept meanwhile."""
    from common import pending

    ensure(install=True, progress=progress)
    pending.replay(paths)


def _first_contact(payload, paths) -> None:
    """Once per install, show the defaults in force on Stash's settings page.

    For the worker and tasks; a hook does it on its settings-check path
    (hooks.handler), never on the every-save path. One stat when done.
    """
    if not os.path.exists(paths.settings_defaults):
        from worker.plugin_settings import once

        once(paths, payload.get("server_connection") or {})


def _task_progress(fraction: float) -> None:
    from common import log

    log.progress(fraction)


def _hook_before_install(payload, paths):
    """A save before the packages are in: keep it, start the installer, return at once."""
    import importlib.util

    from common import log, pending
    from common.deps import prerequisite_problem
    from hooks.handler import HOOK_TYPE, HookInputError, scene_events
    from worker.launch import ensure_worker

    logger = log.logging.getLogger("plexsync")
    hook = payload["args"]["hookContext"]
    if not isinstance(hook, dict) or hook.get("type") != HOOK_TYPE:
        return "ignored hook", None
    try:
        if not scene_events(hook):
            return "no synced field changed", None
    except HookInputError as exc:
        return None, f"Invalid hook input: {exc}"
    pending.keep(paths, hook)
    # No process spawned to check pip here: finding its module is enough.
    problem = prerequisite_problem(pip_runs=importlib.util.find_spec("pip") is not None)
    if problem:
        logger.error("[PlexSync] %s (this save is kept and syncs once the packages are in)", problem)
        return None, problem
    started = ensure_worker(paths, payload.get("server_connection") or {})
    logger.info("[PlexSync] Installing PlexSync's Python packages in the background (%s); this save is kept and "
                "syncs once they are in (progress in worker.log)", "started" if started else "already running")
    return f"kept scene {hook.get('id')}: packages installing", None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
