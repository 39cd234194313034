"""Import Plex Watch History end to end: the task and the CLI, launched as Stash
and cron launch them, real plexapi/stashapi against the emulators."""

import json
import re
import time

import requests

from tests.e2e import STASH_API_KEY, env  # noqa: F401
from tests.test_cli import EXIT_CONFIG, EXIT_OK, cli, stash_args
from tests.test_e2e_tasks import counts

TASK = "Import Plex Watch History"
SYNC_ALL = "Sync All Scenes to Plex"
SUMMARY = re.compile(r"(\d+) plays added to (\d+) scenes, (\d+) resume points set, (\d+) plays already in Stash "
                     r"\((\d+) history entries read")
T0 = 1_700_000_000


def figures(output):
    match = SUMMARY.search(output or "")
    assert match, f"no import counts in {output!r}"
    return tuple(int(n) for n in match.groups())


def skipped(output):
    tail = (output or "").split("skipped: ", 1)[1]
    return {m.group(2).replace(" ", "_"): int(m.group(1)) for m in re.finditer(r"(\d+) ([a-z ]+?)(?:,|\))", tail)}


def add_stash_play(env, scene_id, epoch):
    query = "mutation($id: ID!, $t: [Timestamp!]) { sceneAddPlay(id: $id, times: $t) { count } }"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    r = requests.post(env.stash.graphql_url, json={"query": query, "variables": {"id": str(scene_id), "t": [stamp]}},
                      headers={"ApiKey": STASH_API_KEY}, timeout=10)
    assert r.ok and "errors" not in r.json(), r.text


def resume_time(env, scene_id):
    query = "query($id: ID) { findScene(id: $id) { resume_time } }"
    r = requests.post(env.stash.graphql_url, json={"query": query, "variables": {"id": str(scene_id)}},
                      headers={"ApiKey": STASH_API_KEY}, timeout=10)
    return r.json()["data"]["findScene"]["resume_time"]


def synced_scenes(env, n):
    """n matched scenes (a Sync All built the match index), scene id -> rating key."""
    pairs = dict(env.scene_with_item(i) for i in range(1, n + 1))
    assert counts(env.runner.run_task(SYNC_ALL).output)[0] == n
    env.settle()
    return pairs


def plays(env, scene_id):
    return sorted(int(t.timestamp()) for t in env.stash.play_history(scene_id))


def test_first_import_pages_accounts_skips_and_no_echo(env):
    env.settings(history_accounts="plexowner, alice")
    env.plex.add_account(2, "alice")
    env.plex.add_account(3, "bob")
    pairs = synced_scenes(env, 3)
    (s1, r1), (s2, r2), (s3, r3) = sorted(pairs.items())
    stray = env.plex.add_item(env.section, "stray", ["/data/stash/stray.mp4"])  # no Stash scene
    gone = env.plex.add_item(env.section, "gone", ["/data/stash/gone.mp4"])
    for i in range(240):
        env.plex.add_play((r1, r2, r3)[i % 3], T0 + 60 * i)                 # owner: 80 plays each
    for i in range(10):
        env.plex.add_play(r1, T0 + 30 + 60 * i, account_id=2)                # alice: counted
    for i in range(5):
        env.plex.add_play(r2, T0 + 40 + 60 * i, account_id=3)                # bob: not chosen
    env.plex.add_play(r1, T0 + 7, account_id=99)                            # unknown account
    env.plex.add_play(r2, None)                                              # no time
    env.plex.add_play(r2, int(time.time()) + 86400)                          # in the future
    env.plex.add_play(stray, T0 + 9)                                         # unmatched
    env.plex.add_play(gone, T0 + 11)
    env.plex.delete_item(gone)                                               # deleted
    add_stash_play(env, s1, T0)                                              # already in Stash
    env.plex.set_progress(r3, 90_500)
    before = {sid: env.stash.scene(sid)["updated_at"] for sid in pairs}
    env.plex.clear_requests()

    result = env.runner.run_task(TASK)

    assert result.error is None, result.error
    assert figures(result.output) == (249, 3, 1, 1, 260)
    assert skipped(result.output) == {"unmatched": 1, "deleted": 1, "unknown_account": 1, "bad_time": 2}
    assert len(plays(env, s1)) == 80 + 10 and len(plays(env, s2)) == 80 and len(plays(env, s3)) == 80
    assert resume_time(env, s3) == 90.5 and resume_time(env, s1) == 0
    assert env.plex.count("GET", "/status/sessions/history/all") == 3  # 260 entries, 100 a page
    # No echo: nothing was written to Plex, no scene looks changed to PlexSync.
    assert env.plex.count("PUT") == 0
    assert {sid: env.stash.scene(sid)["updated_at"] for sid in pairs} == before
    assert counts(env.runner.run_task(SYNC_ALL).output)[:2] == (0, 3)
    assert env.plex.count("PUT") == 0


def test_second_run_adds_nothing_then_a_new_play_and_resume_point(env):
    (s1, r1), = synced_scenes(env, 1).items()
    env.plex.add_play(r1, T0)
    assert figures(env.runner.run_task(TASK).output)[:3] == (1, 1, 0)
    again = env.runner.run_task(TASK)
    assert figures(again.output) == (0, 0, 0, 0, 0)  # not even the watermark's second again
    assert plays(env, s1) == [T0]
    env.plex.add_play(r1, T0 + 3600)
    env.plex.set_progress(r1, 30_000)
    assert figures(env.runner.run_task(TASK).output)[:3] == (1, 1, 1)
    assert plays(env, s1) == [T0, T0 + 3600]
    assert resume_time(env, s1) == 30.0
    # The same resume point again is no change; a new one is.
    assert figures(env.runner.run_task(TASK).output)[2] == 0
    env.plex.set_progress(r1, 45_000)
    assert figures(env.runner.run_task(TASK).output)[2] == 1


def test_stash_failure_mid_import_loses_nothing(env):
    pairs = synced_scenes(env, 3)
    for n, rk in enumerate(pairs.values()):
        env.plex.add_play(rk, T0 + n)
        env.plex.add_play(rk, T0 + 100 + n)
    env.stash.fail_plays_after(1)
    failed = env.runner.run_task(TASK)
    assert failed.error and failed.output is None
    assert failed.has_log("nothing was lost", "error")
    assert sum(len(plays(env, sid)) for sid in pairs) == 2
    env.stash.fail_plays_after(None)
    resumed = env.runner.run_task(TASK)
    assert figures(resumed.output)[:4] == (4, 2, 0, 2)
    assert all(len(plays(env, sid)) == 2 for sid in pairs)


def test_plex_failure_mid_import_loses_nothing(env):
    (s1, r1), = synced_scenes(env, 1).items()
    for i in range(150):
        env.plex.add_play(r1, T0 + i)
    env.plex.fault(status=503, path_prefix="/hubs/continueWatching")
    failed = env.runner.run_task(TASK)
    assert failed.error and plays(env, s1) == []
    env.plex.clear_faults()
    assert figures(env.runner.run_task(TASK).output)[0] == 150


def test_cli_import_reports_counts_as_json(env):
    (s1, r1), = synced_scenes(env, 1).items()
    env.plex.add_play(r1, T0)
    env.plex.add_play(r1, T0 + 5, account_id=42)
    run = cli(env, "--import-history", "--json", *stash_args(env), environ={"STASH_API_KEY": STASH_API_KEY})
    assert run.returncode == EXIT_OK, run.stderr
    report = json.loads(run.stdout)
    assert report["plays_added"] == 1 and report["scenes"] == 1
    assert report["skipped"]["unknown_account"] == 0  # owner-only: asked with accountID=1
    text = cli(env, "--import-history", *stash_args(env), environ={"STASH_API_KEY": STASH_API_KEY})
    assert text.returncode == EXIT_OK and figures(text.stdout)[0] == 0
    assert plays(env, s1) == [T0]
    assert cli(env, "--import-history").returncode == EXIT_CONFIG  # it writes to Stash: needs --stash-url


def test_background_worker_imports_when_enabled_at_most_every_few_minutes(env):
    env.settings(import_watch_history=True)
    (s1, r1), = synced_scenes(env, 1).items()
    env.plex.add_play(r1, T0)
    env.hook(s1)  # the hook starts a background worker, which imports first
    env.settle()
    assert plays(env, s1) == [T0]
    env.plex.add_play(r1, T0 + 60)
    env.hook(s1)
    env.settle()
    assert plays(env, s1) == [T0]  # imported moments ago: not again yet
    state = env.runner.data_dir / "history_state.json"
    data = json.loads(state.read_text())
    data["last_run"] -= 3600  # as if the last import were an hour old
    state.write_text(json.dumps(data))
    env.hook(s1)
    env.settle()
    assert plays(env, s1) == [T0, T0 + 60]


def test_background_worker_does_not_import_by_default(env):
    (s1, r1), = synced_scenes(env, 1).items()
    env.plex.add_play(r1, T0)
    env.hook(s1)
    env.settle()
    assert plays(env, s1) == []
    assert not (env.runner.data_dir / "history_state.json").exists()
