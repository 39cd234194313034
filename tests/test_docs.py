"""The user documentation, checked against the code it describes.

* docs/config.md: its settings table lists every PlexSyncConfig field and
  every PlexSync.yml setting, with the model's type, default and range; the
  UI descriptions in PlexSync.yml state the same defaults and ranges.
* Every line of a ```log block in README.md or docs/ is a line the code can
  print: placeholders (<file>, N, ...) and the code's %s / %d / {...} format
  fields are wildcards, and a wildcard that stands for a longer message must
  itself be a message found in the code.
* Task names, data files, CLI flags and exit codes are documented; README's
  developer commands are the ones .ci/run runs; relative links resolve.
* The README's demo and release commands work.

* Statements about behaviour (configuration error messages, what `enabled`
  does) are checked against the code and, for `enabled`, a run of the hook.

Pure file checks except the demo, the release and the `enabled` run.
"""

import ast
import re
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from tests.e2e import env, wait_for  # noqa: F401  (the checks of behaviour the docs state)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PRODUCT = ("PlexSync.py", "process_queue.py", "common", "history", "hooks", "plex", "sync_queue", "validation", "worker")


def read(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text(encoding="utf-8")


def doc_files():
    return [README, *sorted(DOCS.glob("*.md"))]


def manifest():
    return yaml.safe_load(read(ROOT / "PlexSync.yml"))


# -- docs/config.md -------------------------------------------------------------

TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}
UI_TYPES = {str: "STRING", int: "NUMBER", float: "NUMBER", bool: "BOOLEAN"}
# Filled in from Stash's connection on every run, whatever the settings say.
AUTOMATIC = {"stash_url", "stash_session_cookie"}
COLUMNS = ["Setting", "Type", "Default", "Range", "Set in", "What it does"]


def _cells(line: str):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _plain(cell: str) -> str:
    return cell.replace("`", "").strip()


def config_table():
    """{setting: {column: cell}} from the first table of docs/config.md with our header."""
    lines = read(DOCS / "config.md").splitlines()
    for n, line in enumerate(lines):
        if line.startswith("|") and _cells(line)[:len(COLUMNS)] == COLUMNS:
            rows = {}
            for row in lines[n + 2:]:
                if not row.startswith("|"):
                    break
                cells = _cells(row)
                rows[_plain(cells[0])] = dict(zip(COLUMNS, cells))
            return rows
    pytest.fail(f"docs/config.md has no table with the header | {' | '.join(COLUMNS)} |")


def model_fields():
    from validation.config import PlexSyncConfig

    return PlexSyncConfig.model_fields


def _constraint(field, name):
    for meta in field.metadata:
        if hasattr(meta, name):
            return getattr(meta, name)
    return None


def _number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else str(value)


def expected_default(field) -> str:
    if field.is_required():
        return "required"
    if field.default == "":
        return "empty"
    if isinstance(field.default, bool):
        return "true" if field.default else "false"
    return _number(field.default)


def expected_range(field) -> str:
    ge, le, min_length = _constraint(field, "ge"), _constraint(field, "le"), _constraint(field, "min_length")
    if ge is not None or le is not None:
        return f"{_number(ge)}–{_number(le)}"
    if min_length is not None:
        return f"at least {min_length} characters"
    return "—"


def test_config_table_lists_every_setting_once():
    table = config_table()
    ui = set(manifest()["settings"])
    fields = set(model_fields())
    assert ui <= fields, f"PlexSync.yml settings the model does not read: {sorted(ui - fields)}"
    assert set(table) == fields | ui, (
        f"undocumented: {sorted((fields | ui) - set(table))}; documented but unknown: {sorted(set(table) - fields - ui)}")


@pytest.mark.parametrize("name", sorted(model_fields()))
def test_config_row_matches_the_model(name):
    field = model_fields()[name]
    row = config_table().get(name)
    assert row, f"{name} is missing from docs/config.md"
    assert _plain(row["Type"]) == TYPE_NAMES[field.annotation], f"{name}: type"
    assert _plain(row["Default"]) == expected_default(field), f"{name}: default"
    assert _plain(row["Range"]).replace("-", "–") == expected_range(field), f"{name}: range"
    where = _plain(row["Set in"])
    if name in manifest()["settings"]:
        assert where == "Stash UI", f"{name} is a PlexSync.yml setting"
    elif name in AUTOMATIC:
        assert where == "automatic", f"{name} comes from Stash's connection"
    else:
        assert where == "GraphQL only", f"{name} is not in PlexSync.yml, so only configurePlugin sets it"
    assert len(_plain(row["What it does"])) > 15, f"{name}: say what it does"


def test_every_setting_has_its_own_section():
    text = read(DOCS / "config.md")
    missing = [name for name in model_fields() if not re.search(rf"^### `{name}`\s*$", text, re.M)]
    assert not missing, f"docs/config.md needs a '### `name`' section (what it does, when to change it) for {missing}"


def test_automatic_settings_really_come_from_the_connection():
    from validation.config import load_config

    settings = {"plex_url": "http://plex:32400", "plex_token": "abcdefghij12",
                "stash_url": "http://wrong:1", "stash_session_cookie": "from-settings"}
    cfg = load_config(settings, stash_url="http://stash:9999", stash_session_cookie="from-stash")
    assert (cfg.stash_url, cfg.stash_session_cookie) == ("http://stash:9999", "from-stash")


@pytest.mark.parametrize("name", sorted(yaml.safe_load((ROOT / "PlexSync.yml").read_text(encoding="utf-8"))["settings"]))
def test_ui_setting_matches_the_model(name):
    """PlexSync.yml's type and the default/range its description states agree with the model."""
    field = model_fields()[name]
    setting = manifest()["settings"][name]
    assert setting["type"] == UI_TYPES[field.annotation], f"{name}: PlexSync.yml type"
    description = setting["description"]
    stated = re.search(r"\(default (on|off|[\d.]+)(?:, ([\d.]+)-([\d.]+))?\)", description)
    if isinstance(field.default, bool):
        assert stated and stated.group(1) == ("on" if field.default else "off"), f"{name}: {description}"
    elif _constraint(field, "ge") is not None:
        assert stated, f"{name}: PlexSync.yml should state the default and range: {description}"
        assert float(stated.group(1)) == float(field.default), f"{name}: default in PlexSync.yml"
        assert (float(stated.group(2)), float(stated.group(3))) == (
            float(_constraint(field, "ge")), float(_constraint(field, "le"))), f"{name}: range in PlexSync.yml"
    min_length = _constraint(field, "min_length")
    if min_length is not None:
        assert f"at least {min_length} characters" in description, f"{name}: {description}"


def test_config_doc_states_the_retry_and_breaker_constants():
    """The fixed numbers docs quote (backoff, breaker) are the code's."""
    from worker import backoff
    from worker.breaker import CircuitBreaker

    text = " ".join(read(p) for p in doc_files())
    standard = backoff.standard(5)
    breaker = CircuitBreaker.__init__.__defaults__  # (threshold, recovery, clock)
    for claim in (f"{_number(standard.base)} s", f"{_number(standard.cap)} s",
                  f"{_number(backoff.NOT_FOUND.base)} s", f"{_number(backoff.NOT_FOUND.cap / 60)} min",
                  f"{backoff.NOT_FOUND.max_retries} retries",
                  f"{breaker[0]} failed batches", f"{_number(breaker[1])} s"):
        assert claim in text, f"the docs should state {claim!r} (from the code)"


# -- log lines --------------------------------------------------------------------

WILD = "\x00"  # a format field in the code
PH = "\x01"    # a placeholder in the docs
_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdrfigx]|\{[^{}]*\}")
_PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>|…|(?<!\w)N(?=ms\b|s\b|(?!\w))")
MAX_DEPTH = 3
MIN_LITERAL = 10
_TAG = re.compile(r"^\[PlexSync[^\]]*\] ")


def _from_format(text: str) -> str:
    return _SPEC.sub(WILD, text)


def _template(node):
    """The code's string as literal text with WILD for each format field; None if not a string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _from_format(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else WILD for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        if left is None and right is None:
            return None
        return (left if left is not None else WILD) + (right if right is not None else WILD)
    return None


@lru_cache(maxsize=None)
def code_templates():
    files = []
    for entry in PRODUCT:
        path = ROOT / entry
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    templates = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    docstrings.add(id(first.value))
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            text = _template(node)
            if text and text.strip(WILD + " "):
                templates.add(re.sub(WILD + "+", WILD, text))
    return tuple(sorted(templates))


def _chunks(template: str):
    return [c for c in template.split(WILD) if c]


class LogMatcher:
    """Is a documented log line one the code can print?"""

    def __init__(self, templates) -> None:
        self.templates = [(t, _chunks(t)) for t in templates]
        # Templates that may stand for a nested message must contain some
        # literal other than spaces, or any words would pass as "%s %s".
        self.nested = [(t, c) for t, c in self.templates if "".join(c).strip()]

    def found(self, line: str) -> bool:
        """Quotes are whole lines; they may leave out the ``[PlexSync ...]`` tag,
        and a trailing ``…`` means the line goes on."""
        line = line.strip()
        open_end = line.endswith("…")
        doc = _PLACEHOLDER.sub(PH, line[:-1].rstrip() if open_end else line)
        for template, chunks in self.templates:
            # Most of the quote must be the code's own words, not values.
            if sum(len(c) for c in chunks if c in doc) < MIN_LITERAL:
                continue
            untagged = _TAG.sub("", template, count=1)
            if any(self._match(doc, t, 0, open_end) for t in {template, untagged}):
                return True
        return False

    def _match(self, doc: str, tpl: str, depth: int, open_end: bool) -> bool:
        """``doc`` is a rendering of ``tpl`` (with ``open_end``: of its beginning)."""
        n, m = len(doc), len(tpl)

        @lru_cache(maxsize=None)
        def go(i: int, j: int) -> bool:
            if i == n:
                return open_end or j == m or (j == m - 1 and tpl[j] == WILD)
            if j == m:
                return False
            if tpl[j] != WILD:
                return doc[i] == tpl[j] and go(i + 1, j + 1)
            nxt = tpl[j + 1] if j + 1 < m else None
            for k in range(i, n + 1):
                if nxt is None and k < n:
                    continue
                if nxt is not None and k < n and doc[k] != nxt:
                    continue
                if nxt is not None and k == n and not open_end:
                    continue
                if self._absorbable(doc[i:k], depth) and go(k, j + 1):
                    return True
            return False

        return go(0, 0)

    @lru_cache(maxsize=None)
    def _absorbable(self, text: str, depth: int) -> bool:
        """Can a format field of the code print ``text``?

        Values (numbers, one word, a file name, an error class) always; a
        longer message only if the code has a message it fully matches.
        """
        visible = text.replace(PH, "")
        if not any(c.isalpha() for c in visible) or not re.search(r"\s", text.strip()):
            return True
        if depth + 1 >= MAX_DEPTH:
            return False
        for template, chunks in self.nested:
            if all(c in text for c in chunks) and self._match(text, template, depth + 1, open_end=False):
                return True
        return False


@lru_cache(maxsize=None)
def matcher() -> LogMatcher:
    return LogMatcher(code_templates())


def quoted_log_lines():
    """(file, line) for every line of every ```log block in README.md and docs/."""
    out = []
    for path in doc_files():
        if not path.is_file():
            continue
        for block in re.findall(r"^```log\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S):
            out.extend((path.name, line.strip()) for line in block.splitlines() if line.strip())
    return out


def test_troubleshooting_quotes_log_lines():
    lines = [line for name, line in quoted_log_lines() if name == "troubleshoot.md"]
    assert len(lines) >= 20, "docs/troubleshoot.md should quote the log lines users see, in ```log blocks"


@pytest.mark.parametrize("where,line", quoted_log_lines(), ids=lambda v: v[:60] if isinstance(v, str) else v)
def test_quoted_log_line_exists_in_the_code(where, line):
    assert matcher().found(line), f"{where}: no message in the code prints {line!r}"


@pytest.mark.parametrize("line,ok", [
    ("[PlexSync Hook] Hook handler exceeded 100ms target (Nms)", True),
    ("[PlexSync Matcher] LOW confidence match for '<file>': N candidates found", True),
    ("[PlexSync] Configuration error: plex_url: plex_url must start with http:// or https://", True),
    ("[PlexSync Worker] Scene N moved to the dead-letter queue: PlexAuthError: "
     "connecting to Plex: Plex refused the request (401); check plex_token", True),
    ("[PlexSync Worker] Circuit breaker exploded", False),
    ("[PlexSync Matcher] LOW confidence match for '<file>': N candidates seen", False),
    ("[PlexSync] Configuration error: plex_url must be a Plex server", False),
    ("[PlexSync Worker] Scene N moved to the dead-letter queue: PlexAuthError: the token expired", False),
    ("[PlexSync Worker] Scene N moved to the dead-letter queue: …", True),
    ("Scene N moved to the dead-letter queue: SceneHasNoFile: scene N has no file to match in Plex", True),
    ("Everything is fine", False),
    ("Everything is fine …", False),
])
def test_log_matcher_tells_real_lines_from_invented_ones(line, ok):
    assert matcher().found(line) is ok


# -- tasks, data files, CLI ----------------------------------------------------------

def test_every_task_is_documented():
    from worker.tasks import TASKS

    tasks = manifest()["tasks"]
    assert {t["defaultArgs"]["mode"] for t in tasks} == set(TASKS), "PlexSync.yml tasks and worker.tasks.TASKS differ"
    readme = " ".join(read(README).split())
    docs = " ".join(" ".join(read(p).split()) for p in DOCS.glob("*.md"))
    for task in tasks:
        assert task["name"] in readme, f"README.md does not mention the task {task['name']!r}"
        assert f"**{task['name']}**" in docs, f"docs/ do not describe the task {task['name']!r} (as **name**)"


def test_every_data_file_is_documented():
    from common.paths import DataPaths

    text = read(DOCS / "install.md")
    paths = DataPaths("/x")
    names = {Path(v).name for k, v in vars(paths).items() if k != "root"} - {"data.db"}
    missing = sorted(name for name in names if f"`{name}" not in text)
    assert not missing, f"docs/install.md does not list the data files {missing}"


def cli_help() -> str:
    return subprocess.run([sys.executable, str(ROOT / "process_queue.py"), "--help"], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def test_cli_flags_and_exit_codes_are_documented():
    import process_queue

    text = read(DOCS / "troubleshoot.md")
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", cli_help())) - {"--help"}
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))
    assert flags <= documented, f"process_queue.py flags missing from docs/troubleshoot.md: {sorted(flags - documented)}"
    unknown = documented - flags - {"--help"}
    assert not unknown, f"docs/troubleshoot.md mentions flags process_queue.py lacks: {sorted(unknown)}"
    codes = {v for k, v in vars(process_queue).items() if k.startswith("EXIT_")}
    table = dict(re.findall(r"^\|\s*`?(\d+)`?\s*\|\s*(.+?)\s*\|", text, re.M))
    assert codes <= {int(c) for c in table}, f"exit codes missing from the table in docs/troubleshoot.md: {codes}"


# -- README commands, links ------------------------------------------------------------

def _commands(text: str):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "set ", "cd ")):
            continue
        for part in line.split("&&"):
            words = [w for w in part.split() if w not in ("--quiet", "-q")]
            if words and words[-2:] != ["--upgrade", "pip"]:
                out.append(" ".join(words))
    return out


def readme_dev_commands():
    text = read(README)
    section = re.search(r"^## Development\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "README.md needs a '## Development' section"
    blocks = re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", section.group(1), re.M | re.S)
    assert blocks, "README.md's Development section needs a ```sh block"
    return blocks


def test_readme_setup_and_test_commands_are_what_ci_runs():
    ci = _commands(read(ROOT / ".ci" / "run"))
    readme = _commands(readme_dev_commands()[0])
    assert readme == ci[: len(readme)], f"README's first Development block {readme} differs from .ci/run {ci}"
    assert readme[-1].startswith("python -m pytest")
    # After the README's commands, only the documented extra run on the oldest Python.
    assert ci[len(readme):] == ["deactivate", "bash .ci/oldest-python"], ci
    assert ".ci/oldest-python" in read(README)


def test_readme_tool_commands_exist():
    text = read(README)
    for command in ("python tools/demo.py", "python tools/release.py"):
        assert command in text, f"README.md should give `{command}`"
        assert (ROOT / command.split()[1]).is_file()


def _slug(heading: str) -> str:
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path):
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)}


def test_relative_links_resolve():
    broken = []
    for path in doc_files():
        text = re.sub(r"^```.*?^```", "", read(path), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, f"broken links: {broken}"


def test_docs_link_each_other():
    readme = read(README)
    for name in ("install.md", "config.md", "troubleshoot.md", "architecture.md", "performance.md", "reliability.md"):
        assert f"docs/{name}" in readme, f"README.md should link docs/{name}"


# -- the README's tool commands run ------------------------------------------------------

def test_demo_command_runs():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py")], capture_output=True, text=True,
                            timeout=180, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    after = result.stdout.split("Plex item AFTER:")[-1]
    assert "Sunset at the Lake" in after and "Jane Doe" in after


def test_release_command_builds_the_zip_and_index(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "release.py"), "--out", str(tmp_path),
                    "--index", str(tmp_path / "index.yml")], check=True, capture_output=True, timeout=60)
    (entry,) = yaml.safe_load((tmp_path / "index.yml").read_text(encoding="utf-8"))
    assert entry["id"] == "PlexSync" and entry["path"] == "PlexSync.zip"
    with zipfile.ZipFile(tmp_path / "PlexSync.zip") as zf:
        names = set(zf.namelist())
    assert {"PlexSync.yml", "PlexSync.py", "requirements.txt", "process_queue.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "docs/"))]


# -- statements about behaviour, checked against the behaviour ---------------------------------

def _section(path: Path, heading: str) -> str:
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", read(path), re.M | re.S)
    assert match, f"{path.name} has no section {heading!r}"
    return " ".join(match.group(1).split())


def _config_error(**bad) -> str:
    from common.errors import ConfigError
    from validation.config import load_config

    settings = {"plex_url": "http://192.168.1.10:32400", "plex_token": "abcdefghijklmnop", **bad}
    with pytest.raises(ConfigError) as caught:
        load_config(settings)
    return f"[PlexSync] Configuration error: {caught.value}"


@pytest.mark.parametrize("bad", [{"plex_url": ""}, {"plex_url": "plex.local:32400"}, {"plex_token": ""},
                                 {"plex_token": "short"}], ids=lambda b: f"{next(iter(b))}={next(iter(b.values()))!r}")
def test_configuration_errors_are_quoted_as_the_code_words_them(bad):
    """Each bad setting's real message is one of the lines troubleshoot.md quotes for it."""
    quoted = re.findall(r"^```log\n(.*?)^```", read(DOCS / "troubleshoot.md").split("## Configuration error", 1)[1],
                        re.M | re.S)[0].splitlines()
    message = _config_error(**bad)
    patterns = [re.escape(line.strip()).replace(re.escape("<"), "<").replace(re.escape(">"), ">") for line in quoted]
    patterns = [re.sub(r"<[^>]+>", ".+", p) for p in patterns]
    assert any(re.fullmatch(p, message) for p in patterns), f"troubleshoot.md does not quote {message!r}"


def test_config_md_enabled_says_what_the_hook_and_tasks_do(env):  # noqa: F811
    from worker.tasks import OFFLINE_TASKS

    text = _section(DOCS / "config.md", "`enabled`")
    exempt = {t["name"] for t in manifest()["tasks"] if t["defaultArgs"]["mode"] in OFFLINE_TASKS}
    assert set(re.findall(r"\*\*(.+?)\*\*", text)) == exempt, "the tasks that still run with the plugin off"
    assert "from the next save on" in text

    env.stash.config_dir = str(env.runner.stash_dir)  # Stash rewrites config.yml on every settings change
    env.settings()
    sid, _ = env.scene_with_item(1)
    env.hook(sid)
    env.settle()  # the hook's verdict is now "enabled and valid"
    env.settings(enabled=False)
    first = env.hook(sid)
    assert first.output == "disabled" and first.has_log("Plugin is disabled via configuration")
    status = env.runner.run_task("Sync All Scenes to Plex")
    assert status.output == "disabled" and status.has_log("Plugin is disabled via configuration")
