"""Run the grading child: isolated Python, resource limits, its own session, optionally inside bubblewrap.

    child = python -I -S runner.py PLAN      -I: no PYTHON* variables, no user site, no script dir on the path;
                                             -S: no site-packages processing (.pth files, editable-install
                                             finders); the runner adds the site-packages folders itself.

Limits (setrlimit, before exec): address space, CPU seconds, file size (this also caps the captured
output), and processes (which the kernel does not enforce for root). The child starts a new session;
`stop()` kills its process group, every process still in its session, and, on Linux, orphans it left
behind that were re-parented to the grader (the grader is made a child subreaper while a child runs).

bubblewrap (`--sandbox bwrap`, or `auto` when `bwrap` works here): the child sees the Python runtime and
its site-packages read-only, the graded copy read-only, the grader's folder for this run read-only, its
own output folder read-write, a private /tmp, /proc and /dev, and nothing else: no network, no other
files of the user, and not the reference solution (hidden under an empty tmpfs when it lies inside a
folder the child must see). Its PID namespace dies with it, so no process outlives the grade. Without
bubblewrap the child can read every file the user can read, the reference solution included.
"""
from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

SANDBOXES = ("auto", "bwrap", "none")
MEMORY_LIMIT = 4 << 30          # bytes of address space
FILE_SIZE_LIMIT = 32 << 20      # bytes per file the child writes (its captured output included)
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/tmp",
             "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "NUMBA_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not Linux
        return None


@functools.cache
def bwrap_works() -> bool:
    """True when `bwrap` is on PATH and can start a sandbox here (user namespaces allowed)."""
    if shutil.which("bwrap") is None:
        return False
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    try:
        return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def choose_sandbox(sandbox: str) -> str:
    """'bwrap' or 'none' for --sandbox auto|bwrap|none (ValueError/RuntimeError when it cannot be had)."""
    if sandbox not in SANDBOXES:
        raise ValueError(f"--sandbox must be one of {', '.join(SANDBOXES)}, got {sandbox!r}")
    if sandbox == "auto":
        return "bwrap" if bwrap_works() else "none"
    if sandbox == "bwrap" and not bwrap_works():
        raise RuntimeError("--sandbox bwrap: bubblewrap is not installed or cannot create a sandbox here "
                           "(Debian/Ubuntu: apt-get install bubblewrap)")
    return sandbox


def site_folders() -> list[str]:
    """The folders the runner puts on sys.path after the graded copy: this Python's site-packages."""
    folders = []
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in folders and os.path.isdir(path):
            folders.append(path)
    return folders


def runtime_folders() -> list[str]:
    """Read-only folders the sandboxed Python needs: the system's, this interpreter's prefixes, site-packages."""
    folders = [p for p in ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/sbin") if os.path.isdir(p)]
    executable = Path(sys.executable)
    for path in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(executable.parent),
                 str(executable.resolve().parent.parent), *site_folders()):
        path = os.path.realpath(path)
        if os.path.isdir(path) and not any(path == f or path.startswith(f + os.sep) for f in folders):
            folders = [f for f in folders if not f.startswith(path + os.sep)] + [path]
    return folders


def _inside(path: str, folders) -> bool:
    return any(path == f or path.startswith(f + os.sep) for f in folders)


def child_command(sandbox: str, runner: Path, plan: Path, *, code_root: Path, shared: Path, out: Path,
                  hide=()) -> tuple[list[str], dict | None]:
    """(argv, env) that runs the runner on plan, inside bubblewrap or not."""
    python = [sys.executable, "-I", "-S", str(runner), str(plan)]
    if sandbox == "none":       # a numba cache of its own: a shared one could be poisoned for later runs
        return python, {**CHILD_ENV, "NUMBA_CACHE_DIR": str(out / "numba-cache"), "TMPDIR": str(out), "HOME": str(out)}
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for key, value in {**CHILD_ENV, "NUMBA_CACHE_DIR": "/tmp/numba-cache"}.items():
        command += ["--setenv", key, value]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    runtime = runtime_folders()
    secrets = sorted({os.path.realpath(p) for p in hide})
    # an empty tmpfs over the reference solution: before the runtime binds when it holds some of them
    # (a venv inside the repository), after them when it lies inside one (installed in site-packages)
    command += [a for s in secrets if any(_inside(f, [s]) for f in runtime) for a in ("--tmpfs", s)]
    for folder in runtime:
        command += ["--ro-bind", folder, folder]
    # the executable path as the grader knows it (a venv symlink) must exist in the sandbox too
    for link in sorted({sys.executable, str(Path(sys.executable).parent)}):
        if not _inside(os.path.realpath(link), runtime) or not _inside(link, runtime):
            command += ["--ro-bind", link, link]
    command += [a for s in secrets if _inside(s, runtime) and not any(_inside(f, [s]) for f in runtime)
                for a in ("--tmpfs", s)]
    command += ["--ro-bind", str(shared), str(shared), "--bind", str(out), str(out),
                "--ro-bind", str(code_root), str(code_root), "--chdir", "/tmp", "--"]
    return command + python, None


def _limits(cpu_seconds: int, memory: int, processes: int | None) -> None:
    """In the child between fork and exec: resource limits, and die with the grader."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if processes is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _processes_of_user() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _stat_fields(pid: int):
    """(state, ppid, session id) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[3])


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()] if os.path.isdir("/proc") else []


class Child:
    """A running grading child: `poll()`, `stop()` (kills everything it started)."""

    def __init__(self, command: list[str], env, log_path: Path, cpu_seconds: int, sandbox: str):
        self.sandbox = sandbox
        self._libc = _libc()
        self._subreaper = self._libc is not None and self._libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        self._before = {pid for pid in _all_pids() if (_stat_fields(pid) or ("", 0, 0))[1] == os.getpid()}
        processes = None if os.getuid() == 0 else _processes_of_user() + 64
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True, cwd="/",
                                        preexec_fn=functools.partial(_limits, cpu_seconds, MEMORY_LIMIT, processes))  # noqa: PLW1509
        self.started = time.monotonic()

    def poll(self):
        return self.process.poll()

    def stop(self) -> int:
        """Kill the child's process group, its session and adopted orphans; returns the exit code."""
        sid = self.process.pid
        for _ in range(20):
            survivors = [pid for pid in _all_pids() if pid != os.getpid() and self._ours(pid, sid)]
            try:
                os.killpg(sid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in survivors:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            for pid in survivors:
                if pid != self.process.pid:
                    try:
                        os.waitpid(pid, os.WNOHANG)   # adopted orphans are our children now: reap them
                    except ChildProcessError:
                        pass
            if not survivors:
                break
            time.sleep(0.02)
        code = self.process.wait()
        if self._subreaper:
            self._libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        self._log.close()
        return code

    def _ours(self, pid: int, sid: int) -> bool:
        fields = _stat_fields(pid)
        if fields is None:
            return False
        state, ppid, session = fields
        if state == "Z":                               # already dead; reap it if it is ours
            if ppid == os.getpid() and pid != self.process.pid:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            return False
        return session == sid or (ppid == os.getpid() and pid not in self._before)


__all__ = ["SANDBOXES", "Child", "bwrap_works", "child_command", "choose_sandbox", "site_folders"]
