"""Starting, finding and stopping the control plane's processes.

Each process runs in its own session (so its own process group): a Ctrl-C in the shell
that ran `up` does not reach it, and `down` can signal the whole group, including anything
the process forked. A pid file records the pid together with the kernel's start time of
that pid, so `down` never signals an unrelated process that reused the number after a
reboot or a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None


def with_bind_mounts(mounts: Sequence[tuple[Path, Path]], argv: Sequence[str]) -> list[str]:
    """argv in a mount namespace of its own, each (source, target) bind-mounted first: a file
    or directory a process reads at a fixed path gets the cluster's own, and the host's stays
    as it was (Knative's activator reads /etc/hosts, Kueue its metrics certificate)."""
    script = 'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 1; shift 2; done; shift; exec "$@"'
    pairs = [str(path) for source, target in mounts for path in (source, target)]
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "bind-mounts",
            *pairs, "--", *argv]  # fmt: skip


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a live pid, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces; the fields we
    # want come after the last ')'. state is field 3, starttime field 22.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def _reap(pid: int) -> None:
    # Only our own children can be waited for; for anything else (e.g. processes started by
    # an earlier `up` that has exited) init reaps them.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class ProcessTable:
    """Pid files under `run_dir`, logs under `log_dir`, one per named process."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def start(self, spec: ProcessSpec) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(spec.name)
        if log.exists():
            # Keep the previous run's log: after a crash it is the interesting one.
            log.replace(log.with_name(log.name + ".prev"))
        with open(log, "wb") as out:
            out.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(spec.argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(spec.env) if spec.env is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        stat = _proc_stat(proc.pid)
        record = {"pid": proc.pid, "start": stat[1] if stat else 0, "argv": list(spec.argv)}
        self._pid_path(spec.name).write_text(json.dumps(record) + "\n")
        # The Popen object is dropped on purpose: the process must outlive this Python
        # process when `up` runs from the CLI. _reap() collects it when we do outlive it.
        return proc.pid

    def pid(self, name: str) -> int | None:
        """The pid of `name` if the recorded process is still alive, else None."""
        try:
            record = json.loads(self._pid_path(name).read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        _reap(pid)
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return None
        if record.get("start") and stat[1] != record["start"]:
            return None  # the pid was reused by something else
        return pid

    def running(self, names: Iterable[str]) -> dict[str, int | None]:
        return {name: self.pid(name) for name in names}

    def stop(self, names: Sequence[str], timeout: float) -> list[str]:
        """SIGTERM the process groups of `names` together, SIGKILL whatever is left after
        `timeout` seconds. Returns the names that had to be killed."""
        live = {name: pid for name, pid in self.running(names).items() if pid is not None}
        for pid in live.values():
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            live = {n: p for n, p in live.items() if self.pid(n) is not None}
            if live:
                time.sleep(0.1)
        killed = sorted(live)
        for pid in live.values():
            _signal_group(pid, signal.SIGKILL)
        for name in killed:
            for _ in range(50):
                if self.pid(name) is None:
                    break
                time.sleep(0.1)
        for name in names:
            self._pid_path(name).unlink(missing_ok=True)
        return killed

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session made the process its group's leader
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
