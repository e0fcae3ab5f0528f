"""One monitor's state on disk, so that a restart (even SIGKILL) loses nothing that was acknowledged.

    <state-dir>/monitors/<namespace>/<name>/
      config.json               the normalised PUT body (tmp + rename)
      seq                       the last result sequence number used (tmp + rename)
      counters.json             per version: windows sealed, windows evaluated, last evaluated window
      results.jsonl             one result per line, appended; compacted to the last 100 on load
      window-<v>.ndjson         the open window: one JSON list of rows per accepted event, appended
      pending-<v>.<n>.ndjson    window n of version v, full and waiting for its result
      reference-<v>.parquet     the reference copied from S3 (+ .json: where it came from)

A full window is renamed to `pending-...` before its result exists and removed after the result is appended,
so a crash in between is seen on load: a pending window whose result is already in results.jsonl is dropped,
any other is evaluated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from slipway_drift.events import Batch, Row
from slipway_drift.window import as_rows

KEEP_RESULTS = 100
_PENDING = re.compile(r"^pending-(?P<version>.+)\.(?P<n>\d+)\.ndjson$")


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_rows(path: Path) -> list[Row]:
    """Rows of a window file; a line torn by a crash mid-write is the last one and is skipped."""
    rows: list[Row] = []
    try:
        with path.open() as f:
            for line in f:
                try:
                    rows.extend(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return rows


class MonitorStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._windows: dict[str, IO[str]] = {}

    @staticmethod
    def monitors(state_dir: Path) -> Iterator[tuple[str, str, Path]]:
        base = state_dir / "monitors"
        if not base.is_dir():
            return
        for ns in sorted(p for p in base.iterdir() if p.is_dir()):
            for mon in sorted(p for p in ns.iterdir() if (p / "config.json").exists()):
                yield ns.name, mon.name, mon

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    # config, seq, counters
    def read_config(self) -> Any:
        return json.loads((self.root / "config.json").read_text())

    def write_config(self, doc: dict[str, Any]) -> None:
        atomic_write(self.root / "config.json", json.dumps(doc, sort_keys=True))

    def read_seq(self) -> int:
        try:
            return int((self.root / "seq").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def write_seq(self, seq: int) -> None:
        atomic_write(self.root / "seq", f"{seq}\n")

    def read_counters(self) -> dict[str, dict[str, int]]:
        try:
            doc = json.loads((self.root / "counters.json").read_text())
            return doc if isinstance(doc, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def write_counters(self, counters: dict[str, dict[str, int]]) -> None:
        atomic_write(self.root / "counters.json", json.dumps(counters, sort_keys=True))

    # results
    def append_result(self, result: dict[str, Any]) -> None:
        with (self.root / "results.jsonl").open("a") as f:
            f.write(json.dumps(result) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def load_results(self) -> list[dict[str, Any]]:
        path = self.root / "results.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        results = []
        for line in lines:
            try:
                results.append(json.loads(line))
            except ValueError:
                continue  # torn by a crash mid-append
        if len(lines) > KEEP_RESULTS:
            results = results[-KEEP_RESULTS:]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in results))
        return results[-KEEP_RESULTS:]

    # windows
    def window_path(self, version: str) -> Path:
        return self.root / f"window-{version}.ndjson"

    def pending_path(self, version: str, n: int) -> Path:
        return self.root / f"pending-{version}.{n}.ndjson"

    def reference_path(self, version: str) -> Path:
        return self.root / f"reference-{version}.parquet"

    def append_window(self, version: str, rows: Batch) -> None:
        f = self._windows.get(version)
        if f is None:
            f = self._windows[version] = self.window_path(version).open("a")
        # Flushed to the kernel before the event is acknowledged: survives a killed process (not a power cut).
        f.write(json.dumps(as_rows(rows), separators=(",", ":")) + "\n")
        f.flush()

    def read_window(self, version: str) -> list[Row]:
        return read_rows(self.window_path(version))

    def seal_window(self, version: str, n: int) -> None:
        self._close(version)
        os.replace(self.window_path(version), self.pending_path(version, n))

    def replace_window(self, version: str, rows: list[Row]) -> None:
        """The open window rewritten as `rows` (load-time repair of an over-full window)."""
        self._close(version)
        atomic_write(self.window_path(version), json.dumps(rows, separators=(",", ":")) + "\n" if rows else "")

    def reset_window(self, version: str) -> None:
        self._close(version)
        self.window_path(version).unlink(missing_ok=True)

    def pending(self) -> list[tuple[str, int, Path]]:
        found = []
        for p in self.root.glob("pending-*.ndjson"):
            m = _PENDING.match(p.name)
            if m:
                found.append((m["version"], int(m["n"]), p))
        return sorted(found, key=lambda t: (t[1], t[0]))

    def drop_pending(self, version: str, n: int) -> None:
        self.pending_path(version, n).unlink(missing_ok=True)

    def versions_on_disk(self) -> set[str]:
        names = {p.name[len("window-") : -len(".ndjson")] for p in self.root.glob("window-*.ndjson")}
        return names | {v for v, _, _ in self.pending()}

    def remove_version(self, version: str) -> None:
        self.reset_window(version)
        for v, _n, p in self.pending():
            if v == version:
                p.unlink(missing_ok=True)
        ref = self.reference_path(version)
        ref.unlink(missing_ok=True)
        ref.with_suffix(".json").unlink(missing_ok=True)

    def _close(self, version: str) -> None:
        f = self._windows.pop(version, None)
        if f is not None:
            f.close()

    def close(self) -> None:
        for v in list(self._windows):
            self._close(v)

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
