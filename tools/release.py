"""Build PlexSync.zip from an explicit list of runtime files, and index.yml.

Usage: python tools/release.py [--out DIR] [--version X.Y.Z]

DIR (default dist/) becomes a plugin source: PlexSync.zip and index.yml side
by side, as Stash's package manager reads them (index.yml's ``path`` is
relative to its own URL). .github/workflows/publish.yml publishes it.

Only what Stash needs to run the plugin goes in the zip: no tests, docs,
caches, CI files or stray .yml (Stash loads every .yml under its plugins
folder). index.yml is the list Stash's plugin manager reads from a source URL.
"""

import argparse
import hashlib
import io
import re
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_ID = "PlexSync"

# Top-level files, and packages whose *.py files ship (nothing else from them).
RUNTIME_FILES = ("PlexSync.py", "PlexSync.yml", "requirements.txt", "process_queue.py", "LICENSE")
RUNTIME_PACKAGES = ("common", "history", "hooks", "plex", "sync_queue", "validation", "worker")


def runtime_files(root: Path = ROOT) -> list:
    """Paths (relative to root) of every file the installed plugin needs."""
    absent = [name for name in RUNTIME_FILES if not (root / name).is_file()]
    if absent:
        raise SystemExit(f"cannot build the release: {', '.join(absent)} missing in {root}")
    files = [Path(name) for name in RUNTIME_FILES]
    for package in RUNTIME_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if "__pycache__" not in rel.parts:
                files.append(rel)
    return files


def _manifest(root: Path) -> dict:
    import yaml  # a maintainer tool: PyYAML comes with requirements-dev.txt

    return yaml.safe_load((root / "PlexSync.yml").read_text(encoding="utf-8"))


def manifest_version(root: Path = ROOT) -> str:
    version = _manifest(root).get("version")
    if version is None:
        raise SystemExit("PlexSync.yml has no version")
    return str(version)


def manifest_description(root: Path = ROOT) -> str:
    return str(_manifest(root).get("description") or "")


def build_zip(root: Path = ROOT) -> bytes:
    """Deterministic zip (fixed timestamps, sorted names) of the runtime files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(runtime_files(root), key=lambda p: p.as_posix()):
            info = zipfile.ZipInfo(rel.as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (root / rel).read_bytes())
    return buf.getvalue()


def index_entry(zip_bytes: bytes, version: str, date: str, path: str, description: str) -> str:
    """One entry of Stash's plugin index (pkg/pkg RemotePackage), as YAML."""
    sha = hashlib.sha256(zip_bytes).hexdigest()
    return (
        f"- id: {PLUGIN_ID}\n"
        f"  name: {PLUGIN_ID}\n"
        f"  metadata:\n"
        f"    description: {_quote(description)}\n"
        f"  version: {_quote(version)}\n"  # quoted: 1.0 must stay a string
        f"  date: \"{date}\"\n"
        f"  path: {path}\n"
        f"  sha256: {sha}\n"
        f"  requires:\n"
        f"    - PythonDepManager\n"
    )


def _previous_date(index: Path, zip_bytes: bytes) -> "str | None":
    """The date already in ``index`` if it describes this very zip.

    The zip is deterministic, so rebuilding an unchanged plugin keeps
    index.yml byte for byte (no churn in the committed file).
    """
    try:
        text = index.read_text(encoding="utf-8")
    except OSError:
        return None
    if f"sha256: {hashlib.sha256(zip_bytes).hexdigest()}" not in text:
        return None
    match = re.search(r'^  date: "([^"]+)"$', text, re.MULTILINE)
    return match.group(1) if match else None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="plugin source folder: PlexSync.zip + index.yml")
    parser.add_argument("--index", default=None, help="where to write index.yml (default: beside the zip)")
    parser.add_argument("--version", default=None, help="version (default: PlexSync.yml's)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = build_zip()
    (out / f"{PLUGIN_ID}.zip").write_bytes(data)
    index = Path(args.index) if args.index else out / "index.yml"
    date = _previous_date(index, data) or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    version = args.version or manifest_version()
    index.write_text(index_entry(data, version, date, f"{PLUGIN_ID}.zip", manifest_description()),
                                encoding="utf-8")
    print(f"wrote {out / (PLUGIN_ID + '.zip')} ({len(data)} bytes) and {index}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
