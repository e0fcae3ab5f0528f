"""Container processes: start, signal, wait, and what they leave behind.

A container is a process in its own session (own process group, so the whole tree a
torchrun spawns can be signalled at once), with PR_SET_PDEATHSIG so it dies with the
executor even when the executor is SIGKILLed. A small record per process (pid + kernel start
time) lets the next executor kill leftovers that escaped that, e.g. grandchildren.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import podnet

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal, the records still help
    _prctl = None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: only an async-signal-safe libc call, no
    # Python-level locks, which is what makes preexec_fn safe next to our threads.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class Launch:
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path
    netns: Path | None = None  # the pod's network namespace; None: the host's
    mounts: tuple[tuple[str, str, bool], ...] = ()  # (source, target, read-only) bind mounts

    def command(self) -> list[str]:
        """The argv to exec: inside the pod's namespaces when it has them. An executable
        that cannot be found raises FileNotFoundError here, as Popen would have without
        the wrapper (the runtime's StartError)."""
        argv = list(self.argv)
        if self.netns is None:
            return argv
        if not argv:
            raise FileNotFoundError("no command")
        if "/" not in argv[0] and shutil.which(argv[0], path=self.env.get("PATH")) is None:
            raise FileNotFoundError(2, f'exec: "{argv[0]}": executable file not found in $PATH')
        if "/" in argv[0] and not os.access(self.cwd / argv[0], os.X_OK):
            raise FileNotFoundError(2, f"exec: {argv[0]}: no such file or not executable")
        return podnet.wrap(argv, self.netns, self.mounts)


class Process:
    """A started container process; `on_exit(returncode)` is called from a waiter thread."""

    def __init__(self, launch: Launch, on_exit: Callable[[Process, int], None]) -> None:
        launch.log.parent.mkdir(parents=True, exist_ok=True)
        launch.cwd.mkdir(parents=True, exist_ok=True)
        with open(launch.log, "ab") as out:
            # Where this run's output starts: the fallback termination message reads from here.
            self.log_offset = out.tell()
            self.popen = subprocess.Popen(
                launch.command(),
                env=dict(launch.env),
                cwd=launch.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # see _die_with_parent on why this is safe here
                close_fds=True,
            )
        self.pid = self.popen.pid
        self.log = launch.log
        self.returncode: int | None = None
        self._on_exit = on_exit
        threading.Thread(target=self._wait, name=f"wait-{self.pid}", daemon=True).start()

    def _wait(self) -> None:
        code = self.popen.wait()
        # A container ends with its main process: whatever it left in its group goes too,
        # as the runtime kills the container's cgroup.
        signal_group(self.pid, signal.SIGKILL)
        self.returncode = code
        self._on_exit(self, code)

    def signal(self, sig: signal.Signals) -> None:
        if self.returncode is None:
            signal_group(self.pid, sig)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def read_capped(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def read_tail(path: Path, offset: int, limit: int) -> str:
    """The last `limit` bytes of `path` written after `offset`."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(offset, end - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[19])


class Records:
    """pid files of the executor's processes, so a later executor can clean up after one
    that died without doing it itself."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def add(self, key: str, pid: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{key}.json").write_text(json.dumps({"pid": pid, "start": _start_time(pid)}))

    def remove(self, key: str) -> None:
        (self.dir / f"{key}.json").unlink(missing_ok=True)

    def kill_leftovers(self) -> list[int]:
        """SIGKILL the process group of every recorded process, then forget the records.

        The group is killed when its leader is the recorded process (same start time) or
        is dead: its pdeath signal killed the leader, but what it spawned (a shell's
        children, torchrun's workers) may still run in the group, and the kernel does not
        hand out a pid that is still some group's id. A live leader with another start time
        is an unrelated process that reused the pid: left alone."""
        killed = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                record = json.loads(path.read_text())
                pid = int(record["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            start = _start_time(pid)
            if start is None or start == record.get("start"):
                try:
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            path.unlink(missing_ok=True)
        return killed
