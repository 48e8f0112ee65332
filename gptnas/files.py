"""Files that are complete or absent: every write of a result goes through here.

A reader (a resumed run, a report, a user copying a run directory) never sees
half a file: content is written to a temporary sibling, flushed to disk and
renamed over the target, which POSIX makes atomic. A kill at any moment leaves
either the old file or the new one, and at worst a stray `.tmp` sibling.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from gptnas.errors import GptnasError, one_line

LOCK_FILE = ".lock"


def refuse_links(folder: str | Path) -> None:
    """GptnasError naming the first symbolic link inside `folder` (at any depth; `folder` itself may be one).

    A run directory may have been handed over by someone else: a link in it could point a write of ours (a
    plot, the lock, the store, retrain/) or a read at any file of the user's, so gptnas follows none."""
    for parent, dirs, names in os.walk(folder):  # os.walk never descends into a linked folder
        for name in sorted(dirs + names):
            if os.path.islink(os.path.join(parent, name)):
                raise link_error(Path(parent) / name)


def link_error(path: Path) -> GptnasError:
    return GptnasError(f"{path} is a symbolic link; gptnas follows no links in a run directory (one could point "
                       "its writes anywhere): replace the link by the file itself or use a new --output_dir")


def open_no_follow(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """os.open that refuses a symbolic link at `path` (O_NOFOLLOW: no check-then-open race) in one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise link_error(Path(path)) from None
        raise


def read_text(path: str | Path) -> str:
    """The UTF-8 text of the file at `path`, which must not be a symbolic link."""
    with os.fdopen(open_no_follow(path), encoding="utf-8") as f:
        return f.read()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path` through; renamed over `path` when the block succeeds.

    Works for a file or a folder (a folder is written whole, then swapped in)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)  # a folder cannot be renamed over a non-empty one
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def write_atomic(path: str | Path, content: str | bytes) -> None:
    """Writes text (UTF-8) or bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def exclusive_lock(folder: str | Path) -> Iterator[None]:
    """Holds `folder` for this process for the life of the block; a second process is refused in one
    line that names the holder. The operating system drops the lock when the process dies, kill -9
    included, so a killed run never leaves a stale lock behind. A folder that holds a symbolic link is
    refused (`refuse_links`): whatever runs inside the block writes only into the folder itself."""
    import fcntl

    refuse_links(folder)
    path = Path(folder) / LOCK_FILE
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)  # not inherited by worker processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 1024).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise GptnasError(f"{folder} is in use by {holder}; wait for it to end or stop it, then try again") from None
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started} ({' '.join(sys.argv[:3])})".encode())
    try:
        yield
    finally:
        os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock


MAX_JSON_BYTES = 10 << 20  # a config or record file of ours is a few kB; a checkpoint of a large run a few MB


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON data of a handed file, in one-line errors: too large (`max_bytes`, checked before reading),
    not UTF-8 JSON, or nested too deeply to parse."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise GptnasError(f"{path} is {size:,} bytes, more than the {max_bytes:,} such a file may have")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # RecursionError: thousands of nested brackets
        raise GptnasError(f"{path} cannot be read as JSON ({one_line(error)[:200]})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSONL file, plain or gzipped (.gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f]


def write_jsonl(records: list[dict], path: str | Path) -> None:
    """Writes records as JSONL (gzipped for .gz) atomically; same records, same bytes (no name or time in the
    gzip header)."""
    path = Path(path)
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    with atomic_path(path) as tmp:
        if path.suffix == ".gz":
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                out.write(lines)
        else:
            tmp.write_bytes(lines)
