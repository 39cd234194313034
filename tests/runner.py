"""Launch PlexSync exactly as Stash does (pkg/plugin/raw.go, common/msg.go).

* The plugin is installed as the plugin manager would: only the runtime
  files, into ``<tmp>/plugins/PlexSync/``.
* ``exec`` comes from PlexSync.yml with ``{pluginDir}`` substituted and
  ``python`` resolved to this interpreter; PYTHONPATH gets the plugins
  folder; the cwd is elsewhere (Stash's own).
* stdin is one JSON object (no trailing newline), then closed:
  ``{"server_connection": {...}, "args": defaultArgs + hookContext}``.
* stdout is parsed as ``{"output", "error"}``; stderr as ``\\x01<level>\\x02``
  lines, progress included.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.release import build_zip  # noqa: E402

# SceneUpdateInput as Go marshals it (pkg/models/scene.go, no omitempty).
SCENE_UPDATE_KEYS = (
    "clientMutationId", "id", "title", "code", "details", "director", "url", "urls", "date",
    "rating100", "o_counter", "organized", "studio_id", "gallery_ids", "performer_ids", "movies",
    "groups", "tag_ids", "cover_image", "stash_ids", "resume_time", "play_duration", "play_count",
    "primary_file_id",
)
LEVELS = {"t": "trace", "d": "debug", "i": "info", "w": "warning", "e": "error"}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    duration: float
    output: Any = None
    error: Optional[str] = None
    parsed: bool = False
    logs: List[Tuple[str, str]] = field(default_factory=list)
    progress: List[float] = field(default_factory=list)

    def messages(self, level: Optional[str] = None) -> List[str]:
        return [m for lv, m in self.logs if level is None or lv == level]

    def has_log(self, text: str, level: Optional[str] = None) -> bool:
        return any(text in m for m in self.messages(level))


def parse_output(stdout: str, stderr: str, errlog: str = "error") -> Tuple[Any, Optional[str], bool, list, list]:
    output, error, parsed = stdout, None, False
    try:
        obj = json.loads(stdout)
        if isinstance(obj, dict) and set(obj) <= {"output", "error"}:
            output, error, parsed = obj.get("output"), obj.get("error"), True
    except ValueError:
        pass
    logs, progress = [], []
    for line in stderr.splitlines():
        if len(line) >= 2 and line[0] == "\x01" and line[2:3] == "\x02":
            code, msg = line[1], line[3:]
            if code == "p":
                progress.append(float(msg))
            else:
                logs.append((LEVELS.get(code, errlog), msg))
        elif line.strip():
            logs.append((errlog, line))
    return output, error, parsed, logs, progress


class PluginRunner:
    def __init__(self, base: Path, stash, *, host: str = "127.0.0.1", from_zip: Optional[bytes] = None,
                 data_dir: Optional[Path] = None) -> None:
        self.base = Path(base)
        self.stash = stash
        self.host = host
        self.plugins_dir = self.base / "plugins"
        self.plugin_dir = self.plugins_dir / "PlexSync"
        self.stash_dir = self.base / "stash"  # Stash's cwd and config dir
        self.stash_dir.mkdir(parents=True, exist_ok=True)
        self.install(from_zip if from_zip is not None else build_zip(ROOT))
        self.manifest = yaml.safe_load((self.plugin_dir / "PlexSync.yml").read_text(encoding="utf-8"))
        self.env_data_dir = data_dir
        self.data_dir = Path(data_dir) if data_dir else self.plugin_dir / "data"
        self.cookie = stash.new_session_cookie() if stash is not None else ""
        self.procs: List[subprocess.Popen] = []

    def install(self, zip_bytes: bytes) -> None:
        if self.plugin_dir.exists():
            shutil.rmtree(self.plugin_dir)
        self.plugin_dir.mkdir(parents=True)
        zip_path = self.base / "PlexSync.zip"
        zip_path.write_bytes(zip_bytes)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(self.plugin_dir)

    # -- what Stash writes on stdin ---------------------------------------------

    def server_connection(self) -> Dict[str, Any]:
        return {
            "Scheme": "http",
            "Host": self.host,
            "Port": self.stash.port if self.stash is not None else 9,
            "SessionCookie": {
                "Name": "session", "Value": self.cookie, "Path": "/", "Domain": "",
                "Expires": "2099-01-01T00:00:00Z", "RawExpires": "", "MaxAge": 3600, "Secure": False,
                "HttpOnly": False, "SameSite": 2, "Raw": "", "Unparsed": None,
            },
            "Dir": str(self.stash_dir),
            "PluginDir": str(self.plugin_dir),
        }

    def command(self, exec_args: Tuple[str, ...] = ()) -> List[str]:
        argv = [str(a).replace("{pluginDir}", str(self.plugin_dir)) for a in self.manifest["exec"]]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv + list(exec_args)

    def env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "STASH_PLUGIN_DATA" and not k.startswith("PYTEST")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH", ""), str(self.plugins_dir)]))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if self.env_data_dir:
            env["STASH_PLUGIN_DATA"] = str(self.env_data_dir)
        return env

    def _stdin(self, args: Dict[str, Any]) -> bytes:
        """As Stash writes it: Go's json.Marshal (common/msg.go) sends non-ASCII as raw UTF-8
        and escapes <, > and & for HTML safety."""
        text = json.dumps({"server_connection": self.server_connection(), "args": args}, ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("utf-8")

    def start(self, args: Dict[str, Any], exec_args: Tuple[str, ...] = ()) -> subprocess.Popen:
        proc = subprocess.Popen(self.command(exec_args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=str(self.stash_dir), env=self.env())
        proc.stdin.write(self._stdin(args))
        proc.stdin.close()  # Stash writes one JSON object and closes stdin
        proc.stdin = None
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen, started: float, timeout: float = 120) -> Result:
        # Stash reads stdout to EOF: a child that kept the pipe open would hang here.
        out, err = proc.communicate(timeout=timeout)
        duration = time.perf_counter() - started
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        output, error, parsed, logs, progress = parse_output(stdout, stderr, self.manifest.get("errLog", "error"))
        if proc.returncode and not error:
            error = f"exit status {proc.returncode}"
        return Result(proc.returncode, stdout, stderr, duration, output, error, parsed, logs, progress)

    def run(self, args: Dict[str, Any], timeout: float = 120) -> Result:
        started = time.perf_counter()
        return self.finish(self.start(args), started, timeout)

    # -- hooks ---------------------------------------------------------------------

    def hook_args(self, hook_context: Dict[str, Any], hook_name: Optional[str] = None) -> Dict[str, Any]:
        hook = next(h for h in self.manifest["hooks"] if hook_name in (None, h["name"]))
        args = dict(hook.get("defaultArgs") or {})
        args["hookContext"] = hook_context
        return args

    def run_hook(self, hook_context: Dict[str, Any], timeout: float = 60) -> Result:
        return self.run(self.hook_args(hook_context), timeout)

    # -- tasks ---------------------------------------------------------------------

    def task_args(self, task_name: str, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        task = next((t for t in self.manifest["tasks"] if t["name"] == task_name), None)
        if task is None:
            raise KeyError(f"no task named {task_name!r} in PlexSync.yml")
        args = {k: str(v) for k, v in (task.get("defaultArgs") or {}).items()}
        args.update(extra or {})
        return args

    def run_task(self, task_name: str, extra: Optional[Dict[str, Any]] = None, timeout: float = 300) -> Result:
        return self.run(self.task_args(task_name, extra), timeout)

    def start_task(self, task_name: str) -> subprocess.Popen:
        return self.start(self.task_args(task_name))

    # -- the background worker -------------------------------------------------------

    def worker_pid(self) -> Optional[int]:
        from common.locking import FileLock

        lock = FileLock(self.data_dir / "worker.lock")
        if not (self.data_dir / "worker.lock").exists() or not lock.is_locked_elsewhere():
            return None
        return lock.holder_pid()

    def queue_stats(self) -> Dict[str, Any]:
        from sync_queue.queue import JobQueue

        if not (self.data_dir / "queue").exists():
            return {"ready": 0, "waiting_retry": 0, "in_progress": 0, "next_retry_at": None}
        queue = JobQueue(str(self.data_dir / "queue"))
        try:
            return queue.stats()
        finally:
            queue.close()

    def worker_processes(self) -> set:
        return worker_processes(self.plugin_dir)

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no job is due or in flight and every background worker has exited.

        A job left due with no worker running is a lost wake-up: that times out.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.queue_stats()
            if (self.worker_pid() is None and stats["ready"] == 0 and stats["in_progress"] == 0
                    and not self.worker_processes()):
                return
            time.sleep(0.1)
        raise TimeoutError(f"background worker still running after {timeout}s; log:\n{self.worker_log()}")

    def worker_log(self) -> str:
        path = self.data_dir / "worker.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def kill_workers(self) -> None:
        pid = self.worker_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def worker_processes(plugin_dir) -> set:
    """Live ``PlexSync.py --worker`` processes started from ``plugin_dir`` (Linux /proc; else empty).

    Includes a worker spawned but not yet holding the lock, which the lock
    alone cannot show.
    """
    if not os.path.isdir("/proc"):
        return set()
    needle = str(Path(plugin_dir) / "PlexSync.py").encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        # A zombie has exited; in containers without a reaping init it lingers.
        if b"--worker" in argv and needle in argv and state not in ("Z", "X"):
            found.add(int(entry))
    return found


# -- hook contexts as Stash builds them (plugins.go, changeset_translator.go) -------

def scene_update(scene_id: int, **fields: Any) -> Dict[str, Any]:
    """sceneUpdate: every SceneUpdateInput key present, unset ones null."""
    data = {key: None for key in SCENE_UPDATE_KEYS}
    data["id"] = str(scene_id)
    data.update(fields)
    return {"id": int(scene_id), "type": "Scene.Update.Post", "input": data,
            "inputFields": ["id", *fields.keys()]}


def scenes_update(scene_id: int, inputs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """scenesUpdate: ``input`` is the whole array; inputFields this scene's own keys."""
    full = []
    own: List[str] = []
    for item in inputs:
        data = {key: None for key in SCENE_UPDATE_KEYS}
        data.update(item)
        full.append(data)
        if str(item.get("id")) == str(scene_id):
            own = list(item.keys())
    return {"id": int(scene_id), "type": "Scene.Update.Post", "input": full, "inputFields": own}


def bulk_update(scene_id: int, ids: List[int], **fields: Any) -> Dict[str, Any]:
    """bulkSceneUpdate: one hook per id, input = BulkSceneUpdateInput (nulls omitted)."""
    data = {"ids": [str(i) for i in ids], **fields}
    return {"id": int(scene_id), "type": "Scene.Update.Post", "input": data, "inputFields": list(data.keys())}


def scan_update(scene_id: int) -> Dict[str, Any]:
    """A scan that moved/renamed/modified a file: input null, no inputFields."""
    return {"id": int(scene_id), "type": "Scene.Update.Post", "input": None}
