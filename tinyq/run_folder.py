"""A run folder whose files always describe one run: a manifest commits them together.

    folder = RunFolder("runs/x", command="train", settings={...})
    folder.open(resume=False, overwrite=False)     # refuses a folder that already holds a run
    folder.commit({"last.npz": lambda tmp: tq.save(state, tmp)}, status="running", info={"epoch": 3})

`run.json` (the manifest) names the command, its settings, the status (running | finished |
failed) and the SHA-256 of every file of the run. A commit writes each new file beside its
final name as `.<name>.pending`, then the manifest (the commit point: one atomic rename),
then renames the pending files into place. A process killed at any moment leaves either the
old manifest with the old files (pending files not named by it are deleted by `repair`) or
the new manifest with its files, some possibly still pending (`repair` renames them into
place). Every run into a folder starts with `repair`, which also removes the temporaries of
killed writers. `verify` lists what disagrees with the manifest (empty after `repair`).

The manifest is the truth: a file it does not name, or whose hash differs, is a leftover.
An existing run is never mixed with a new one: starting a run in a folder that holds one
is refused unless `resume` (continue it: same command and settings) or `overwrite` (a new
manifest naming no files replaces the old one, then `repair` deletes the old run's files).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from tinyq.atomic import atomic_path, remove_stale_temporaries, sha256_file, write_json

MANIFEST = "run.json"
PENDING = ".{name}.pending"


class RunFolderError(ValueError):
    """The folder holds another run, or its files disagree with its manifest."""


def read_manifest(folder) -> dict | None:
    """The manifest of folder (None if there is none); a damaged one is a RunFolderError."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path} is not a readable run manifest ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise RunFolderError(f"{path} is not a tinyq run manifest (no 'files' table)")
    return manifest


def _unnamed_outputs(folder: Path, manifest: dict) -> list[str]:
    """Output files of the run's command that the manifest does not name (left by a replaced run)."""
    return [name for name in manifest.get("outputs", []) if name != MANIFEST and name not in manifest["files"]
            and (folder / name).exists()]


def repair(folder) -> dict | None:
    """Finish or undo an interrupted commit: pending files the manifest names are renamed into place,
    others deleted; output files the manifest does not name (a replaced run's) deleted; temporaries
    of dead writers deleted. Returns the manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    remove_stale_temporaries(folder)
    manifest = read_manifest(folder)
    files = manifest["files"] if manifest else {}
    for entry in os.scandir(folder):
        if not (entry.name.startswith(".") and entry.name.endswith(".pending")):
            continue
        name = entry.name[1:-len(".pending")]
        if files.get(name) == sha256_file(entry.path):
            os.replace(entry.path, folder / name)
        else:
            os.remove(entry.path)
    for name in _unnamed_outputs(folder, manifest) if manifest else []:
        os.remove(folder / name)
    return manifest


def verify(folder) -> list[str]:
    """What in folder disagrees with its manifest: missing or changed files, pending or temporary files."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder} has no {MANIFEST}"]
    problems = []
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} differs from the one the manifest names")
    problems += [f"leftover {entry.name}" for entry in os.scandir(folder)
                 if entry.name.endswith((".pending", ".tmp"))]
    problems += [f"{name} is not part of the run" for name in _unnamed_outputs(folder, manifest)]
    return problems


class RunFolder:
    """The output folder of one run of `command` with `settings` (see the module docstring)."""

    def __init__(self, path, command: str, settings: dict, outputs=()):
        self.path = Path(path)
        self.command = command
        self.settings = dict(settings)
        self.outputs = tuple(outputs)   # the file names this command writes (for refusing and overwriting)
        self.manifest: dict | None = None

    def _describe(self, manifest: dict) -> str:
        status = manifest.get("status", "?")
        progress = manifest.get("info", {}).get("progress") if status != "finished" else None
        return f"a {status} `tinyq {manifest.get('command', '?')}` run" + (f" ({progress})" if progress else "")

    def open(self, *, resume: bool = False, overwrite: bool = False) -> dict | None:
        """Claim the folder. Returns the manifest of the run to resume (resume=True), else None.

        Refuses (RunFolderError) a folder holding a run or this command's files unless resume/overwrite.
        """
        if resume and overwrite:
            raise RunFolderError("--resume and --overwrite exclude each other")
        manifest = repair(self.path)
        existing = [name for name in self.outputs if (self.path / name).exists()]
        if manifest is None and not existing:
            if resume:
                raise RunFolderError(f"--resume: {self.path} holds no run to resume")
            return self._start()
        if overwrite:
            self._start()              # the commit point: from here on the folder holds the new run
            repair(self.path)          # which deletes the old run's files
            return None
        held = self._describe(manifest) if manifest else f"files of an earlier run ({', '.join(existing)})"
        if not resume:
            hint = "--resume to continue it or " if manifest and manifest.get("status") != "finished" else ""
            raise RunFolderError(f"--out {self.path} already holds {held}; pass {hint}--overwrite to replace it, "
                                 "or choose another --out")
        if manifest is None:
            raise RunFolderError(f"--resume: {self.path} holds {held} but no {MANIFEST}; "
                                 "pass --overwrite to start again")
        if manifest.get("command") != self.command:
            raise RunFolderError(f"--resume: {self.path} holds {held}, not a `tinyq {self.command}` run")
        old = manifest.get("settings", {})
        differ = [f"{key}={old.get(key)!r} (now {value!r})" for key, value in self.settings.items()
                  if old.get(key) != value]
        if differ:
            raise RunFolderError(f"--resume: the run in {self.path} was started with other options: "
                                 + ", ".join(differ) + "; repeat its options or pass --overwrite")
        self.manifest = manifest
        return manifest

    def _start(self) -> None:
        self.manifest = {"command": self.command, "settings": self.settings, "status": "running", "info": {},
                         "outputs": sorted(set(self.outputs) | {MANIFEST}), "files": {}}
        write_json(self.path / MANIFEST, self.manifest)

    def commit(self, files: dict[str, Callable[[str], None]] | None = None, *, status: str = "running",
               info: dict | None = None) -> None:
        """Write files (name -> writer(tmp_path)) and the manifest as one step (see the module docstring)."""
        if self.manifest is None:
            raise RunFolderError("RunFolder.commit before open()")
        files = files or {}
        pending = {}
        for name, writer in files.items():
            target = self.path / PENDING.format(name=name)
            with atomic_path(target) as tmp:
                writer(tmp)
            pending[name] = target
        manifest = dict(self.manifest, status=status, info=dict(info or self.manifest.get("info", {})),
                        files=dict(self.manifest["files"]))
        for name, target in pending.items():
            manifest["files"][name] = sha256_file(target)
        write_json(self.path / MANIFEST, manifest)                      # the commit point
        self.manifest = manifest
        for name, target in pending.items():
            os.replace(target, self.path / name)
