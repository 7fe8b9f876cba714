"""Writing the archive folder: only files whose inputs changed, each whole or not at all.

`.archive-manifest.json` in the output folder records, for every file written here, the
fingerprint of the inputs that produced it (`Output.key`) and the hash of its bytes. A file is
produced only when its key changed and written only when its bytes changed. Files the manifest
does not name are never touched, and nothing is written or deleted outside the folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.errors import NewsletterError

ARCHIVE_VERSION = "1"  # bump when page contexts change meaning without their inputs changing
MANIFEST_NAME = ".archive-manifest.json"


class ArchiveError(NewsletterError):
    """The archive cannot be written as asked (unsafe slug, clashing files, bad output folder)."""


@dataclass(frozen=True)
class Output:
    """One file of the site: produced only when `key` differs from the last build's."""

    path: str
    key: str
    produce: Callable[[], bytes]


def sync(out: Path, outputs: list[Output]) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    manifest_path = out / MANIFEST_NAME
    old = load_json(manifest_path).get("files", {})
    old = old if isinstance(old, dict) else {}
    current = {o.path for o in outputs}
    stale = sorted(p for p in old if p not in current)
    new: dict[str, Any] = {}
    todo: list[Output] = []
    for output in outputs:
        prev = old.get(output.path)
        if (
            isinstance(prev, dict)
            and prev.get("key") == output.key
            and (out / output.path).is_file()
        ):
            new[output.path] = prev
        else:
            todo.append(output)
    unchanged = len(outputs) - len(todo)
    if not todo and not stale:
        return (), (), unchanged
    _refuse_foreign(out, [o for o in todo if o.path not in old])
    # From here the folder changes: a build cut short leaves a manifest that names every file
    # this build may write but trusts no fingerprint, so the next one compares every file and
    # still knows which files are its own.
    pending = {path: {"sha": None} for path in (*old, *(o.path for o in todo))}
    write_file(manifest_path, json_bytes({"version": ARCHIVE_VERSION, "files": pending}))
    written: list[str] = []
    for output in todo:
        data = output.produce()
        sha = digest(data)
        target = inside(out, output.path)
        prev = old.get(output.path)
        same = isinstance(prev, dict) and prev.get("sha") == sha and target.is_file()
        if same or (prev is None and _same_bytes(target, data)):
            unchanged += 1
        else:
            write_file(target, data)
            written.append(output.path)
        new[output.path] = {"key": output.key, "sha": sha}
    removed = [path for path in stale if _remove(out, path)]
    write_file(manifest_path, json_bytes({"version": ARCHIVE_VERSION, "files": new}))
    return tuple(written), tuple(removed), unchanged


def _refuse_foreign(out: Path, fresh: list[Output]) -> None:
    """Files this archive never wrote are never overwritten (a foreign `index.html`), even
    with --force: the whole build stops before writing anything."""
    clashes = []
    for output in fresh:
        target = inside(out, output.path)
        if target.exists() and not _same_bytes(target, output.produce()):
            clashes.append(output.path)
    if clashes:
        more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
        raise ArchiveError(
            f"{clashes[0]}{more} exist(s) and were not written by `newsletter archive`; "
            "move them away or choose another folder",
            path=out,
        )


def check_out_folder(out: Path, root: Path, marks: tuple[str, ...], force: bool) -> None:
    """The output folder must be new, empty, one an earlier build wrote (`marks`: its
    manifest or cache), or forced; never `/`, the home folder, or the publication root or
    any folder above it, where an index.html would land among someone's files."""
    home = Path.home().resolve()
    if out == home or root.resolve().is_relative_to(out) or out.parent == out:
        raise ArchiveError(
            "refusing to write the archive into this folder (/, home, or the publication or a "
            "folder above it); choose a folder of its own",
            path=out,
        )
    if not out.exists() or force or any((out / mark).exists() for mark in marks):
        return
    if not out.is_dir():
        raise ArchiveError("not a folder", path=out)
    if any(out.iterdir()):
        raise ArchiveError(
            "not empty and not an archive written by newsletter; choose an empty folder, or "
            "use --force (files it did not write are still never overwritten)",
            path=out,
        )


def inside(out: Path, path: str) -> Path:
    """`out/path`, refusing anything that would land outside `out` (`..`, absolute paths,
    symlinks planted in the output folder)."""
    target = out.joinpath(*path.split("/"))
    if path.startswith("/") or ".." in path.split("/") or not target.resolve().is_relative_to(out):
        raise ArchiveError("refusing to write outside the archive folder", path=target)
    return target


def _same_bytes(target: Path, data: bytes) -> bool:
    try:
        return (
            target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data
        )
    except OSError:
        return False


def _remove(out: Path, path: str) -> bool:
    """Delete a file an earlier build wrote (and folders left empty)."""
    try:
        target = inside(out, path)
    except ArchiveError:
        return False  # not ours to delete, whatever the manifest says
    if not target.is_file():
        return False
    target.unlink()
    folder = target.parent
    while folder != out and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
    return True


_TEMP_NAMES = itertools.count()


def write_file(path: Path, data: bytes) -> None:
    """Temp file in the same folder, then rename: readers never see half a page.

    Not tempfile.mkstemp: it costs three times the whole write here, and makes files 0600
    where a web server reading as another user needs the umask's usual 0644.
    """
    try:
        temp, fd = _create_temp(path)
    except OSError as exc:
        raise ArchiveError(f"cannot write: {exc.strerror}", path=path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ArchiveError(f"cannot write: {exc.strerror}", path=path) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[Path, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{os.getpid()}.{next(_TEMP_NAMES)}.tmp")
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:  # left by a crashed process that had our pid
            continue
        except FileNotFoundError:  # a new folder: one mkdir, not one per file
            path.parent.mkdir(parents=True, exist_ok=True)
    raise FileExistsError(f"no free temporary name next to {path}")


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _jsonable(value: Any) -> Any:
    fingerprint = getattr(value, "fingerprint", None)
    if isinstance(fingerprint, str):  # precomputed by values that appear in many pages
        return fingerprint
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # the fields, not dataclasses.asdict: that deep-copies, and json recurses anyway
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def json_bytes(value: Any) -> bytes:
    return json.dumps(
        value, default=_jsonable, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    ).encode()


def digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()
