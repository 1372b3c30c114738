"""Atomic writes: a file appears whole or not at all (temporary file beside it, fsync, rename).

Every file tinyq writes (checkpoints, records, plots, reports, downloads) goes through here,
so an interrupted run never leaves half a file where a good one was.

The temporary file is `.<name>.<pid>-<8 hex>.tmp` in the target's folder, created with mode
0666 minus the umask (so 0644 under umask 022, like any file `open()` creates). A temporary
left by a killed process (its pid no longer runs) is removed by the next write into that
folder (`remove_stale_temporaries`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
from pathlib import Path

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def sha256_file(path) -> str:
    """hex SHA-256 of the file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _process_is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder, name: str | None = None) -> list[Path]:
    """Delete the temporaries of dead processes in folder (only those for `name` if given); return them."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        if _process_is_running(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(entry.path)
            removed.append(Path(entry.path))
    return removed


def _create_temporary(path: Path) -> Path:
    """A new empty file beside path, mode 0666 & ~umask (os.open applies the umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path in path's folder; renamed over `path` on success, removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    tmp = _create_temporary(path)
    try:
        yield str(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **options):
    """open() for writing, but the file only replaces `path` once it is complete and synced."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open is for writing (mode 'w' or 'wb'), got mode {mode!r}")
    mode = mode.replace("x", "w")  # the temporary is new by construction
    with atomic_path(path) as tmp:
        with open(tmp, mode, **options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_bytes(path, data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return Path(path)


def json_safe(value, default=None):
    """The same data with NaN/inf as None (JSON null), NumPy scalars/arrays as Python numbers/lists."""
    if isinstance(value, dict):
        return {key: json_safe(item, default) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, default) for item in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":   # np.generic and ndarray
        return json_safe(value.tolist(), default)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if default is not None:
        return json_safe(default(value))
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def write_json(path, data, default=None) -> Path:
    """Strict JSON (NaN and inf become null): dumped first, so a bad value raises before anything is touched."""
    text = json.dumps(json_safe(data, default), indent=2, ensure_ascii=False, allow_nan=False)
    return write_text(path, text + "\n")
