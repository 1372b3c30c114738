"""Download a file once into the cache dir, verified by SHA-256, published by an atomic rename.

cache dir = $TINYQ_DATA if set, else $XDG_CACHE_HOME/tinyq, else ~/.cache/tinyq.
The URL opener is a parameter (default urllib.request.urlopen) so tests can
pass a fake one or use file:// URLs.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from tinyq.atomic import atomic_open
from tinyq.atomic import sha256_file as sha256_of  # noqa: F401 (tinyq.data.sha256_of)

Opener = Callable[..., object]  # opener(url, timeout=...) -> a readable, closable response


class DownloadError(RuntimeError):
    """A dataset file could not be fetched or verified (offline, wrong checksum, ...)."""


def cache_dir() -> Path:
    """root = $TINYQ_DATA or $XDG_CACHE_HOME/tinyq or ~/.cache/tinyq."""
    if os.environ.get("TINYQ_DATA"):
        return Path(os.environ["TINYQ_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tinyq"


def _download_to(url: str, target: Path, sha256: str, opener: Opener, timeout: float) -> None:
    """target = bytes at url, only if their SHA-256 is sha256 (else nothing is left behind)."""
    digest = hashlib.sha256()
    with atomic_open(target, "wb") as out:            # renamed into place only if no error is raised
        response = opener(url, timeout=timeout)
        try:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        finally:
            response.close()
        if digest.hexdigest() != sha256:
            raise DownloadError(f"{url}: SHA-256 mismatch, expected {sha256}, got {digest.hexdigest()} "
                                "(file discarded)")


def fetch(filename: str, sha256: str, mirrors: Sequence[str], root=None, *,
          opener: Opener | None = None, timeout: float = 60.0) -> Path:
    """path = root/filename, downloaded from the first mirror that works unless already verified there."""
    root = Path(root) if root is not None else cache_dir()
    target = root / filename
    if target.is_file():
        if sha256_of(target) == sha256:
            return target
        stale = f"{target} exists but its SHA-256 is not {sha256}; "
    else:
        stale = ""
    root.mkdir(parents=True, exist_ok=True)
    opener = opener or urllib.request.urlopen
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            _download_to(url, target, sha256, opener, timeout)
            return target
        except DownloadError as error:
            failures.append(str(error))
        except (urllib.error.URLError, OSError, ValueError) as error:
            failures.append(f"{url}: {error}")
    raise DownloadError(
        f"{stale}could not download {filename}:\n  " + "\n  ".join(failures)
        + f"\nIf you are offline, download {filename} by hand and put it at {target} "
        "(set TINYQ_DATA to use another folder).")


def fetch_all(files: dict[str, str], mirrors: Sequence[str], root=None, *,
              opener: Opener | None = None, timeout: float = 60.0) -> dict[str, Path]:
    """{filename: path} for every file, each fetched (and verified) once; one error names all missing."""
    paths, errors = {}, []
    for filename, sha256 in files.items():
        try:
            paths[filename] = fetch(filename, sha256, mirrors, root, opener=opener, timeout=timeout)
        except DownloadError as error:
            errors.append(str(error))
    if errors:
        folder = Path(root) if root is not None else cache_dir()
        names = ", ".join(f for f in files if f not in paths)
        raise DownloadError(f"missing dataset files {names} in {folder}.\n" + "\n".join(errors))
    return paths
