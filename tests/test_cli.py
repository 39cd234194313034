"""process_queue.py from a terminal: run as a subprocess on a runner's data dir.

The CLI is the installed copy (plugins/PlexSync/process_queue.py), run with
this venv's Python, against the emulators through the real plexapi/stashapi.
"""

import json
import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
import time

from tests.e2e import PLEX_TOKEN, STASH_API_KEY, env, wait_for  # noqa: F401
from tests.test_e2e_tasks import counts, kill_worker, queue_by_hook

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_WAITING, EXIT_BUSY = 0, 1, 2, 3, 4


def cli_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PLEX_TOKEN", "PLEX_URL", "STASH_URL", "STASH_API_KEY", "STASH_PLUGIN_DATA")
           and not k.startswith("PYTEST")}
    env.update(extra)
    return env


def cli(env, *args, data_dir=None, environ=None, timeout=120):
    """Run the installed process_queue.py; returns CompletedProcess (text)."""
    runner = env.runner
    argv = [sys.executable, str(runner.plugin_dir / "process_queue.py"),
            "--data-dir", str(data_dir or runner.data_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          cwd=str(runner.stash_dir), env=cli_env(**(environ or {})), stdin=subprocess.DEVNULL)


def stash_args(env):
    return ["--stash-url", env.stash.url]


def assert_no_secret(env, *texts):
    blob = "".join(texts)
    for secret in (PLEX_TOKEN, STASH_API_KEY, env.runner.cookie):
        assert secret not in blob


def waiting_snapshot_jobs(env, n):
    """A stalled queue of jobs that need no Stash fetch: Sync All ran while Plex
    was down, then its background worker died."""
    items = {i: env.scene_with_item(i)[1] for i in range(1, n + 1)}
    env.plex.fault(status=503)
    result = env.runner.run_task("Sync All Scenes to Plex")
    assert result.output.endswith(f"({n} waiting to retry)"), result.output
    kill_worker(env)
    env.plex.clear_faults()
    env.make_retries_due()
    return items


# -- statistics ---------------------------------------------------------------------

def test_stats_only_text_and_json_without_secrets(env):
    env.scene_with_item(1)
    nofile = env.stash.add_scene(title="No file")
    queue_by_hook(env, 1, nofile)
    env.runner.run_task("Process Queue")
    queue_by_hook(env, 1)
    secrets = {"PLEX_TOKEN": PLEX_TOKEN, "STASH_API_KEY": STASH_API_KEY}

    text = cli(env, "--stats-only", environ=secrets)
    assert text.returncode == EXIT_OK, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "Queue: 1 pending, 0 waiting to retry, 0 in progress"
    assert "DLQ: 1 (top errors: SceneHasNoFile (1))" in lines
    assert "Circuit breaker: closed" in lines
    assert any(line.startswith("Last successful sync: 20") for line in lines)
    assert f"Data folder: {env.runner.data_dir}" in lines
    assert f"Worker log: {env.runner.data_dir / 'worker.log'}" in lines

    as_json = cli(env, "--stats-only", "--json", environ=secrets)
    assert as_json.returncode == EXIT_OK
    report = json.loads(as_json.stdout)
    assert (report["pending"], report["waiting_retry"], report["dlq"]) == (1, 0, 1)
    assert report["dlq_top_errors"] == [{"error_type": "SceneHasNoFile", "count": 1}]
    assert report["circuit_breaker"] == "closed" and report["last_success"] > time.time() - 300
    assert_no_secret(env, text.stdout, text.stderr, as_json.stdout, as_json.stderr)


def test_stats_from_stash_plugin_data_env(env):
    queue_by_hook(env, 1)  # the event alone; nothing else needed for statistics
    argv = [sys.executable, str(env.runner.plugin_dir / "process_queue.py"), "--stats-only", "--json"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                         env=cli_env(STASH_PLUGIN_DATA=str(env.runner.data_dir)))
    assert run.returncode == EXIT_OK and json.loads(run.stdout)["pending"] == 1


# -- processing ------------------------------------------------------------------------

def test_processes_a_stalled_queue_with_plex_token_from_env(env):
    items = waiting_snapshot_jobs(env, 4)
    run = cli(env, "--plex-url", env.plex.url, "--plex-library", "Stash", environ={"PLEX_TOKEN": PLEX_TOKEN})
    assert run.returncode == EXIT_OK, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:-1] == ["processed 4/4: 4 synced"]  # plain lines: stdout is not a terminal
    assert lines[-1] == "Done: 4 synced, 0 unchanged, 0 not found, 0 failed, 0 waiting to retry"
    assert "\r" not in run.stdout
    for i, rk in items.items():
        assert env.plex.item(rk)["title"] == f"Title {i}"
    assert env.stats()["ready"] == 0
    assert_no_secret(env, run.stdout, run.stderr)

    again = cli(env, "--plex-url", env.plex.url, environ={"PLEX_TOKEN": PLEX_TOKEN})
    assert again.returncode == EXIT_OK  # nothing to do is success for cron
    assert again.stdout.startswith("Nothing to do: no jobs are due")


def screen(raw: str):
    """The lines a terminal shows for ``raw``: \\r returns to column 0, ESC[K erases to the end."""
    lines, cur, col, i = [], [], 0, 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            del cur[col:]
            i += 3
            continue
        ch = raw[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(cur))
            cur, col = [], 0
        else:
            cur[col:col + 1] = [ch]
            col += 1
        i += 1
    return lines + (["".join(cur)] if cur else [])


def run_in_terminal(env, *args, environ=None):
    """process_queue.py with stdout and stderr on one pseudo-terminal; (exit code, what it wrote)."""
    master, slave = pty.openpty()
    argv = [sys.executable, str(env.runner.plugin_dir / "process_queue.py"), "--data-dir", str(env.runner.data_dir),
            *args]
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=cli_env(**(environ or {})))
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, "no output from the CLI"
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(60), out.decode()


BAR = re.compile(r"^\[[#.]{30}\] \d+/\d+(  \d+\.\d/s  \d+:\d\d left)?$")


def test_progress_bar_on_a_terminal_with_a_warning_in_the_middle(env):
    items = {i: env.scene_with_item(i)[1] for i in range(1, 121)}  # covers: a warning each, without --stash-url
    never = env.stash.add_scene(title="Never", files=["/data/stash/never.mp4"])  # Plex never gets this file
    env.plex.fault(status=503)
    assert "waiting to retry" in env.runner.run_task("Sync All Scenes to Plex").output  # some may be due already
    kill_worker(env)
    env.plex.clear_faults()
    env.make_retries_due()

    code, raw = run_in_terminal(env, "--plex-url", env.plex.url, "--plex-library", "Stash",
                                environ={"PLEX_TOKEN": PLEX_TOKEN})
    assert code == EXIT_WAITING, raw
    shown = [line for line in screen(raw) if line]
    warning = next(i for i, line in enumerate(shown) if f"Scene {never}: " in line)
    assert re.search(r"retry \d+/12 in \d+s$", shown[warning]), shown[warning]
    warnings = [i for i, line in enumerate(shown) if line.startswith("WARNING ")]
    assert not [shown[i] for i in warnings if "[#" in shown[i] or "[." in shown[i]]  # no bar mixed into a line
    bars = [i for i, line in enumerate(shown) if BAR.match(line)]
    assert bars and bars[-1] > warning, shown  # the bar is drawn again below the warning
    assert shown[bars[-1]].startswith("[" + "#" * 30 + "] 121/121  ") and shown[bars[-1]].endswith(" left")
    rest = [line for i, line in enumerate(shown) if i not in bars and i not in warnings]
    assert rest[0] == "Done: 120 synced, 0 unchanged, 1 not found, 0 failed, 1 waiting to retry", shown
    assert rest[1].startswith("No background worker was started (no --stash-url): the retries run with the next "
                              "save in Stash or PlexSync task, or when you run this command again after "), shown
    assert len(rest) == 2, shown  # every other line is a whole bar or a whole log line
    assert "processed " not in raw
    assert all(env.plex.item(rk)["title"] == f"Title {i}" for i, rk in items.items())


def test_json_for_a_sync_run_agrees_with_stats_only(env):
    waiting_snapshot_jobs(env, 3)
    never = env.stash.add_scene(title="Never", files=["/data/stash/never.mp4"])
    queue_by_hook(env, never)
    run = cli(env, "--plex-url", env.plex.url, "--plex-library", "Stash", "--json",
              environ={"PLEX_TOKEN": PLEX_TOKEN, "STASH_URL": env.stash.url, "STASH_API_KEY": STASH_API_KEY})
    assert run.returncode == EXIT_WAITING, run.stderr
    result = json.loads(run.stdout)  # one JSON object, no progress lines
    assert result["exit_code"] == EXIT_WAITING
    assert (result["counts"]["synced"], result["counts"]["not_found"]) == (3, 1)
    assert result["handoff"].startswith("A background worker runs the retries (next at ")
    wait_for(lambda: env.runner.worker_pid(), 30, message="the worker the CLI handed the retry to")
    kill_worker(env)
    stats = json.loads(cli(env, "--stats-only", "--json").stdout)
    # The not-found retry's jittered delay may already have run out: due ("pending") or not, it is the one left.
    assert result["queue"]["waiting_retry"] + result["queue"]["pending"] == 1
    assert stats["waiting_retry"] + stats["pending"] + stats["in_progress"] == 1  # wherever the worker left it
    assert_no_secret(env, run.stdout, run.stderr)

    for argv, key in ((["--dlq-list"], None), (["--dlq-clear"], "cleared"), (["--dlq-purge"], "purged"),
                      (["--dlq-requeue"], "moved")):
        out = cli(env, *argv, "--json")
        assert out.returncode == EXIT_OK, out.stderr
        parsed = json.loads(out.stdout)
        assert parsed == [] if key is None else parsed[key] == 0, out.stdout
    bad = cli(env, "--json", data_dir=env.runner.base / "typo")
    assert bad.returncode == EXIT_CONFIG and json.loads(bad.stdout)["exit_code"] == EXIT_CONFIG


def test_read_only_commands_create_no_file(env):
    missing = env.runner.base / "typo"
    for argv in (["--stats-only"], ["--stats-only", "--json"], ["--dlq-list"]):
        run = cli(env, *argv, data_dir=missing)
        assert run.returncode == EXIT_CONFIG and "No PlexSync data folder" in run.stderr
        assert not missing.exists()
    empty = env.runner.base / "empty"
    empty.mkdir()
    stats = cli(env, "--stats-only", data_dir=empty)
    assert stats.returncode == EXIT_OK and stats.stdout.startswith("Queue: 0 pending, 0 waiting to retry")
    listed = cli(env, "--dlq-list", data_dir=empty)
    assert listed.returncode == EXIT_OK and listed.stdout.strip() == "Dead-letter queue is empty"
    assert list(empty.iterdir()) == []


def test_job_needing_a_stash_fetch(env):
    items = {i: env.scene_with_item(i)[1] for i in (1, 2)}
    queue_by_hook(env, 1, 2)  # hook jobs carry no scene data: the CLI must fetch it

    blind = cli(env, "--plex-url", env.plex.url, "--plex-library", "Stash", environ={"PLEX_TOKEN": PLEX_TOKEN})
    assert blind.returncode == EXIT_WAITING  # the jobs wait for Stash
    assert "pass --stash-url" in blind.stderr
    assert env.stats()["ready"] + env.stats()["waiting_retry"] == 2  # nothing lost
    env.make_retries_due()

    # Settings (Plex URL, token, library) come from Stash; the API key from the environment.
    run = cli(env, *stash_args(env), environ={"STASH_API_KEY": STASH_API_KEY})
    assert run.returncode == EXIT_OK, run.stderr
    assert run.stdout.splitlines()[-1].startswith("Done: 2 synced, 0 unchanged")
    for i, rk in items.items():
        assert env.plex.item(rk)["title"] == f"Title {i}"
    assert_no_secret(env, blind.stdout, blind.stderr, run.stdout, run.stderr)

    # The same with the key on the command line.
    env.stash.update_scene(1, title="Again")
    queue_by_hook(env, 1)
    flag = cli(env, *stash_args(env), "--stash-api-key", STASH_API_KEY)
    assert flag.returncode == EXIT_OK, flag.stderr
    assert env.plex.item(items[1])["title"] == "Again"

    queue_by_hook(env, 2)
    wrong = cli(env, *stash_args(env), environ={"STASH_API_KEY": "not-the-key-0123456789"})
    assert wrong.returncode == EXIT_CONFIG  # no settings from Stash and none given
    assert "Could not read the plugin settings from Stash (Stash answered 401" in wrong.stderr
    assert "Configuration error: " in wrong.stderr and env.stats()["ready"] == 1


# -- exit codes -------------------------------------------------------------------------

def test_exit_codes_failures_config_and_nothing(env):
    never_ran = cli(env, "--plex-url", env.plex.url)  # the plugin never ran: no data folder yet
    assert never_ran.returncode == EXIT_CONFIG and "No PlexSync data folder at " in never_ran.stderr
    env.runner.data_dir.mkdir(parents=True)
    assert cli(env, "--plex-url", env.plex.url).returncode == EXIT_OK  # empty queue: nothing to do

    nofile = env.stash.add_scene(title="No file")
    queue_by_hook(env, nofile)
    config = cli(env)  # no Plex settings and no Stash to read them from
    assert config.returncode == EXIT_CONFIG
    assert config.stderr.startswith("Configuration error: ")
    assert env.stats()["ready"] == 1

    failed = cli(env, *stash_args(env), environ={"STASH_API_KEY": STASH_API_KEY})
    assert failed.returncode == EXIT_FAILED
    assert counts(failed.stdout) == (0, 0, 0, 1)
    assert "--dlq-list" in failed.stderr

    missing = cli(env, "--stats-only", data_dir=env.runner.base / "typo")
    assert missing.returncode == EXIT_CONFIG and "No PlexSync data folder" in missing.stderr
    assert not (env.runner.base / "typo").exists()


def test_busy_while_another_process_holds_the_drain_lock(env):
    sid, rk = env.scene_with_item(1)
    queue_by_hook(env, sid)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from common.locking import FileLock;"
         "lock = FileLock(sys.argv[2]); assert lock.acquire(); print('locked', flush=True); time.sleep(120)",
         str(env.runner.plugin_dir), str(env.runner.data_dir / "drain.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = cli(env, "--plex-url", env.plex.url, environ={"PLEX_TOKEN": PLEX_TOKEN})
        assert busy.returncode == EXIT_BUSY
        assert busy.stderr.startswith(f"A PlexSync worker is already processing the queue (pid {holder.pid})")
        assert env.stats()["ready"] == 1 and env.plex.count("PUT") == 0
        assert cli(env, "--stats-only").returncode == EXIT_OK  # statistics need no lock
    finally:
        holder.kill()
        holder.wait()
    done = cli(env, *stash_args(env), environ={"STASH_API_KEY": STASH_API_KEY})
    assert done.returncode == EXIT_OK, done.stderr
    assert env.plex.item(rk)["title"] == "Title 1"


def test_busy_while_the_background_worker_runs(env):
    sid, _ = env.scene_with_item(1)
    env.settings(poll_interval=30)  # an idle worker lingers
    env.hook(sid)
    wait_for(lambda: env.runner.worker_pid(), 30, message="the background worker")
    busy = cli(env, "--plex-url", env.plex.url, environ={"PLEX_TOKEN": PLEX_TOKEN})
    assert busy.returncode == EXIT_BUSY
    assert f"(pid {env.runner.worker_pid()})" in busy.stderr


# -- the dead-letter queue -------------------------------------------------------------------

def test_dlq_list_requeue_purge_clear(env):
    nofile = [env.stash.add_scene(title=f"No file {i}") for i in (1, 2, 3)]
    queue_by_hook(env, *nofile)
    assert cli(env, *stash_args(env), environ={"STASH_API_KEY": STASH_API_KEY}).returncode == EXIT_FAILED

    listed = cli(env, "--dlq-list")
    assert listed.returncode == EXIT_OK
    lines = listed.stdout.splitlines()
    assert len(lines) == 3
    for sid, line in zip(sorted(nofile, reverse=True), lines):
        assert re.match(rf"#\d+ scene {sid} \d{{4}}-\d\d-\d\d \d\d:\d\d after 0 retries: SceneHasNoFile: "
                        rf"scene {sid} has no file to match in Plex$", line), line
    as_json = json.loads(cli(env, "--dlq-list", "--json").stdout)
    assert sorted(e["scene_id"] for e in as_json) == sorted(nofile)
    assert {e["error_type"] for e in as_json} == {"SceneHasNoFile"}

    one = cli(env, "--dlq-requeue", str(nofile[0]))
    assert one.returncode == EXIT_OK and one.stdout.startswith("Moved 1 dead-letter entries back to the queue")
    assert (env.stats()["ready"], len(env.dlq())) == (1, 2)
    assert cli(env, "--dlq-requeue", "99999").returncode == EXIT_OK
    bad = cli(env, "--dlq-requeue", "abc")
    assert bad.returncode == EXIT_CONFIG and "takes a scene id" in bad.stderr
    rest = cli(env, "--dlq-requeue")
    assert rest.returncode == EXIT_OK and rest.stdout.startswith("Moved 2 dead-letter entries")
    assert (env.stats()["ready"], len(env.dlq())) == (3, 0)

    # Fix one scene, process: it syncs, the two others come back to the DLQ.
    path = "/data/stash/fixed.mp4"
    rk = env.plex.add_item(env.section, "fixed", [path])
    env.stash.update_scene(nofile[0], files=[path])
    run = cli(env, *stash_args(env), environ={"STASH_API_KEY": STASH_API_KEY})
    assert run.returncode == EXIT_FAILED and counts(run.stdout) == (1, 0, 0, 2)
    assert env.plex.item(rk)["title"] == "No file 1"

    with sqlite3.connect(str(env.runner.data_dir / "dlq.db")) as conn:
        conn.execute("UPDATE dlq SET failed_at = ? WHERE scene_id = ?", (time.time() - 10 * 86400, nofile[1]))
    assert cli(env, "--dlq-purge").stdout.strip() == "Purged 0 dead-letter entries older than 30 days"
    purge = cli(env, "--dlq-purge", "--days", "7")
    assert purge.returncode == EXIT_OK and purge.stdout.strip() == "Purged 1 dead-letter entries older than 7 days"
    assert [e["scene_id"] for e in env.dlq()] == [nofile[2]]

    clear = cli(env, "--dlq-clear")
    assert clear.returncode == EXIT_OK and clear.stdout.strip() == "Cleared 1 dead-letter entries"
    empty = cli(env, "--dlq-list")
    assert empty.returncode == EXIT_OK and empty.stdout.strip() == "Dead-letter queue is empty"
    assert cli(env, "--dlq-clear").returncode == EXIT_OK  # already empty: still done


def test_help_names_the_exit_codes(env):
    run = cli(env, "--help")
    assert run.returncode == 0
    for code, meaning in ((0, "done: nothing to do, or every due job synced"), (1, "some jobs failed"),
                          (2, "configuration error"), (3, "some jobs wait for a retry"), (4, "busy")):
        assert re.search(rf"^  {code}  {meaning}", run.stdout, re.MULTILINE), run.stdout
    assert "$PLEX_TOKEN" in run.stdout and "$STASH_API_KEY" in run.stdout


def test_saves_kept_in_pending_are_counted_and_synced_by_a_run(env):
    from common import pending
    from common.paths import DataPaths
    from tests.runner import scene_update

    sid, rk = env.scene_with_item(1)
    env.stash.update_scene(sid, title="Kept then synced by the CLI")
    pending.keep(DataPaths(env.runner.data_dir), scene_update(sid, title="Kept then synced by the CLI"))
    text = cli(env, "--stats-only")
    assert text.stdout.splitlines()[0] == "Queue: 0 pending (+1 kept in pending/), 0 waiting to retry, 0 in progress"
    assert json.loads(cli(env, "--stats-only", "--json").stdout)["kept_saves"] == 1
    run = cli(env, "--plex-url", env.plex.url, "--plex-library", "Stash",
              environ={"PLEX_TOKEN": PLEX_TOKEN, "STASH_URL": env.stash.url, "STASH_API_KEY": STASH_API_KEY})
    assert run.returncode == EXIT_OK, run.stderr
    assert env.plex.item(rk)["title"] == "Kept then synced by the CLI"
    assert json.loads(cli(env, "--stats-only", "--json").stdout)["kept_saves"] == 0
