"""Atomic writes: a file appears whole or not at all (temporary file beside it, fsync, rename).

Every file tinyq writes (checkpoints, records, plots, reports, downloads) goes through here,
so an interrupted run never leaves half a file where a good one was.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path in path's folder; renamed over `path` on success, removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **options):
    """open() for writing, but the file only replaces `path` once it is complete and synced."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open is for writing (mode 'w' or 'wb'), got mode {mode!r}")
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


def write_json(path, data, default=None) -> Path:
    """json.dumps first (so an unserialisable value raises before anything is touched), then write."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=default) + "\n")
